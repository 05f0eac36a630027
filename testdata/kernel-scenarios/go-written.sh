# go_written NAME METADATA_DEV ORIGIN_DEV BLOCK_SECTORS DROP
#
# Loads metadata the Go library wrote and extends it: block 600 is written
# in the era the kernel starts, a checkpoint follows, then block 601. With
# DROP=1 it drops the metadata snapshot the library left held. A status
# line is printed before and after; the target is then suspended (which
# archives the current writeset and commits) and removed. Under set -e any
# refusal by the kernel ends the scenario with a non-zero status.
go_written() {
	era_create "$1" "$2" "$3" "$4"
	era_status "$1"
	write_block "/dev/mapper/$1" 600 "$4" k600
	era_message "$1" checkpoint
	write_block "/dev/mapper/$1" 601 "$4" k601
	if [ "$5" = 1 ]; then era_message "$1" drop_metadata_snap; fi
	era_status "$1"
	era_remove "$1"
}
