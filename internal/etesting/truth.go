package etesting

import (
	"math/bits"

	"github.com/era-go/era"
)

// Eras returns the era of every block of v computed apart from the query
// code: from the era array and the writesets of v's dump (the current
// writeset included), as BlockEra defines it, the greatest of the block's
// era-array value and the eras of the writesets that mark it.
func Eras(v *era.View) ([]uint32, error) {
	m, err := v.Dump(era.DumpOptions{IncludeCurrent: true})
	if err != nil {
		return nil, err
	}
	eras := m.EraArray
	for _, ws := range m.Writesets {
		for i, w := range ws.Bits {
			for ; w != 0; w &= w - 1 {
				b := uint64(i)*64 + uint64(bits.TrailingZeros64(w))
				if b < uint64(len(eras)) {
					eras[b] = max(eras[b], ws.Era)
				}
			}
		}
	}
	return eras, nil
}

// DeviceEras is Eras of the device's last commit (Device.View).
func DeviceEras(d *era.Device) ([]uint32, error) {
	v, err := d.View()
	if err != nil {
		return nil, err
	}
	defer v.Close()
	return Eras(v)
}
