package guest

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultDir is where scripts/setup.sh unpacks the Debian packages the
// guests are made of (linux-image-amd64's kernel, busybox-static):
// boot/vmlinuz-RELEASE, lib/modules/RELEASE, bin/busybox.
// NAGARE_GUEST_DIR names another such tree.
const DefaultDir = "/var/cache/nagare/guest"

// roots are the trees searched for the guest's kernel and busybox: the
// unpacked packages, then this machine's own (a linux-image package
// installed in /boot, busybox-static installed).
func roots() []string {
	if d := os.Getenv("NAGARE_GUEST_DIR"); d != "" {
		return []string{d}
	}
	return []string{DefaultDir, "/"}
}

// Kernel is a kernel and its modules, as a Debian linux-image package lays
// them out.
type Kernel struct {
	Release string // "6.1.0-57-amd64"
	Image   string // boot/vmlinuz-RELEASE, a bzImage
	Modules string // lib/modules/RELEASE
}

// FindKernel finds the guest kernel in the first of roots that has one. Of
// several releases it takes the last in lexical order.
func FindKernel() (Kernel, error) {
	for _, root := range roots() {
		images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
		slices.Sort(images)
		slices.Reverse(images)
		for _, img := range images {
			rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
			// Debian moves /lib to /usr/lib in trixie's packages.
			for _, mods := range []string{filepath.Join(root, "lib", "modules", rel), filepath.Join(root, "usr", "lib", "modules", rel)} {
				if fi, err := os.Stat(filepath.Join(mods, "kernel")); err == nil && fi.IsDir() {
					return Kernel{Release: rel, Image: img, Modules: mods}, nil
				}
			}
		}
	}
	return Kernel{}, fmt.Errorf("no guest kernel (boot/vmlinuz-RELEASE with lib/modules/RELEASE) in %s: scripts/setup.sh unpacks Debian's linux-image-amd64 into %s",
		strings.Join(roots(), " or "), DefaultDir)
}

// vmlinux returns the uncompressed ELF kernel inside a bzImage, so that
// QEMU can start it at its PVH entry point. Under TCG the bzImage's own
// decompressor is most of a boot (3.4 of 5.3 s for Debian's xz-compressed
// 6.1 kernel on this machine); the kernel itself is the same. Like the
// kernel's scripts/extract-vmlinux it tries the first stream of each
// compression the kernel may use.
func vmlinux(bzImage []byte) ([]byte, error) {
	var errs []error
	for _, c := range []struct{ magic, format string }{
		{"\xfd7zXZ\x00", "xz"}, {"\x28\xb5\x2f\xfd", "zstd"}, {"\x1f\x8b\x08", "gzip"},
	} {
		i := bytes.Index(bzImage, []byte(c.magic))
		if i < 0 {
			continue
		}
		out, err := decompress(bzImage[i:], c.format, true)
		if err == nil && !hasPVHEntry(out) {
			err = errors.New("not an ELF kernel with a PVH entry point (CONFIG_PVH)")
		}
		if err == nil {
			return out, nil
		}
		errs = append(errs, fmt.Errorf("%s stream at %d: %w", c.format, i, err))
	}
	if len(errs) == 0 {
		return nil, errors.New("no compressed kernel found in the bzImage")
	}
	return nil, errors.Join(errs...)
}

// hasPVHEntry reports whether b is an x86-64 ELF with the Xen note that
// gives its 32-bit PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU
// needs to boot an uncompressed kernel.
func hasPVHEntry(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Machine != elf.EM_X86_64 {
		return false
	}
	const phys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return false
		}
		for len(notes) >= 12 {
			namesz, descsz, typ := binary.LittleEndian.Uint32(notes), binary.LittleEndian.Uint32(notes[4:]), binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + align4(uint64(namesz))
			end := nameEnd + align4(uint64(descsz))
			if end > uint64(len(notes)) {
				break
			}
			if typ == phys32Entry && namesz == 4 && string(notes[12:16]) == "Xen\x00" {
				return true
			}
			notes = notes[end:]
		}
	}
	return false
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// decompress decompresses data in format (xz, zstd, gzip). With firstOnly
// data may go on after the first compressed stream (a bzImage's payload is
// followed by the rest of the image), which is then ignored. xz and zstd
// are their command-line tools: the kernel's xz streams use the x86 BCJ
// filter, which the Go xz package does not implement.
func decompress(data []byte, format string, firstOnly bool) ([]byte, error) {
	if format == "gzip" {
		r, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		r.Multistream(!firstOnly)
		return io.ReadAll(r)
	}
	var args []string
	pkg := format
	switch format {
	case "xz":
		args, pkg = []string{"-dc"}, "xz-utils"
		if firstOnly {
			args = append(args, "--single-stream")
		}
	case "zstd":
		args = []string{"-dc"}
	default:
		return nil, fmt.Errorf("unknown compression %q", format)
	}
	if _, err := exec.LookPath(format); err != nil {
		return nil, fmt.Errorf("%s-compressed data needs %s, which is not installed (apt-get install %s)", format, format, pkg)
	}
	cmd := exec.Command(format, args...)
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	// zstd has no --single-stream: it complains about what follows the
	// first frame after writing it out; the caller checks what it got.
	if err != nil && !(firstOnly && format == "zstd" && out.Len() > 0) {
		return nil, fmt.Errorf("%s %s: %w: %s", format, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}
