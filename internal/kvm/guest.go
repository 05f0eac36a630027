package kvm

// initScript is /init, the first process of the guest (busybox sh). It
// mounts the pseudo file systems, loads the module chain listed in
// /etc/modules.load, waits for the virtio disks, sources the helpers and
// the scenario's environment, runs the scenario in a subshell under
// set -e, prints its exit status between markers and powers off.
const initScript = `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
export DM_DISABLE_UDEV=1 # no udev: dmsetup makes the /dev/mapper nodes itself
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/mapper /tmp /run/lock /var/lock /mnt
ln -sf /proc/mounts /etc/mtab
note() { echo "@@INIT $*"; }
ready=1
while read -r m; do
	if ! out=$(insmod "/lib/modules/$m" 2>&1); then note "insmod $m: $out"; ready=0; fi
done < /etc/modules.load
. /scenario.env
tries=0
while [ "$(ls /dev/vd? 2>/dev/null | wc -l)" -lt "$GUEST_DISKS" ]; do
	tries=$((tries + 1))
	if [ "$tries" -gt 200 ]; then note "only $(ls /dev/vd? 2>/dev/null | wc -l) of $GUEST_DISKS disks appeared"; ready=0; break; fi
	sleep 0.05
done
. /etc/guest-lib.sh
if [ "$ready" = 1 ]; then
	echo "@@BEGIN uptime=$(cut -d' ' -f1 /proc/uptime)"
	( set -e; . /scenario.sh )
	rc=$?
else
	rc=98
fi
echo "@@END rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
sleep 2
echo o > /proc/sysrq-trigger
`

// guestLib holds the shell helpers every scenario may call. Output meant
// for the host starts with "@@" so it can be told apart from kernel
// messages on the shared console.
const guestLib = `# era_create NAME METADATA_DEV ORIGIN_DEV BLOCK_SECTORS
# maps the whole origin through an era target.
era_create() {
	_len=$(blockdev --getsz "$3")
	echo "@@CMD dmsetup create $1 0 $_len era $2 $3 $4"
	dmsetup create "$1" --table "0 $_len era $2 $3 $4"
}

# era_status NAME: prints "@@STATUS NAME <dmsetup status line>".
era_status() {
	echo "@@STATUS $1 $(dmsetup status "$1")"
}

# era_message NAME MESSAGE: checkpoint, take_metadata_snap or
# drop_metadata_snap.
era_message() {
	echo "@@CMD dmsetup message $1 0 $2"
	dmsetup message "$1" 0 "$2"
}

# era_remove NAME: suspends the target (which archives the current
# writeset and commits) and removes it.
era_remove() {
	echo "@@CMD dmsetup remove $1"
	dmsetup suspend "$1"
	dmsetup remove "$1"
}

# write_block DEV BLOCK BLOCK_SECTORS TAG: writes the first 4 KiB of a
# block, "TAG\n" repeated, with O_DIRECT so the write reaches the target
# before the next command.
write_block() {
	yes "$4" | head -c 4096 > /tmp/pattern
	dd if=/tmp/pattern of="$1" bs=4096 count=1 seek=$(($2 * $3 / 8)) oflag=direct conv=notrunc 2>/dev/null
}
`
