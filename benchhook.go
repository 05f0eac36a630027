package era

import "github.com/era-go/era/internal/benchhook"

func init() {
	benchhook.MarkOnly = func(d any, lo, hi uint64) error { return d.(*Device).marks.run(lo, hi) }
}
