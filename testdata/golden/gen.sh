#!/usr/bin/env bash
# gen.sh - regenerate the golden dm-era metadata images of this folder.
#
#   testdata/golden/gen.sh [--no-kernel] [--only NAME]...
#
# Needs: bash, awk, od, gzip, python3 (sminfo.py), thin-provisioning-tools 0.9.0
# (era_restore, era_dump, era_check, era_invalidate) and, unless --no-kernel,
# the kernel-era qemu harness (../../../shared/tools/kernel-era, or $KERA_DIR).
#
# Everything is deterministic:
#   * the XML inputs are written by the awk generators below (fixed seeds, a
#     MINSTD generator computed exactly in double precision, so mawk and gawk
#     agree), then era_restore builds NAME.bin (era_restore 0.9.0 output is
#     byte-for-byte reproducible);
#   * the kernel images come from scenarios run under qemu; the dm-era kernel
#     writes byte-identical metadata on every run (checked: two runs of every
#     kernel case gave the same sha256).  With --no-kernel the committed
#     kernel-*.bin are kept and only the derived files are rebuilt.
#
# Files per case NAME:
#   NAME.xml        era_restore input (restore cases only)
#   NAME.bin        metadata image (size = sm nr_blocks * 4096)
#   NAME.dump       era_dump NAME.bin            (NAME.dump.gz when > 1 MiB)
#   NAME.logical    era_dump --logical NAME.bin  (NAME.logical.gz when > 1 MiB)
#   NAME.inv.N      era_invalidate --written-since N NAME.bin
#   NAME.check      "exit=N", then era_check's stdout and stderr
#   NAME.sm         sminfo.py NAME.bin: decoded superblock(s), space map, ref counts
#   NAME.log        kernel cases: the KERA lines of the console (uptime lines dropped)
#   NAME.meta       kernel cases: the ground truth of what the scenario did
set -euo pipefail

G="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCEN="$(cd "$G/../kernel-scenarios" && pwd)"
KERA_DIR="${KERA_DIR:-$(cd "$G/../../.." && pwd)/shared/tools/kernel-era}"
[ -d "$KERA_DIR" ] || KERA_DIR=/work/shared/tools/kernel-era
KERNEL=1
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-kernel) KERNEL=0 ;;
    --only) ONLY+=("$2"); shift ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
  esac
  shift
done
want() { [ ${#ONLY[@]} -eq 0 ] && return 0; local n; for n in "${ONLY[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

cd "$G"

# ---------------------------------------------------------------- XML inputs
# Common awk helpers: MINSTD (Park-Miller) generator; every product stays
# below 2^47, so it is exact in awk's doubles.
AWK_RNG='
function rnd(n) { S = (S * 48271) % 2147483647; return S % n }
'

xml_m() { # the 16-block example of format.md (dump format: every bit listed)
  awk 'BEGIN{
    print "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"16\" current_era=\"5\">"
    print "  <writeset era=\"4\" nr_bits=\"16\">"
    for (b = 0; b < 16; b++) printf "    <bit block=\"%d\" value=\"%s\"/>\n", b, (b == 0 || b == 3) ? "true" : "false"
    print "  </writeset>"
    print "  <era_array>"
    split("2 3 0 0 1 0 4 0 0 5 0 0 0 0 2 3", v, " ")
    for (b = 0; b < 16; b++) printf "    <era block=\"%d\" era=\"%d\"/>\n", b, v[b+1]
    print "  </era_array>"
    print "</superblock>"
  }'
}

xml_multi() { # 1100 blocks (2 era-array blocks), writesets 3,4,5 overlapping; only true bits listed
  awk "$AWK_RNG"'BEGIN{
    S = 20240601; N = 1100
    print "<superblock uuid=\"\" block_size=\"64\" nr_blocks=\"" N "\" current_era=\"6\">"
    split("3 4 5", eras, " "); split("1100 1100 1024", nbits, " ")
    for (w = 1; w <= 3; w++) {
      printf "  <writeset era=\"%d\" nr_bits=\"%d\">\n", eras[w], nbits[w]
      for (b = 0; b < nbits[w]; b++) {
        r = rnd(100)
        if (b == 0 || b == nbits[w] - 1 || r < 12)
          printf "    <bit block=\"%d\" value=\"true\"/>\n", b
      }
      print "  </writeset>"
    }
    print "  <era_array>"
    for (b = 0; b < N; b++) {
      v = rnd(7)
      if (b == 0) v = 1          # all three writesets mark block 0 over era 1
      printf "    <era block=\"%d\" era=\"%d\"/>\n", b, v
    }
    print "  </era_array>"
    print "</superblock>"
  }'
}

xml_deep() { # 250 archived writesets (eras 1..250, 8 bits each): writeset tree gets an internal root
  awk 'BEGIN{
    N = 8; W = 250
    print "<superblock uuid=\"\" block_size=\"8\" nr_blocks=\"" N "\" current_era=\"" W + 1 "\">"
    for (e = 1; e <= W; e++) {
      printf "  <writeset era=\"%d\" nr_bits=\"%d\">\n", e, N
      for (b = 0; b < N; b++)
        printf "    <bit block=\"%d\" value=\"%s\"/>\n", b, (b == e % N || b == (e * 5 + 3) % N) ? "true" : "false"
      print "  </writeset>"
    }
    print "  <era_array>"
    for (b = 0; b < N; b++) printf "    <era block=\"%d\" era=\"%d\"/>\n", b, (b * 37 + 11) % (W + 2)
    print "  </era_array>"
    print "</superblock>"
  }'
}

xml_wide() { # 260000 blocks = 256 era-array blocks > 252: era-array btree gets an internal root.
  # The era_array is listed sparsely (era_restore fills unlisted entries with 0).
  awk 'BEGIN{
    N = 260000
    print "<superblock uuid=\"\" block_size=\"8\" nr_blocks=\"" N "\" current_era=\"8\">"
    print "  <writeset era=\"8\" nr_bits=\"1000\">"
    print "    <bit block=\"5\" value=\"true\"/>"
    print "    <bit block=\"999\" value=\"true\"/>"
    print "  </writeset>"
    print "  <era_array>"
    v[0] = 1; v[N - 1] = 8
    for (k = 1; k <= 255; k++) { v[k * 1018 - 1] = k % 8 + 1; v[k * 1018] = (k + 3) % 8 + 1 }
    for (b = 128260; b < 128276; b++) v[b] = 7      # crosses array block 125 -> 126 (first leaf -> second leaf)
    for (b = 0; b < N; b++) if (b in v) printf "    <era block=\"%d\" era=\"%d\"/>\n", b, v[b]
    print "  </era_array>"
    print "</superblock>"
  }'
}

xml_overflowbits() { # writesets whose nr_bits is not a multiple of 64 (65 and 70)
  awk 'BEGIN{
    N = 70
    print "<superblock uuid=\"\" block_size=\"16\" nr_blocks=\"" N "\" current_era=\"3\">"
    split("1 2", eras, " "); split("65 70", nbits, " ")
    set[1, 0] = 1; set[1, 64] = 1
    set[2, 1] = 1; set[2, 63] = 1; set[2, 69] = 1
    for (w = 1; w <= 2; w++) {
      printf "  <writeset era=\"%d\" nr_bits=\"%d\">\n", eras[w], nbits[w]
      for (b = 0; b < nbits[w]; b++) printf "    <bit block=\"%d\" value=\"%s\"/>\n", b, ((w, b) in set) ? "true" : "false"
      print "  </writeset>"
    }
    print "  <era_array>"
    for (b = 0; b < N; b++) printf "    <era block=\"%d\" era=\"%d\"/>\n", b, b % 3
    print "  </era_array>"
    print "</superblock>"
  }'
}

# ------------------------------------------------------------ derived files
bigfile() { # bigfile NAME.ext : gzip in place when > 1 MiB
  local f="$1"
  rm -f "$f.gz"
  if [ "$(stat -c %s "$f")" -gt 1048576 ]; then gzip -9 -n "$f"; fi
}

derive() { # derive NAME "N N N ..."
  local name="$1" inv="$2" n rc
  rm -f "$name".dump* "$name".logical* "$name".inv.* "$name".check "$name".sm
  era_dump "$name.bin" > "$name.dump"
  era_dump --logical "$name.bin" > "$name.logical"
  bigfile "$name.dump"; bigfile "$name.logical"
  for n in $inv; do era_invalidate --written-since "$n" "$name.bin" > "$name.inv.$n"; done
  set +e
  era_check "$name.bin" > "$name.check.out" 2> "$name.check.err"; rc=$?
  set -e
  { echo "exit=$rc"; echo "[stdout]"; cat "$name.check.out"; echo "[stderr]"; cat "$name.check.err"; } > "$name.check"
  rm -f "$name.check.out" "$name.check.err"
  python3 "$G/sminfo.py" "$name.bin" > "$name.sm"
}

restore_case() { # restore_case NAME BLOCKS "INV LIST"
  local name="$1" blocks="$2" inv="$3"
  want "$name" || return 0
  echo "== $name (era_restore, $blocks metadata blocks)"
  "xml_$name" > "$name.xml"
  rm -f "$name.bin"; truncate -s $((blocks * 4096)) "$name.bin"
  era_restore -q -i "$name.xml" -o "$name.bin"
  derive "$name" "$inv"
}

# -------------------------------------------------------------- restore cases
# Metadata sizes (in 4 KiB blocks): a multiple of 16 blocks, as small as
# possible but with enough room for the Linux 6.1 kernel to open the image,
# roll over to a new era (allocating a new writeset) and close it again
# (checked with the harness' open-close.sh).  era_restore alone needs
# 9 / 14 / 509 / 266 / 11 blocks; with 16 / 16 / 512 / 272 / 16 the kernel
# fails with "unable to allocate new metadata block" for all but m.
restore_case m             16  "0 1 2 3 4 5 6"
restore_case multi         32  "0 1 3 4 5 6 7"
restore_case deep          544 "0 1 2 100 200 249 250 251"
restore_case wide          288 "0 1 2 7 8 9"
restore_case overflowbits  32  "0 1 2 3"

# --------------------------------------------------------------- kernel cases
kernel_case() { # kernel_case NAME SCENARIO META_BYTES ORIGIN_BYTES "INV LIST" VARS...
  local name="$1" scen="$2" meta="$3" origin="$4" inv="$5"; shift 5
  want "$name" || return 0
  if [ "$KERNEL" = 1 ]; then
    echo "== $name (kernel: $(basename "$scen") $*; meta $meta B, origin $origin B)"
    local w; w="$(mktemp -d /tmp/golden-kera.XXXXXX)"
    truncate -s "$meta" "$w/meta.img"; truncate -s "$origin" "$w/origin.img"
    if ! KERA_LOG="$w/console.log" KERA_TIMEOUT="${KERA_TIMEOUT:-300}" \
         "$KERA_DIR/run.sh" "$scen" "$w/meta.img" "$w/origin.img" "$@" > /dev/null 2> "$w/run.err"; then
      echo "run.sh failed for $name (workdir $w)" >&2; cat "$w/run.err" >&2; exit 1
    fi
    cp "$w/meta.img" "$name.bin"
    grep -a 'KERA' "$w/console.log" | grep -av -e 'uptime before' -e 'uptime after' |
      sed 's/, uptime [0-9.]*s$//' > "$name.log"
    rm -rf "$w"
    { echo "# $name: ground truth of the kernel scenario (written by gen.sh; see README.md)"
      echo "kernel=$(cat "${KERA_CACHE:-/tmp/kernel-era-cache}/kver")"
      echo "scenario=$(basename "$scen") $*"
      echo "meta_bytes=$meta"
      echo "origin_bytes=$origin"
      "meta_${name//-/_}"; } > "$name.meta"
  else
    echo "== $name (kernel image kept)"
  fi
  derive "$name" "$inv"
}

# Ground truth per kernel case (appended to NAME.meta).  Syntax: key=value;
# write.E = the blocks written (to the origin, through dm-era) while the era was E;
# logical = block:era for every written block, the newest era that wrote it
# (what a reader that also honours the superblock's current writeset must report);
# writeset_tree = era:bits of the archived writesets; snapshot_* = the same for
# the trees of the metadata-snapshot clone.  Checked against the images by
# decoding them (see README.md).
meta_kernel_a1() { cat <<'EOF'
block_size=128
nr_blocks=1024
events=create+resume(era 1) write(0 5 17) checkpoint(era 2) write(5 100 1023) checkpoint(era 3) write(200) take_metadata_snap(era 4) write(300) suspend+remove
end=clean (suspend archives the era-4 writeset and commits; remove)
write.1=0 5 17
write.2=5 100 1023
write.3=200
write.4=300
final_era=4
logical=0:1 5:2 17:1 100:2 200:3 300:4 1023:2
current_writeset=none (root 0; nr_bits 1024 left over from the archived writeset)
writeset_tree=4:300
era_array_nonzero=0:1 5:2 17:1 100:2 200:3 1023:2
metadata_snap=4
snapshot_writeset_tree=3:200
snapshot_era_array_nonzero=0:1 5:2 17:1 100:2 1023:2
snapshot_logical=0:1 5:2 17:1 100:2 200:3 1023:2
shared=era-array block 1 (values 1018..1023, metadata block 55) is referenced by both era-array btrees (count 2)
EOF
}
meta_kernel_crash() { cat <<'EOF'
block_size=8
nr_blocks=1024
events=create+resume(era 1) write(1 2 3) checkpoint(era 2) write(3 4 9) power-off
end=crash (power-off without suspend/remove; the last commit was made for the write of block 9)
write.1=1 2 3
write.2=3 4 9
final_era=2
logical=1:1 2:1 3:2 4:2 9:2
logical_ignoring_current_writeset=1:1 2:1 3:1
current_writeset=era 2, nr_bits 1024, bits 3 4 9 (superblock current_writeset.root = 45)
writeset_tree=empty (era 1 already digested into the era array)
era_array_nonzero=1:1 2:1 3:1
metadata_snap=0
EOF
}
meta_kernel_snap() { cat <<'EOF'
block_size=8
nr_blocks=3000
events=create+resume(era 1) write(0 1 2 1500) checkpoint(era 2) write(2 3 2500) status take_metadata_snap(era 3) status write(4 1000) checkpoint(era 4) write(5) status suspend+remove
end=clean (suspend archives the era-4 writeset and commits; remove); the snapshot is NOT dropped
write.1=0 1 2 1500
write.2=2 3 2500
write.3=4 1000
write.4=5
final_era=4
logical=0:1 1:1 2:2 3:2 4:3 5:4 1000:3 1500:1 2500:2
current_writeset=none (root 0; nr_bits 3000 left over from the archived writeset)
writeset_tree=4:5
era_array_nonzero=0:1 1:1 2:2 3:2 4:3 1000:3 1500:1 2500:2
metadata_snap=59
snapshot_writeset_tree=2:2,3,2500
snapshot_era_array_nonzero=0:1 1:1 2:1 1500:1
snapshot_logical=0:1 1:1 2:2 3:2 1500:1 2500:2
shared=era-array block 1 (values 1018..2035, metadata block 44) is referenced by both era-array btrees (count 2)
EOF
}

# kernel-a1: shipped scenario A1, BS=128, 1024 origin blocks (64 MiB sparse origin),
# 256 KiB metadata (64 blocks).
kernel_case kernel-a1 "$KERA_DIR/scenarios/a1-kernel-writes.sh" 262144 67108864 "0 1 2 3 4 5" BS=128 LAST=1023
# kernel-crash: shipped scenario C (power-off without suspend), BS=8, 1024 origin blocks.
kernel_case kernel-crash "$KERA_DIR/scenarios/c-crash.sh" 262144 4194304 "0 1 2 3" BS=8
# kernel-snap: our scenario (metadata snapshot kept), BS=8, 3000 origin blocks.
kernel_case kernel-snap "$SCEN/kernel-snap.sh" 262144 12288000 "0 1 2 3 4 5" BS=8

if [ ${#ONLY[@]} -eq 0 ]; then
  echo "== total: $(du -cb ./*.bin | tail -n1 | cut -f1) bytes of images, $(du -sb . | cut -f1) bytes in $(basename "$G")/"
fi
