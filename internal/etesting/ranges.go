package etesting

import "github.com/era-go/era"

// InRanges reports whether block b is in one of rs.
func InRanges(rs []era.Range, b uint64) bool {
	for _, r := range rs {
		if b >= r.Begin && b < r.End {
			return true
		}
	}
	return false
}

// RangesOf returns the blocks b < n for which in(b) holds as ascending,
// coalesced ranges, the form WrittenSince answers in.
func RangesOf(n uint64, in func(b uint64) bool) []era.Range {
	var rs []era.Range
	for b := uint64(0); b < n; b++ {
		switch {
		case !in(b):
		case len(rs) > 0 && rs[len(rs)-1].End == b:
			rs[len(rs)-1].End++
		default:
			rs = append(rs, era.Range{Begin: b, End: b + 1})
		}
	}
	return rs
}

// WrittenSince returns what WrittenSince(since) must answer when block b
// is at era eras[b]: the blocks whose era is since or later.
func WrittenSince(eras []uint32, since uint32) []era.Range {
	return RangesOf(uint64(len(eras)), func(b uint64) bool { return eras[b] >= since })
}
