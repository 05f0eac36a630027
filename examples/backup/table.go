package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// table is a text table: a header, rows, and which columns align right.
type table struct {
	head  []string
	right []bool
	rows  [][]string
	rules []int // rows before which a rule is drawn
}

func newTable(head ...string) *table {
	return &table{head: head, right: make([]bool, len(head))}
}

// alignRight makes the given columns align right.
func (t *table) alignRight(cols ...int) *table {
	for _, c := range cols {
		t.right[c] = true
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// rule draws a line before the next row added.
func (t *table) rule() { t.rules = append(t.rules, len(t.rows)) }

// write prints the table to w, columns two spaces apart.
func (t *table) write(w io.Writer) error {
	width := make([]int, len(t.head))
	for i, h := range t.head {
		width[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var sb strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				sb.WriteString("  ")
			}
			if t.right[i] {
				sb.WriteString(pad + c)
			} else if i < len(cells)-1 {
				sb.WriteString(c + pad)
			} else {
				sb.WriteString(c)
			}
		}
		sb.WriteString("\n")
	}
	ruleLine := func() {
		cells := make([]string, len(width))
		for i, n := range width {
			cells[i] = strings.Repeat("-", n)
		}
		line(cells)
	}
	line(t.head)
	ruleLine()
	for i, r := range t.rows {
		for _, at := range t.rules {
			if at == i {
				ruleLine()
			}
		}
		line(r)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// backupTable is the summary table of backups: per backup, the blocks
// copied, their share of the image, bytes read and stored, time and
// throughput, and a total row.
func backupTable(bs []Backup) *table {
	t := newTable("#", "kind", "mode", "eras", "blocks", "share", "read", "stored", "chunks", "time", "throughput").
		alignRight(0, 4, 5, 6, 7, 8, 9, 10)
	var blocks uint64
	var read, stored int64
	var secs float64
	chunks := 0
	for _, b := range bs {
		t.add(fmt.Sprint(b.ID), string(b.Kind), b.Mode, b.EraRange(),
			fmt.Sprint(b.Blocks), percent(b.Blocks, b.NrBlocks()),
			fmtBytes(b.ReadBytes), fmtBytes(b.StoredBytes), fmt.Sprint(len(b.Chunks)),
			fmtSeconds(b.Seconds), fmtRate(b.ReadBytes, b.Seconds))
		blocks += b.Blocks
		read += b.ReadBytes
		stored += b.StoredBytes
		secs += b.Seconds
		chunks += len(b.Chunks)
	}
	if len(bs) > 1 {
		t.rule()
		t.add("", "total", "", "", fmt.Sprint(blocks), "", fmtBytes(read), fmtBytes(stored),
			fmt.Sprint(chunks), fmtSeconds(secs), fmtRate(read, secs))
	}
	return t
}

// percent returns n/of as a percentage with one decimal.
func percent(n, of uint64) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// fmtBytes returns n in IEC units: "512 B", "4.0 KiB", "1.5 MiB".
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}

// fmtSeconds returns s as "0.012 s" or "3.41 s".
func fmtSeconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.3f s", s)
	}
	return fmt.Sprintf("%.2f s", s)
}

// fmtRate returns n bytes per s seconds, "812.3 MiB/s".
func fmtRate(n int64, s float64) string {
	if s <= 0 {
		return "-"
	}
	return fmtBytes(int64(float64(n)/s)) + "/s"
}
