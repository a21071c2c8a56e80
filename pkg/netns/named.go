//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir holds the bind mounts that name namespaces, where iproute2 keeps
// them: a namespace made here is one `ip netns exec NAME` enters, and the
// other way round.
const RunDir = "/run/netns"

// Path returns the path of the named namespace name.
func Path(name string) string { return filepath.Join(RunDir, name) }

// runDirMu serialises making RunDir a shared mount point within the
// process; iproute2 does the same steps, unserialised, across processes.
var runDirMu sync.Mutex

// AddNamed creates the namespace name, pinned by a bind mount at
// Path(name) as `ip netns add` does, with its loopback up (every user of a
// namespace wants it: without it the namespace cannot reach its own
// addresses). It returns the path. Remove it with DeleteNamed.
func AddNamed(name string) (string, error) {
	path := Path(name)
	if err := shareRunDir(); err != nil {
		return "", fmt.Errorf("add network namespace %s: %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return "", fmt.Errorf("add network namespace %s: %w", name, err)
	}
	f.Close()
	h, err := inNew(func() error {
		// /proc/thread-self: the namespace of this (locked) thread, the
		// new one, not the process's.
		return unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
	})
	if err != nil {
		// If the mount happened but switching back failed, undo it; the
		// unmount fails harmlessly when it did not happen.
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return "", fmt.Errorf("add network namespace %s: %w", name, err)
	}
	defer h.Close()
	if err := loopbackUp(h); err != nil {
		return "", errors.Join(fmt.Errorf("add network namespace %s: %w", name, err), DeleteNamed(name))
	}
	return path, nil
}

// shareRunDir creates RunDir and makes it a shared mount point, as
// iproute2 does, so that adding and deleting a namespace propagates into
// the mount namespaces `ip netns exec` creates for the programs it runs:
// a namespace deleted here is then freed at once, not kept alive by a
// copy of its bind mount in some long-running program's mount namespace.
func shareRunDir() error {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	for made := false; ; made = true {
		err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: RunDir is not a mount point yet. Make it one by
		// bind-mounting it onto itself, once, and try again.
		if !errors.Is(err, unix.EINVAL) || made {
			return fmt.Errorf("make %s a shared mount: %w", RunDir, err)
		}
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", RunDir, err)
		}
	}
}

func loopbackUp(ns Handle) error {
	h, err := Netlink(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// DeleteNamed deletes the namespace name as `ip netns del` does: it
// unmounts and removes Path(name). The namespace, and the interfaces in
// it, go away with the last process or handle still inside.
func DeleteNamed(name string) error {
	if err := vnetns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// Orphans returns the named namespaces that a test or benchmark run left
// behind when it was killed before its cleanup: those named prefix, a PID,
// "-" and anything ("nbench4242-vm1"), where no process with that PID
// exists any more. Names of live processes — other runs going on right now
// — are never returned. Callers name their namespaces after os.Getpid()
// for this.
func Orphans(prefix string) []string {
	entries, err := os.ReadDir(RunDir)
	if err != nil {
		return nil // no RunDir: nothing was ever left
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(\d+)-`)
	var out []string
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err == nil || errors.Is(err, unix.EPERM) {
			continue // its owner is alive
		}
		out = append(out, e.Name())
	}
	return out
}
