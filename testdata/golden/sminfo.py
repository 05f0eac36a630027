#!/usr/bin/env python3
"""sminfo.py IMAGE -- decode a dm-era metadata image for the golden files.

Prints (deterministically):
  * the superblock fields of block 0 (and of the metadata-snapshot clone),
  * the space-map root and index entries,
  * the reference count of every allocated block as read from the on-disk
    bitmaps / overflow tree ("sm" counts), with the block's type (from the
    checksum constant) and, for btree nodes, flags/nr_entries/max/value_size,
  * the reference counts recomputed by walking every tree from the superblock
    (and the snapshot clone) with the rules of format.md section 3.5
    ("walk" counts), and every disagreement between the two.

Only the Python standard library is used.  Exit status 0 even when counts
disagree (the disagreement is part of the output).
"""
import struct
import sys

BS = 4096
XOR_SB, XOR_NODE, XOR_ARRAY, XOR_BITMAP, XOR_INDEX = 146538381, 121107, 595846735, 240779, 160478
TYPES = {XOR_SB: "superblock", XOR_NODE: "btree", XOR_ARRAY: "array",
         XOR_BITMAP: "sm-bitmap", XOR_INDEX: "sm-index"}


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TAB = _table()


def crc32c_raw(data):
    """CRC-32C with init 0xffffffff and no final inversion."""
    c = 0xFFFFFFFF
    for b in data:
        c = TAB[(c ^ b) & 0xFF] ^ (c >> 8)
    return c


class Img:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        self.nblocks = len(self.data) // BS

    def block(self, n):
        return self.data[n * BS:(n + 1) * BS]

    def btype(self, n):
        b = self.block(n)
        if len(b) < BS or not any(b):
            return "zero" if len(b) == BS else "out-of-range"
        stored = struct.unpack_from("<I", b, 0)[0]
        raw = crc32c_raw(b[4:])
        for x, name in TYPES.items():
            if raw ^ x == stored:
                return name
        return "unknown"


def u(fmt, b, off):
    return struct.unpack_from("<" + fmt, b, off)[0]


def sb_fields(b):
    return [
        ("csum", "0x%08x" % u("I", b, 0)), ("flags", u("I", b, 4)), ("blocknr", u("Q", b, 8)),
        ("uuid_zero", str(not any(b[16:32])).lower()), ("magic", u("Q", b, 32)),
        ("version", u("I", b, 40)),
        ("sm.nr_blocks", u("Q", b, 44)), ("sm.nr_allocated", u("Q", b, 52)),
        ("sm.bitmap_root", u("Q", b, 60)), ("sm.ref_count_root", u("Q", b, 68)),
        ("data_block_size", u("I", b, 172)), ("metadata_block_size", u("I", b, 176)),
        ("nr_blocks", u("I", b, 180)), ("current_era", u("I", b, 184)),
        ("current_writeset.nr_bits", u("I", b, 188)), ("current_writeset.root", u("Q", b, 192)),
        ("writeset_tree_root", u("Q", b, 200)), ("era_array_root", u("Q", b, 208)),
        ("metadata_snap", u("Q", b, 216)),
        ("tail_zero", str(not any(b[224:])).lower()),
    ]


def node_hdr(img, n):
    b = img.block(n)
    flags, blocknr, nr, mx, vs = struct.unpack_from("<IQIII", b, 4)
    return flags, nr, mx, vs


def node_entries(img, n):
    b = img.block(n)
    flags, nr, mx, vs = node_hdr(img, n)
    keys = [u("Q", b, 32 + 8 * i) for i in range(nr)]
    vals = [b[32 + 8 * mx + vs * i:32 + 8 * mx + vs * (i + 1)] for i in range(nr)]
    return flags, keys, vals


def main():
    img = Img(sys.argv[1])
    sb = img.block(0)
    out = []
    f = dict(sb_fields(sb))
    out.append("image_bytes %d (%d blocks)" % (len(img.data), img.nblocks))
    out.append("[superblock 0]")
    out += ["%s %s" % kv for kv in sb_fields(sb)]
    snap = f["metadata_snap"]
    if snap:
        out.append("[snapshot clone %d] (only writeset_tree_root and era_array_root are meaningful)" % snap)
        out += ["%s %s" % kv for kv in sb_fields(img.block(snap))]

    # ---- space map as stored
    nrb, idx, rc_root = f["sm.nr_blocks"], f["sm.bitmap_root"], f["sm.ref_count_root"]
    nbitmaps = (nrb + 16319) // 16320
    out.append("[sm index %d]" % idx)
    ib = img.block(idx)
    sm = {}
    for i in range(nbitmaps):
        loc, nfree, nfb = struct.unpack_from("<QII", ib, 16 + 16 * i)
        out.append("entry %d bitmap=%d nr_free=%d none_free_before=%d" % (i, loc, nfree, nfb))
        bm = img.block(loc)
        for j in range(min(16320, nrb - 16320 * i)):
            w = u("Q", bm, 16 + 8 * (j // 32))
            k = (j % 32) * 2
            v = ((w >> k) & 1) * 2 + ((w >> (k + 1)) & 1)
            if v:
                sm[16320 * i + j] = v
    # overflow tree (may be multi-level in theory)
    def walk_rc(n):
        flags, keys, vals = node_entries(img, n)
        if flags & 1:
            for v in vals:
                walk_rc(u("Q", v, 0))
        else:
            for k, v in zip(keys, vals):
                sm[k] = u("I", v, 0)
    walk_rc(rc_root)

    # ---- recompute counts by walking (format.md 3.5)
    walk = {}

    def inc(n):
        walk[n] = walk.get(n, 0) + 1
        return walk[n] == 1  # first visit -> descend

    def btree(root, leaf_fn):
        if not inc(root):
            return
        flags, keys, vals = node_entries(img, root)
        if flags & 1:
            for v in vals:
                btree(u("Q", v, 0), leaf_fn)
        else:
            for k, v in zip(keys, vals):
                leaf_fn(k, v)

    def array_leaf(k, v):
        inc(u("Q", v, 0))

    def ws_leaf(k, v):
        btree(u("Q", v, 4), array_leaf)

    def noop(k, v):
        pass

    inc(0)
    inc(idx)
    for i in range(nbitmaps):
        inc(u("Q", ib, 16 + 16 * i))
    btree(rc_root, noop)
    btree(f["writeset_tree_root"], ws_leaf)
    btree(f["era_array_root"], array_leaf)
    if f["current_writeset.root"]:
        btree(f["current_writeset.root"], array_leaf)
    if snap:
        inc(snap)
        s = img.block(snap)
        btree(u("Q", s, 200), ws_leaf)
        btree(u("Q", s, 208), array_leaf)

    out.append("[blocks] block sm_count walk_count type [btree flags nr/max value_size]")
    for n in sorted(set(sm) | set(walk)):
        t = img.btype(n)
        extra = ""
        if t == "btree":
            fl, nr, mx, vs = node_hdr(img, n)
            extra = " %s %d/%d vs=%d" % ({1: "internal", 2: "leaf"}.get(fl, "flags=%d" % fl), nr, mx, vs)
        elif t == "array":
            mx, nr, vs = struct.unpack_from("<III", img.block(n), 4)
            extra = " %d/%d vs=%d" % (nr, mx, vs)
        out.append("%d %d %d %s%s" % (n, sm.get(n, 0), walk.get(n, 0), t, extra))
    alloc = sum(1 for v in sm.values() if v)
    out.append("[summary]")
    out.append("sm_allocated_blocks %d (superblock says %d)" % (alloc, f["sm.nr_allocated"]))
    out.append("shared_blocks(count>=2) %s" % (" ".join(str(n) for n in sorted(sm) if sm[n] >= 2) or "-"))
    mism = [n for n in sorted(set(sm) | set(walk)) if sm.get(n, 0) != walk.get(n, 0)]
    out.append("count_mismatches %s" % (" ".join("%d(sm=%d,walk=%d)" % (n, sm.get(n, 0), walk.get(n, 0)) for n in mism) or "none"))
    print("\n".join(out))


if __name__ == "__main__":
    main()
