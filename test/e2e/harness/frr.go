//go:build linux

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FRR is a router of Debian's FRR (zebra, bfdd, bgpd) running in a test
// namespace, as the upstream of Nagare's uplinks. Its daemons are started
// with FRR's path space named after the namespace (-N), so that its
// sockets (/var/run/frr/NAME), its vtysh configuration (/etc/frr/NAME)
// and its pid files are its own; no systemd, nothing shared with another
// instance. Cleanup kills the daemons and removes the directories.
type FRR struct {
	NS   *NS
	dir  string
	conf map[string]string // daemon → configuration
}

// frrDaemons are started in this order (zebra first: the others connect
// to it).
var frrDaemons = []string{"zebra", "bfdd", "bgpd"}

// StartFRR writes the daemons' configurations (zebra's may be empty) and
// starts them in ns.
func StartFRR(t testing.TB, ns *NS, zebra, bfdd, bgpd string) *FRR {
	t.Helper()
	// Not t.TempDir: FRR's user must reach the directory, and a test's
	// temporary directory is root's alone.
	dir, err := os.MkdirTemp("", "nagare-frr-"+ns.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	f := &FRR{NS: ns, dir: dir, conf: map[string]string{"zebra": zebra, "bfdd": bfdd, "bgpd": bgpd}}
	for _, d := range []string{f.runDir(), f.etcDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		f.Kill()
		if t.Failed() {
			t.Logf("FRR log of %s:\n%s", ns.Name, tailString(f.Log(), logLines()))
		}
		for _, d := range []string{f.runDir(), f.etcDir(), f.dir} {
			if err := os.RemoveAll(d); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.etcDir(), "vtysh.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for d, c := range f.conf {
		// Milliseconds: the logs are read beside the agents' to time a
		// failover.
		hdr := fmt.Sprintf("hostname %s\nlog file %s\nlog timestamp precision 3\n", ns.Name, filepath.Join(f.dir, "frr.log"))
		if err := os.WriteFile(filepath.Join(f.dir, d+".conf"), []byte(hdr+c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The daemons run as FRR's user and must read and write there.
	for _, d := range []string{f.dir, f.runDir()} {
		if out, err := exec.Command("chown", "-R", "frr:frr", d).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", d, err, out)
		}
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *FRR) runDir() string { return filepath.Join("/var/run/frr", f.NS.Name) }
func (f *FRR) etcDir() string { return filepath.Join("/etc/frr", f.NS.Name) }

// Start starts the daemons (again, after Kill). They run at nice -10: an
// upstream is a dedicated router, and on a shared machine loaded by other
// test suites its BFD would otherwise go unscheduled for half a second
// now and then and fail sessions, which no router of its own sees.
func (f *FRR) Start() error {
	for _, d := range frrDaemons {
		out, err := f.NS.Run("nice", "-n", "-10", "/usr/lib/frr/"+d, "-d", "-N", f.NS.Name, "-f", filepath.Join(f.dir, d+".conf"),
			"-i", filepath.Join(f.dir, d+".pid"))
		if err != nil {
			return fmt.Errorf("start FRR %s in %s: %w: %s\n%s", d, f.NS.Name, err, out, f.Log())
		}
	}
	return nil
}

// Kill kills the daemons with SIGKILL, as a crash would: the routes zebra
// installed stay in the kernel.
func (f *FRR) Kill() {
	f.signal(syscall.SIGKILL)
	for _, d := range frrDaemons {
		_ = os.Remove(filepath.Join(f.dir, d+".pid")) // none if it never started
	}
}

// Freeze stops the daemons (SIGSTOP) without closing anything: the router
// falls silent as a hung or powered-off one does, with no TCP FIN or RST
// to tell its peers. Thaw lets them go on.
func (f *FRR) Freeze() { f.signal(syscall.SIGSTOP) }

// Thaw continues the daemons Freeze stopped.
func (f *FRR) Thaw() { f.signal(syscall.SIGCONT) }

// signal sends sig to every daemon that has a pid file.
func (f *FRR) signal(sig syscall.Signal) {
	for _, d := range frrDaemons {
		b, err := os.ReadFile(filepath.Join(f.dir, d+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			_ = syscall.Kill(pid, sig) // a daemon already gone has nothing to stop
		}
	}
}

// Vtysh runs a vtysh command.
func (f *FRR) Vtysh(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := f.NS.Command(ctx, "vtysh", "-N", f.NS.Name, "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q in %s: %w: %s", cmd, f.NS.Name, err, out)
	}
	return string(out), nil
}

// Log is the daemons' log so far.
func (f *FRR) Log() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "frr.log"))
	return string(b)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
