# kernel_a1 NAME METADATA_DEV ORIGIN_DEV
#
# Made testdata/golden/kernel-a1.bin (262144 bytes of metadata, an origin
# of 1024 blocks of 128 sectors): writes over three eras, a metadata
# snapshot taken in the fourth and never dropped, then a clean removal.
# On this 64-block metadata device the allocator wraps around and reuses
# low block numbers. Every status call commits, so they are part of the
# recipe.
kernel_a1() {
	era_create "$1" "$2" "$3" 128
	era_status "$1"                               # era 1
	for b in 0 5 17; do write_block "/dev/mapper/$1" "$b" 128 "blk$b"; done
	era_status "$1"
	era_message "$1" checkpoint                   # era 2
	era_status "$1"
	for b in 5 100 1023; do write_block "/dev/mapper/$1" "$b" 128 "blk$b"; done
	era_message "$1" checkpoint                   # era 3
	era_status "$1"
	write_block "/dev/mapper/$1" 200 128 blk200
	era_message "$1" take_metadata_snap           # archives era 3; era 4
	era_status "$1"
	write_block "/dev/mapper/$1" 300 128 blk300
	era_status "$1"
	era_remove "$1"                               # archives era 4
}
