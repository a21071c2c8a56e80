// Package guest builds and drives the small Linux guests of the end-to-end
// tests: Debian's kernel (linux-image-amd64, unpacked by scripts/setup.sh),
// an initramfs of static busybox and the virtio-net driver, booted by
// qemu-system-x86_64 with a virtio-net NIC on a tap device, exactly as Nova
// attaches a VM. The test talks to the guest over its serial console
// (Console). The guest's NIC keeps its default offloads (checksum offload,
// TSO, GSO): what it sends is what a real VM sends.
package guest

import (
	"bytes"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed init.sh
var initScript []byte

//go:embed udhcpc.sh
var udhcpcScript []byte

// QEMU is the emulator the guests run in (Debian's qemu-system-x86).
const QEMU = "qemu-system-x86_64"

// netModules are what the guest's NIC needs: Debian builds virtio, its PCI
// transport and virtio-net as modules (with virtio_ring, failover and
// net_failover as their dependencies).
var netModules = []string{"virtio_pci", "virtio_net"}

// Image is what a guest boots.
type Image struct {
	Release string // the kernel's release, "6.1.0-57-amd64"
	Kernel  string // the uncompressed kernel (PVH entry), or the bzImage
	Initrd  string // the initramfs, a newc cpio
	Modules []string
	// NoPVH says why Kernel is the bzImage (slower to boot under TCG):
	// no uncompressed kernel could be taken out of it. Nil otherwise.
	NoPVH error
}

// Available says why guests cannot run here ("" when they can).
func Available() string {
	if _, err := exec.LookPath(QEMU); err != nil {
		return QEMU + " is not installed (scripts/setup.sh installs qemu-system-x86)"
	}
	if _, err := FindKernel(); err != nil {
		return err.Error()
	}
	if _, err := staticBusybox(); err != nil {
		return err.Error()
	}
	return ""
}

// Build writes a guest image into dir.
func Build(dir string) (Image, error) {
	k, err := FindKernel()
	if err != nil {
		return Image{}, err
	}
	bb, err := staticBusybox()
	if err != nil {
		return Image{}, err
	}
	mods, err := modulesFor(k.Modules, netModules...)
	if err != nil {
		return Image{}, err
	}
	img := Image{Release: k.Release, Kernel: k.Image, Initrd: filepath.Join(dir, "initramfs-"+k.Release+".cpio")}
	bz, err := os.ReadFile(k.Image)
	if err != nil {
		return Image{}, err
	}
	if elfKernel, err := vmlinux(bz); err != nil {
		img.NoPVH = err
	} else {
		img.Kernel = filepath.Join(dir, "vmlinux-"+k.Release)
		if err := os.WriteFile(img.Kernel, elfKernel, 0o644); err != nil {
			return Image{}, err
		}
	}

	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "srv", "etc", "lib", "lib/modules"} {
		c.dir(d, 0o755)
	}
	// The kernel opens /dev/console for init before anything is mounted.
	c.charDev("dev/console", 0o600, 5, 1)
	bbData, err := os.ReadFile(bb)
	if err != nil {
		return Image{}, err
	}
	c.file("bin/busybox", 0o755, bbData)
	c.symlink("bin/sh", "busybox")
	c.file("init", 0o755, initScript)
	c.file("etc/udhcpc.sh", 0o755, udhcpcScript)
	var order strings.Builder
	for _, m := range mods {
		ko, err := readModule(m.path)
		if err != nil {
			return Image{}, fmt.Errorf("module %s: %w", m.name, err)
		}
		c.file("lib/modules/"+m.name+".ko", 0o644, ko)
		order.WriteString(m.name + ".ko\n")
		img.Modules = append(img.Modules, m.name)
	}
	c.file("etc/modules", 0o644, []byte(order.String()))
	if err := c.close(); err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(img.Initrd, buf.Bytes(), 0o644); err != nil {
		return Image{}, err
	}
	return img, nil
}

// staticBusybox finds a statically linked busybox, the whole of the
// guest's userland, with no libc beside it: bin/busybox in the first of
// roots that has a static one, else the one on PATH if it is static.
func staticBusybox() (string, error) {
	var candidates []string
	for _, root := range roots() {
		candidates = append(candidates, filepath.Join(root, "bin", "busybox"))
	}
	if path, err := exec.LookPath("busybox"); err == nil {
		candidates = append(candidates, path)
	}
	var errs []error
	for _, path := range candidates {
		static, err := isStatic(path)
		if err == nil && static {
			return path, nil
		}
		if err == nil {
			err = fmt.Errorf("%s is dynamically linked", path)
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no static busybox for the guests (scripts/setup.sh unpacks busybox-static into %s): %w", DefaultDir, errors.Join(errs...))
}

// isStatic reports whether the ELF executable at path has no program
// interpreter.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
