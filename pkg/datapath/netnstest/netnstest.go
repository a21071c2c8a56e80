//go:build linux

// Package netnstest is a test helper for privileged datapath tests: it creates
// throw-away named network namespaces joined by veth pairs, runs commands and
// Go functions inside them, and removes everything in t.Cleanup, even when the
// test fails.
//
// Namespace names carry a per-process prefix (Prefix, "ngap<pid%1000>-") so
// that parallel test binaries, and other engineers' tests on the same machine,
// never collide, and so a leak is easy to attribute ("ip netns list | grep
// ngap"). Veth ends are created directly inside their namespaces, so no
// interface ever appears in the host namespace, where names could clash.
//
// Namespaces are made and entered with pkg/netns; links and commands go
// through iproute2 ("ip link add", "ip netns exec"), so tests read like the
// commands an operator would type.
package netnstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nagare/nagare/pkg/netns"
)

// Prefix starts the name of every namespace this process creates.
var Prefix = fmt.Sprintf("ngap%d-", os.Getpid()%1000)

// seq makes names unique within one process, so two tests (or two
// sub-benchmarks run b.N times) may both ask for "a".
var seq atomic.Uint32

// NS is a named network namespace that lives until the end of the test that
// created it.
type NS struct {
	// Name is the full iproute2 name, Prefix included ("ip netns exec Name").
	Name string
	// Path is the bind mount that pins the namespace; pass it to setns(2) or
	// to afpacket.OpenInNetns.
	Path string
}

// RequireRoot skips the test unless it runs as root, which creating
// namespaces and packet sockets needs.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: needs root to create network namespaces and AF_PACKET sockets (run with sudo, or as root in CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("skipping: iproute2 'ip' command not found (apt-get install iproute2)")
	}
}

// New creates namespace Prefix+name+N with its loopback up, and deletes it in
// tb.Cleanup. It skips the test when not root.
func New(tb testing.TB, name string) *NS {
	tb.Helper()
	RequireRoot(tb)
	full := fmt.Sprintf("%s%s%d", Prefix, name, seq.Add(1))
	path, err := netns.AddNamed(full)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// Deleting the namespace destroys the veth ends inside it, and with
		// them their peers in other namespaces.
		if err := netns.DeleteNamed(full); err != nil {
			tb.Errorf("cleanup: %v", err)
		}
	})
	return &NS{Name: full, Path: path}
}

// Exec runs a command inside the namespace and returns its combined output.
func (ns *NS) Exec(args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in netns %s: %s: %w: %s", ns.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Run is Exec that fails the test on error; it returns trimmed output.
func (ns *NS) Run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := ns.Exec(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return string(bytes.TrimSpace(out))
}

// Do runs fn on an OS thread that has entered the namespace, and returns its
// error. Sockets and other file descriptors opened by fn stay bound to the
// namespace after Do returns, which is the usual reason to call it.
//
// fn must not start goroutines (they would run on other threads, in the
// original namespace) and must not rely on thread-local state beyond the call.
// See netns.Do.
func (ns *NS) Do(fn func() error) error { return netns.DoPath(ns.Path, fn) }

// Veth creates a veth pair with end ifA in namespace a and end ifB in
// namespace b, both up with IPv6 disabled. IPv6 is off so the kernel's own
// router solicitations and MLD reports do not show up as unexpected frames in
// tests that count packets. The pair disappears with either namespace.
func Veth(tb testing.TB, a *NS, ifA string, b *NS, ifB string) {
	tb.Helper()
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth",
		"peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		tb.Fatalf("ip link add %s (netns %s) veth peer %s (netns %s): %v: %s",
			ifA, a.Name, ifB, b.Name, err, bytes.TrimSpace(out))
	}
	for _, end := range []struct {
		ns *NS
		If string
	}{{a, ifA}, {b, ifB}} {
		if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil { // absent when booted with ipv6.disable=1
			end.ns.Run(tb, "sysctl", "-q", "-w", "net.ipv6.conf."+end.If+".disable_ipv6=1")
		}
		end.ns.Run(tb, "ip", "link", "set", end.If, "up")
	}
}
