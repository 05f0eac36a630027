# kernel_crash NAME METADATA_DEV ORIGIN_DEV
#
# Made testdata/golden/kernel-crash.bin (262144 bytes of metadata, an
# origin of 1024 blocks of 8 sectors): writes in eras 1 and 2, and the
# target is left active when the guest powers off. The last commit is the
# one the first write to block 9 waited for, so the superblock still
# points at the era-2 writeset (bits 3, 4 and 9) and the writeset tree is
# empty, era 1 having been digested into the era array. Call it last.
kernel_crash() {
	era_create "$1" "$2" "$3" 8
	era_status "$1"                               # era 1
	for b in 1 2 3; do write_block "/dev/mapper/$1" "$b" 8 "blk$b"; done
	era_message "$1" checkpoint                   # era 2
	for b in 3 4 9; do write_block "/dev/mapper/$1" "$b" 8 "blk$b"; done
}
