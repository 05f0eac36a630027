// Package kvm boots a small Linux guest under qemu to run the kernel's
// own dm-era target on disks the tests prepared.
//
// Setup fetches a pinned Debian kernel, busybox and dmsetup with
// apt-get download into a cache folder, resolves the chain of kernel
// modules dm-era needs by reading each module's .modinfo, and writes an
// initramfs holding busybox, dmsetup with its shared libraries, the
// modules, and an /init that loads them and runs a scenario. Boot
// appends the scenario (a shell script) and its environment as a second
// archive, attaches raw files or NBD exports as virtio disks, runs
// qemu-system-x86_64 (with KVM when /dev/kvm can be used, TCG
// otherwise), and returns the console output and the scenario's exit
// status.
//
// The package names and the kernel version are in pins.go.
package kvm
