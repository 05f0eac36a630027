package kvm

// What the guest is built from. Every Debian package name and the kernel
// version the harness uses are set here and nowhere else.
const (
	// KernelPackage is the Debian bookworm kernel the guest boots: Linux
	// 6.1 with dm-era built as a module. When the archive stops serving
	// it, Setup falls back to the package KernelMetaPackage depends on
	// and logs the substitution.
	KernelPackage = "linux-image-6.1.0-57-amd64"

	// KernelMetaPackage always depends on the newest kernel of the
	// release; it is used only when KernelPackage cannot be downloaded.
	KernelMetaPackage = "linux-image-amd64"

	// BusyboxPackage provides the guest's shell and core utilities as one
	// static binary.
	BusyboxPackage = "busybox-static"

	// DmsetupPackage provides dmsetup, which creates and messages the
	// era target inside the guest.
	DmsetupPackage = "dmsetup"

	// E2fsprogsPackage provides mkfs.ext4 and fsck.ext4, for guests that
	// make a file system (see Extra).
	E2fsprogsPackage = "e2fsprogs"
)

// baseModules are loaded in every guest, each after the modules it
// depends on: the virtio disk driver, a crc32c implementation (dm's
// persistent-data checksums need one and nothing loads it on demand
// without modprobe), and the era target.
var baseModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "dm_era"}

// ExtModules are the kernel modules a guest needs to mount ext4.
var ExtModules = []string{"ext4"}

// E2fsprogs is the Extra that puts mkfs.ext4 and fsck.ext4 in the guest.
var E2fsprogs = Extra{Package: E2fsprogsPackage, Programs: []string{"mkfs.ext4", "fsck.ext4"}}
