#!/usr/bin/env bash
# Runs every check and test of the project on a fresh machine: installs
# the programs the tests use when missing (the era_* tools of
# thin-provisioning-tools, qemu with the tools the kernel tests need, and
# the NBD clients), then gofmt, go vet and go test -race. The kernel tests
# boot Linux's dm-era under qemu (internal/kvm fetches the kernel on first
# use); ERA_KERNEL_TESTS=0 skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

# --- era tools and the kernel tests' host programs (program:package) ---
needs=(
	era_check:thin-provisioning-tools
	qemu-system-x86_64:qemu-system-x86
	qemu-nbd:qemu-utils
	fsck.ext4:e2fsprogs
	debugfs:e2fsprogs
	xz:xz-utils
)
missing=()
for pair in "${needs[@]}"; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	echo "== installing $pkgs"
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
# --- end of era tools and kernel tests ---

# --- NBD clients (era serve tests: nbdinfo, nbdcopy, qemu-img, qemu-io,
# Python libnbd, fio) ---
nbd_pkgs=()
command -v nbdinfo >/dev/null 2>&1 || nbd_pkgs+=(libnbd-bin)
/usr/bin/python3 -c 'import nbd' >/dev/null 2>&1 || nbd_pkgs+=(python3-libnbd)
command -v qemu-img >/dev/null 2>&1 || nbd_pkgs+=(qemu-utils)
command -v fio >/dev/null 2>&1 || nbd_pkgs+=(fio)
if [ ${#nbd_pkgs[@]} -gt 0 ]; then
	echo "== installing ${nbd_pkgs[*]}"
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${nbd_pkgs[@]}" >/dev/null
fi
# --- end of NBD clients ---

echo "== gofmt"
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -timeout 30m "$@" ./...
