package eraxml

import (
	"bytes"
	"testing"
)

func BenchmarkTmpRead(b *testing.B) {
	n := uint32(100000)
	m := &Metadata{BlockSize: 128, NrBlocks: n, CurrentEra: 9, EraArray: make([]uint32, n)}
	for e := uint32(1); e <= 3; e++ {
		ws := Writeset{Era: e, NrBits: n}
		for i := uint32(0); i < n; i += e {
			ws.Set(i)
		}
		m.Writesets = append(m.Writesets, ws)
	}
	var buf bytes.Buffer
	WriteDump(&buf, m)
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		Read(bytes.NewReader(buf.Bytes()))
	}
}
func BenchmarkTmpWrite(b *testing.B) {
	n := uint32(100000)
	m := &Metadata{BlockSize: 128, NrBlocks: n, CurrentEra: 9, EraArray: make([]uint32, n)}
	for e := uint32(1); e <= 3; e++ {
		ws := Writeset{Era: e, NrBits: n}
		m.Writesets = append(m.Writesets, ws)
	}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		WriteDump(&buf, m)
	}
	b.SetBytes(int64(buf.Len()))
}
