package kvm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
)

// Under TCG a bzImage spends seconds decompressing itself in emulated
// code. qemu can instead start the uncompressed kernel ELF directly at
// its PVH entry point, which Debian's kernels have (CONFIG_PVH). The
// Debian bzImage carries that ELF as an xz stream; uncompressedKernel
// unpacks it with xz(1) once into the cache. Without xz, or when the ELF
// has no PVH entry, the bzImage is used as it is.
func uncompressedKernel(bzImage, out string) (string, error) {
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	img, err := os.ReadFile(bzImage)
	if err != nil {
		return "", err
	}
	at := bytes.Index(img, []byte("\xfd7zXZ\x00"))
	if at < 0 {
		return "", fmt.Errorf("%s holds no xz stream", bzImage)
	}
	cmd := exec.Command("xz", "--decompress", "--stdout", "--single-stream")
	cmd.Stdin = bytes.NewReader(img[at:])
	elfImage, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("xz: %w", err)
	}
	if err := hasPVHEntry(elfImage); err != nil {
		return "", err
	}
	if err := os.WriteFile(out+".tmp", elfImage, 0o644); err != nil {
		return "", err
	}
	return out, os.Rename(out+".tmp", out)
}

// hasPVHEntry checks an ELF kernel for the note qemu boots it through:
// owner "Xen", type 18 (the 32-bit physical entry point).
func hasPVHEntry(image []byte) error {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return fmt.Errorf("uncompressed kernel: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return fmt.Errorf("uncompressed kernel notes: %w", err)
		}
		for len(b) >= 12 {
			nameLen := int(binary.LittleEndian.Uint32(b[0:]))
			descLen := int(binary.LittleEndian.Uint32(b[4:]))
			typ := binary.LittleEndian.Uint32(b[8:])
			nameEnd := 12 + (nameLen+3)&^3
			if nameEnd > len(b) {
				break
			}
			if typ == 18 && string(bytes.TrimRight(b[12:12+nameLen], "\x00")) == "Xen" {
				return nil
			}
			next := nameEnd + (descLen+3)&^3
			if next > len(b) {
				break
			}
			b = b[next:]
		}
	}
	return fmt.Errorf("uncompressed kernel has no PVH entry note")
}
