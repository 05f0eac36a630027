# kernel-snap: the kernel writes across eras and takes a metadata snapshot
# it never drops, then the target is removed cleanly. This made
# testdata/golden/kernel-snap.bin: BS=8 over an origin of 3000 blocks, so
# the era array has 3 array blocks (1018 values each). After the snapshot
# only blocks below 1018 are written, so era-array blocks 1 and 2 stay
# shared by the live tree and the snapshot (reference count 2).
#
# The metadata device is /dev/vda, the origin /dev/vdb; BS is the block
# size in sectors (default 8).
BS="${BS:-8}"
D=/dev/mapper/era0
era_create era0 /dev/vda /dev/vdb "$BS"
era_status era0                                    # era 1
for b in 0 1 2 1500; do write_block "$D" "$b" "$BS" "blk$b"; done
era_message era0 checkpoint                        # era 2
for b in 2 3 2500; do write_block "$D" "$b" "$BS" "blk$b"; done
era_status era0                                    # a commit, and era 1 digested
era_message era0 take_metadata_snap                # archives era 2; era 3
era_status era0
for b in 4 1000; do write_block "$D" "$b" "$BS" "blk$b"; done
era_message era0 checkpoint                        # era 4
write_block "$D" 5 "$BS" blk5
era_status era0
era_remove era0                                    # no drop_metadata_snap
