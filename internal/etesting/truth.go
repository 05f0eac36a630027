package etesting

import (
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
	return m.LogicalEras(false), nil
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
