package guest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Kernel modules for the initramfs. Debian ships no modules.dep in the
// package (depmod runs when it is installed, and here it is only
// unpacked), so dependencies come from each module's own .modinfo section,
// as depmod reads them.

// module is one kernel module file.
type module struct {
	name string // "virtio_net"
	path string // its file, possibly compressed (.ko.xz, .ko.zst, .ko.gz)
}

// moduleName is the name the kernel knows a module file by: its base name
// without the .ko (and compression) suffix, with '-' read as '_'.
func moduleName(file string) (string, bool) {
	base := filepath.Base(file)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if n, ok := strings.CutSuffix(base, ext); ok {
			return strings.ReplaceAll(n, "-", "_"), true
		}
	}
	return "", false
}

// moduleTree indexes the modules under dir (/lib/modules/RELEASE).
type moduleTree struct {
	files   map[string]string // name → file
	builtin map[string]bool   // compiled into the kernel (modules.builtin)
}

func readModuleTree(dir string) (*moduleTree, error) {
	t := &moduleTree{files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := moduleName(path); ok && !d.IsDir() {
			t.files[name] = path
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("index kernel modules: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := moduleName(sc.Text()); ok {
			t.builtin[name] = true
		}
	}
	return t, sc.Err()
}

// depends reads the modules a module file needs loaded first.
func (t *moduleTree) depends(name string) ([]string, error) {
	ko, err := readModule(t.files[name])
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", name)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", name, err)
	}
	return parseModinfoDepends(info), nil
}

// parseModinfoDepends returns the names in the "depends=" field of a
// .modinfo section: NUL-separated key=value strings, padded with NULs.
func parseModinfoDepends(info []byte) []string {
	for _, field := range bytes.Split(info, []byte{0}) {
		v, ok := bytes.CutPrefix(field, []byte("depends="))
		if !ok {
			continue
		}
		var deps []string
		for _, d := range strings.Split(string(v), ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, strings.ReplaceAll(d, "-", "_"))
			}
		}
		return deps
	}
	return nil
}

// loadOrder returns the modules to insmod, dependencies first, so that
// every module of wanted (and what they need) is loaded; modules built
// into the kernel are left out. deps reads a module's dependencies.
func loadOrder(wanted []string, exists, builtin func(string) bool, deps func(string) ([]string, error)) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		chain = append(chain, name)
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("kernel modules depend on each other in a cycle: %s", strings.Join(chain, " → "))
		}
		if builtin(name) {
			state[name] = done
			return nil
		}
		if !exists(name) {
			if len(chain) == 1 {
				return fmt.Errorf("kernel module %s not found", name)
			}
			return fmt.Errorf("kernel module %s not found (needed by %s)", name, strings.Join(chain[:len(chain)-1], " → "))
		}
		state[name] = visiting
		ds, err := deps(name)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if err := visit(d, chain); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, w := range wanted {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modulesFor returns the modules of the tree at dir that loading wanted
// takes, in load order.
func modulesFor(dir string, wanted ...string) ([]module, error) {
	t, err := readModuleTree(dir)
	if err != nil {
		return nil, err
	}
	exists := func(n string) bool { _, ok := t.files[n]; return ok }
	names, err := loadOrder(wanted, exists, func(n string) bool { return t.builtin[n] }, t.depends)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	mods := make([]module, len(names))
	for i, n := range names {
		mods[i] = module{name: n, path: t.files[n]}
	}
	return mods, nil
}

// readModule reads a module file, decompressed: busybox's insmod passes
// the bytes to init_module(2), which takes an uncompressed ELF.
func readModule(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("no module file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, ".ko"):
		return b, nil
	case strings.HasSuffix(path, ".ko.xz"):
		return decompress(b, "xz", false)
	case strings.HasSuffix(path, ".ko.zst"):
		return decompress(b, "zstd", false)
	case strings.HasSuffix(path, ".ko.gz"):
		return decompress(b, "gzip", false)
	}
	return nil, fmt.Errorf("%s: not a kernel module file", path)
}
