//go:build linux

package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nagare/nagare/pkg/netns"
)

// NamePrefix starts every namespace this package creates, followed by the
// creating process's pid: "ne2e4242-3-hv1" is namespace hv1 of the third
// environment of process 4242. SweepStale uses the pid to find leftovers of
// test processes that were killed before their cleanup could run.
const NamePrefix = "ne2e"

// NS is a named network namespace ("ip netns exec Name …").
type NS struct {
	Name string
	Path string // /run/netns/Name, for setns(2) and --netns
}

// newNS creates namespace name with loopback up and deletes it in
// t.Cleanup, after killing whatever still runs inside it.
func newNS(t testing.TB, name string) *NS {
	t.Helper()
	path, err := netns.AddNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := deleteNS(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return &NS{Name: name, Path: path}
}

// deleteNS kills the processes left in the namespace (they would keep it,
// and its interfaces, alive after the unmount) and deletes it.
func deleteNS(name string) error {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return netns.DeleteNamed(name)
}

// SweepStale deletes the namespaces a previous run of these tests left
// behind: those named by this package for a process that no longer exists.
// It never touches another live process's namespaces.
func SweepStale() {
	for _, name := range netns.Orphans(NamePrefix) {
		_ = deleteNS(name) // best effort: the next run tries again
	}
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NS) Run(args ...string) (string, error) {
	out, err := ns.Command(context.Background(), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netns %s: %s: %w: %s", ns.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// Do runs fn on an OS thread inside the namespace (netns.Do). File
// descriptors fn opens stay in the namespace afterwards (raw sockets for
// bad input). fn must not start goroutines: they would run elsewhere.
func (ns *NS) Do(fn func() error) error { return netns.DoPath(ns.Path, fn) }

// veth creates a veth pair with ifA in a and ifB in b. The ends are created
// directly in their namespaces: nothing appears in the root namespace.
func veth(t testing.TB, a *NS, ifA string, b *NS, ifB string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth",
		"peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add %s (netns %s) type veth peer %s (netns %s): %v: %s", ifA, a.Name, ifB, b.Name, err, bytes.TrimSpace(out))
	}
}
