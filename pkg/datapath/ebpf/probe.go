//go:build linux

package ebpf

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Supported reports whether this kernel and these privileges can run the
// kernel datapath, and if not, why: BTF, TC programs with the helpers the
// programs call, and the map types they use. Attaching picks TCX or
// clsact by itself.
func Supported() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("no kernel BTF (/sys/kernel/btf/vmlinux): %w", err)
	}
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		return fmt.Errorf("TC BPF programs: %w", err)
	}
	for _, fn := range []asm.BuiltinFunc{asm.FnRedirectPeer, asm.FnRedirectNeigh, asm.FnSkbAdjustRoom,
		asm.FnPerfEventOutput, asm.FnSkbSetTunnelKey, asm.FnSkbVlanPush, asm.FnCloneRedirect} {
		if err := features.HaveProgramHelper(ebpf.SchedCLS, fn); err != nil {
			return fmt.Errorf("BPF helper %s: %w", fn, err)
		}
	}
	for _, mt := range []ebpf.MapType{ebpf.Hash, ebpf.PerCPUArray, ebpf.PerfEventArray} {
		if err := features.HaveMapType(mt); err != nil {
			return fmt.Errorf("BPF map type %s: %w", mt, err)
		}
	}
	return nil
}

// PinRoot is where agents pin their datapaths, one directory per host.
const PinRoot = "/sys/fs/bpf/nagare"

// DefaultPinDir returns the pin directory of host's datapath in the
// network namespace at netnsPath ("" for the caller's):
// PinRoot/<host>/netns-<inode>. The namespace's identity is part of it so
// that an agent adopts only a datapath that served the same namespace: a
// host name reused in a new namespace (a test run after another) starts
// afresh. Directories of the same host for namespaces that no longer
// exist are removed: nothing can adopt them, and their maps hold memory.
func DefaultPinDir(host, netnsPath string) (string, error) {
	hostDir, own, err := pinDirOf(host, netnsPath)
	if err != nil {
		return "", err
	}
	if err := ensureBPFFS(hostDir); err != nil {
		return "", fmt.Errorf("pin directory: %w", err)
	}
	entries, err := os.ReadDir(hostDir)
	if err != nil {
		return "", err
	}
	var live map[uint64]bool
	for _, e := range entries {
		if e.Name() == own || !strings.HasPrefix(e.Name(), "netns-") {
			continue
		}
		if live == nil {
			live = liveNetns()
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(e.Name(), "netns-"), 10, 64)
		if err == nil && !live[n] {
			if err := os.RemoveAll(filepath.Join(hostDir, e.Name())); err != nil {
				return "", fmt.Errorf("remove the pins of a namespace gone: %w", err)
			}
		}
	}
	return filepath.Join(hostDir, own), nil
}

// RemovePins removes what host's datapath in the network namespace at
// netnsPath pinned (DefaultPinDir), for whoever made the namespace and is
// done with it (a test): its maps' memory is freed once no program uses
// them. The host's directory stays, as other namespaces' agents of the
// same name may be creating theirs in it.
func RemovePins(host, netnsPath string) error {
	hostDir, own, err := pinDirOf(host, netnsPath)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(hostDir, own)); err != nil {
		return fmt.Errorf("remove pins: %w", err)
	}
	return nil
}

// pinDirOf returns the directory of host's pins and the name of the
// namespace's directory in it.
func pinDirOf(host, netnsPath string) (hostDir, own string, err error) {
	if host == "" || strings.ContainsAny(host, "/\x00") || host == "." || host == ".." {
		return "", "", fmt.Errorf("pin directory: host name %q", host)
	}
	if netnsPath == "" {
		netnsPath = "/proc/self/ns/net"
	}
	ino, err := inode(netnsPath)
	if err != nil {
		return "", "", fmt.Errorf("pin directory: %w", err)
	}
	return filepath.Join(PinRoot, host), "netns-" + strconv.FormatUint(ino, 10), nil
}

func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// liveNetns returns the inodes of the network namespaces that exist:
// those of processes and those bind-mounted under /run/netns.
func liveNetns() map[uint64]bool {
	live := map[uint64]bool{}
	paths, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	named, _ := filepath.Glob("/run/netns/*")
	for _, p := range append(paths, named...) {
		if ino, err := inode(p); err == nil {
			live[ino] = true
		}
	}
	return live
}
