#!/usr/bin/env bash
# Runs every check and test of the project on a fresh machine:
# installs thin-provisioning-tools (era_check, era_dump, era_invalidate,
# era_restore) when missing, then gofmt, go vet and go test -race.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v era_check >/dev/null 2>&1 && [ ! -x /usr/sbin/era_check ]; then
	echo "== installing thin-provisioning-tools"
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq thin-provisioning-tools >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

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

# The kernel interop test boots Linux's dm-era under qemu when the harness
# of ../shared is there (it installs qemu and fetches the kernel packages).
if [ -x ../shared/tools/kernel-era/run.sh ] && [ -z "${ERA_KERNEL_TESTS+x}" ]; then
	export ERA_KERNEL_TESTS=1
	../shared/tools/kernel-era/setup.sh >/dev/null
fi

echo "== gofmt"
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -timeout 30m "$@" ./...
