package main

import (
	"os"

	"github.com/era-go/era"
)

// openDevice opens the era device era serve serves.
func openDevice(meta, image *os.File, blockSectors uint32, format bool) (*era.Device, error) {
	return era.Open(meta, image, era.Config{BlockSectors: blockSectors})
}

// checkpoint starts a new era and returns it.
func checkpoint(d *era.Device) (uint32, error) {
	if err := d.Checkpoint(); err != nil {
		return 0, err
	}
	return d.Status().CurrentEra, nil
}

// takeSnapshot starts a new era with a metadata snapshot and returns it.
func takeSnapshot(d *era.Device) (uint32, error) {
	if err := d.TakeSnapshot(); err != nil {
		return 0, err
	}
	return d.Status().CurrentEra, nil
}

// changeID is the change ID of the current era.
func changeID(d *era.Device) string { return "" }
