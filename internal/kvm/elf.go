package kvm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// moduleName is how the kernel names a module file: the base name without
// ".ko", with dashes as underscores.
func moduleName(path string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(path), ".ko"), "-", "_")
}

// moduleIndex maps module names to their files under a kernel's
// lib/modules/<version> folder.
func moduleIndex(modDir string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			idx[moduleName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing kernel modules: %w", err)
	}
	return idx, nil
}

// moduleDepends reads the "depends=" field of a module's .modinfo
// section: the modules whose symbols it uses, which must be loaded first.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			for _, d := range strings.Split(string(v), ",") {
				deps = append(deps, strings.ReplaceAll(d, "-", "_"))
			}
		}
	}
	return deps, nil
}

// moduleChain returns the files of the wanted modules and of everything
// they depend on, each after its dependencies, without repeats.
func moduleChain(idx map[string]string, wanted []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle through %s", name)
		case 2:
			return nil
		}
		path, ok := idx[name]
		if !ok {
			return fmt.Errorf("kernel module %s (wanted by %s) is not in the kernel package", name, from)
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, w := range wanted {
		if err := visit(strings.ReplaceAll(w, "-", "_"), "the harness"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// libDirs are where an amd64 Debian system keeps shared libraries,
// relative to its root.
var libDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"}

// inRoot resolves path (absolute inside root) to a regular file under
// root, following symbolic links as they would resolve inside root.
func inRoot(root, path string) (string, error) {
	for range 16 {
		host := filepath.Join(root, path)
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", fmt.Errorf("%s: too many symbolic links", path)
}

// findProgram looks for an executable named name in the usual bin and
// sbin folders of root and returns its host path.
func findProgram(root, name string) (string, error) {
	for _, dir := range []string{"usr/sbin", "sbin", "usr/bin", "bin"} {
		if p, err := inRoot(root, "/"+dir+"/"+name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %s is not in the extracted packages", name)
}

// sharedObjects returns the ELF interpreter path of a dynamically linked
// program (empty for a static one) and the host paths, keyed by soname,
// of every shared library it needs, directly or through other libraries,
// found under root.
func sharedObjects(root, program string, libs map[string]string) (interp string, err error) {
	f, err := elf.Open(program)
	if err != nil {
		return "", fmt.Errorf("%s: %w", program, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", fmt.Errorf("%s: interpreter: %w", program, err)
			}
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return "", fmt.Errorf("%s: %w", program, err)
	}
	for _, so := range needed {
		if _, ok := libs[so]; ok {
			continue
		}
		var found string
		for _, dir := range libDirs {
			if p, err := inRoot(root, "/"+dir+"/"+so); err == nil {
				found = p
				break
			}
		}
		if found == "" {
			return "", fmt.Errorf("%s needs %s, which no downloaded package provides", filepath.Base(program), so)
		}
		libs[so] = found
		if _, err := sharedObjects(root, found, libs); err != nil {
			return "", err
		}
	}
	return interp, nil
}
