package kvm

import (
	"bufio"
	"fmt"
	"io"
	"sort"
)

// An archive is the content of an initramfs: the kernel unpacks "newc"
// cpio archives (the SVR4 format with ASCII hex headers) into its root
// file system before it starts /init. Writing the archive here rather
// than with cpio(1) needs no host tool and no root for device nodes.
type archive struct {
	entries map[string]entry
}

type entry struct {
	mode  uint32 // file type and permission bits, as in st_mode
	data  []byte // file content or symlink target
	major uint32 // device numbers of a character device
	minor uint32
}

// File type bits of st_mode.
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

func newArchive() *archive { return &archive{entries: map[string]entry{}} }

// dir adds a directory and its parents.
func (a *archive) dir(name string) {
	for p := name; p != "" && p != "." && p != "/"; p = parent(p) {
		if _, ok := a.entries[p]; !ok {
			a.entries[p] = entry{mode: modeDir | 0o755}
		}
	}
}

// file adds a regular file with the given permission bits.
func (a *archive) file(name string, perm uint32, data []byte) {
	a.dir(parent(name))
	a.entries[name] = entry{mode: modeFile | perm, data: data}
}

// symlink adds a symbolic link name pointing at target.
func (a *archive) symlink(name, target string) {
	a.dir(parent(name))
	a.entries[name] = entry{mode: modeSymlink | 0o777, data: []byte(target)}
}

// char adds a character device node.
func (a *archive) char(name string, perm, major, minor uint32) {
	a.dir(parent(name))
	a.entries[name] = entry{mode: modeChar | perm, major: major, minor: minor}
}

func parent(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return ""
}

// writeTo writes the archive in newc format, parents before children
// (sorted names give that order), with the trailer entry at the end. The
// result is byte-for-byte the same for the same entries.
func (a *archive) writeTo(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	bw := bufio.NewWriter(w)
	var off int64
	put := func(ino int, name string, e entry) error {
		nlink := 1
		if e.mode&0o170000 == modeDir {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
		n, _ := bw.WriteString(hdr)
		m, _ := bw.WriteString(name + "\x00")
		off += int64(n + m)
		pad(bw, &off)
		k, _ := bw.Write(e.data)
		off += int64(k)
		return pad(bw, &off)
	}
	for i, n := range names {
		if err := put(i+1, n, a.entries[n]); err != nil {
			return err
		}
	}
	if err := put(0, "TRAILER!!!", entry{}); err != nil {
		return err
	}
	// Round the whole archive up to 512 bytes so another archive can be
	// appended after it; the kernel skips zero padding between archives.
	for off%512 != 0 {
		bw.WriteByte(0)
		off++
	}
	return bw.Flush()
}

// pad writes zeros up to the next multiple of 4 bytes.
func pad(bw *bufio.Writer, off *int64) error {
	for *off%4 != 0 {
		if err := bw.WriteByte(0); err != nil {
			return err
		}
		*off++
	}
	return nil
}
