#!/usr/bin/env bash
# gen.sh - regenerate the golden dm-era metadata images of this folder.
#
#   testdata/golden/gen.sh [--no-kernel] [--only NAME]...
#
# Needs: bash, awk, od, gzip, python3 (sminfo.py), thin-provisioning-tools 0.9.0
# (era_restore, era_dump, era_check, era_invalidate) and, unless --no-kernel,
# Go and qemu for the kernel images (TestKernelGolden in the repository root,
# on the harness of internal/kvm).
#
# Everything is deterministic:
#   * the XML inputs are written by the awk generators below (fixed seeds, a
#     MINSTD generator computed exactly in double precision, so mawk and gawk
#     agree), then era_restore builds NAME.bin (era_restore 0.9.0 output is
#     byte-for-byte reproducible);
#   * the kernel images come from the scenarios of ../kernel-scenarios run
#     under qemu by TestKernelGolden; the dm-era kernel writes byte-identical
#     metadata on every run.  With --no-kernel the committed
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
kernel_case() { # kernel_case NAME "INV LIST": the image comes from TestKernelGolden
  local name="$1" inv="$2"
  want "$name" || return 0
  echo "== $name"
  derive "$name" "$inv"
}
if [ "$KERNEL" = 1 ]; then
  echo "== kernel images: ERA_UPDATE_GOLDEN=1 go test -run TestKernelGolden (boots Linux under qemu)"
  (cd "$G/../.." && ERA_UPDATE_GOLDEN=1 go test -count=1 -run '^TestKernelGolden$' .)
fi

# The ground truth of each kernel case (NAME.meta: what its scenario wrote in
# which era) is committed beside its image; the scenarios in
# ../kernel-scenarios are its source.

# kernel-a1: scenario kernel-a1.sh, BS=128, 1024 origin blocks (64 MiB sparse origin),
# 256 KiB metadata (64 blocks).
kernel_case kernel-a1 "0 1 2 3 4 5"
# kernel-crash: scenario kernel-crash.sh (power-off without suspend), BS=8, 1024 origin blocks.
kernel_case kernel-crash "0 1 2 3"
# kernel-snap: scenario kernel-snap.sh (metadata snapshot kept), BS=8, 3000 origin blocks.
kernel_case kernel-snap "0 1 2 3 4 5"

if [ ${#ONLY[@]} -eq 0 ]; then
  echo "== total: $(du -cb ./*.bin | tail -n1 | cut -f1) bytes of images, $(du -sb . | cut -f1) bytes in $(basename "$G")/"
fi
