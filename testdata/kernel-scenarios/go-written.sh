# Load metadata written by the Go library, extend it, and (with DROP=1)
# drop the metadata snapshot the library left held. Fails if the kernel
# refuses the metadata.
BS="${BS:-128}"
kera_create era0 /dev/vda /dev/vdb "$BS"
kera_status era0
kera_write_block /dev/mapper/era0 600 "$BS"
kera_msg era0 checkpoint
kera_write_block /dev/mapper/era0 601 "$BS"
if [ "${DROP:-0}" = 1 ]; then kera_msg era0 drop_metadata_snap; fi
kera_status era0
kera_remove era0
