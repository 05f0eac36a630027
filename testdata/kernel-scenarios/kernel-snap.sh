# kernel-snap: the kernel writes metadata across eras and takes a metadata
# snapshot that is never dropped, then the device is removed cleanly
# (suspend archives the current writeset, commits).  Sourced by the harness
# /init (busybox ash) under `set -e`; helpers come from guest-lib.sh.
#
# Intended origin: 3000 blocks (BS=8 -> 12 288 000 bytes), so that the era
# array has 3 array blocks (1018 values each).  After the snapshot only
# blocks in the first array block (< 1018) are written, so the era-array
# blocks 1 and 2 stay shared between the live tree and the snapshot
# (reference count 2 in the space map).
#
# Vars: BS (block size in sectors, default 8).
BS="${BS:-8}"
D=/dev/mapper/era0
kera_create era0 /dev/vda /dev/vdb "$BS"
kera_status era0                                    # era 1
for b in 0 1 2 1500; do kera_write_block "$D" "$b" "$BS"; done
kera_msg era0 checkpoint                            # era 2
for b in 2 3 2500; do kera_write_block "$D" "$b" "$BS"; done
kera_status era0                                    # commits (digest of era 1)
kera_msg era0 take_metadata_snap                    # archives era 2, era 3, clone sb
kera_status era0
for b in 4 1000; do kera_write_block "$D" "$b" "$BS"; done
kera_msg era0 checkpoint                            # era 4
kera_write_block "$D" 5 "$BS"
kera_status era0
echo "KERA-TABLE: $(dmsetup table era0)"
kera_remove era0                                    # no drop_metadata_snap
