package eraxml_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/era-go/era/eraxml"
)

// Which blocks changed since era 2? Blocks whose era-array value is >= 2 plus
// blocks marked by writesets of era >= 2, printed as era_invalidate does.
func ExampleWrittenSince() {
	m := &eraxml.Metadata{
		BlockSize:  128,
		NrBlocks:   8,
		CurrentEra: 3,
		EraArray:   []uint32{1, 1, 2, 0, 0, 3, 0, 0},
	}
	ws := eraxml.Writeset{Era: 2, NrBits: 8}
	ws.Set(6)
	m.Writesets = append(m.Writesets, ws)

	if err := eraxml.WriteInvalidate(os.Stdout, eraxml.WrittenSince(m, 2)); err != nil {
		fmt.Println(err)
	}
	// Output:
	// <blocks>
	//   <block block="2"/>
	//   <range begin="5" end = "7"/>
	// </blocks>
}

func ExampleRead() {
	in := `<superblock uuid="" block_size="128" nr_blocks="4" current_era="2">
  <writeset era="1" nr_bits="4">
    <marked block_begin="1" len="2"/>
  </writeset>
  <era_array>
    <era block="3" era="2"/>
  </era_array>
</superblock>`
	m, err := eraxml.Read(strings.NewReader(in))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.EraArray, m.Writesets[0].Test(2))
	if err := eraxml.WriteDump(os.Stdout, m); err != nil {
		fmt.Println(err)
	}

	_, err = eraxml.Read(strings.NewReader(strings.Replace(in, `len="2"`, `len="9"`, 1)))
	fmt.Println(err)
	// Output:
	// [0 0 0 2] true
	// <superblock uuid="" block_size="128" nr_blocks="4" current_era="2">
	//   <writeset era="1" nr_bits="4">
	//     <bit block="0" value="false"/>
	//     <bit block="1" value="true"/>
	//     <bit block="2" value="true"/>
	//     <bit block="3" value="false"/>
	//   </writeset>
	//   <era_array>
	//     <era block="0" era="0"/>
	//     <era block="1" era="0"/>
	//     <era block="2" era="0"/>
	//     <era block="3" era="2"/>
	//   </era_array>
	// </superblock>
	// line 3: writeset era 1: marked blocks [1, 10) exceed nr_bits 4
}
