package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress follows a long copy, in bytes. A Progress runs one task at a
// time: Start, Add as bytes go by, Done.
type Progress interface {
	Start(desc string, total int64)
	Add(n int64)
	Done()
}

// noProgress shows nothing.
type noProgress struct{}

func (noProgress) Start(string, int64) {}
func (noProgress) Add(int64)           {}
func (noProgress) Done()               {}

// orNoProgress returns p, or a Progress that shows nothing if p is nil.
func orNoProgress(p Progress) Progress {
	if p == nil {
		return noProgress{}
	}
	return p
}

// barProgress draws a progress bar on a terminal, cleared when done.
type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewProgress returns a Progress that draws bars on f if f is a terminal,
// and one that shows nothing otherwise (a pipe, a file, CI logs).
func NewProgress(f *os.File) Progress {
	if !isTerminal(f) {
		return noProgress{}
	}
	return &barProgress{w: f}
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *barProgress) Start(desc string, total int64) {
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(80*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *barProgress) Add(n int64) {
	if p.bar != nil {
		p.bar.Add64(n)
	}
}

func (p *barProgress) Done() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}
