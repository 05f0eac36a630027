# kernel_snap NAME METADATA_DEV ORIGIN_DEV
#
# Made testdata/golden/kernel-snap.bin (262144 bytes of metadata, an
# origin of 3000 blocks of 8 sectors, so the era array has 3 array blocks
# of 1018 values). The kernel writes across eras and takes a metadata
# snapshot it never drops; the target is then removed cleanly. After the
# snapshot only blocks below 1018 are written, so era-array blocks 1 and
# 2 stay shared by the live tree and the snapshot (reference count 2).
# Every status call commits, so they are part of the recipe.
kernel_snap() {
	era_create "$1" "$2" "$3" 8
	era_status "$1"                               # era 1
	for b in 0 1 2 1500; do write_block "/dev/mapper/$1" "$b" 8 "blk$b"; done
	era_message "$1" checkpoint                   # era 2
	for b in 2 3 2500; do write_block "/dev/mapper/$1" "$b" 8 "blk$b"; done
	era_status "$1"                               # a commit, with era 1 digested
	era_message "$1" take_metadata_snap           # archives era 2; era 3
	era_status "$1"
	for b in 4 1000; do write_block "/dev/mapper/$1" "$b" 8 "blk$b"; done
	era_message "$1" checkpoint                   # era 4
	write_block "/dev/mapper/$1" 5 8 blk5
	era_status "$1"
	era_remove "$1"                               # no drop_metadata_snap
}
