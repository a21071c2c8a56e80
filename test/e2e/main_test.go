//go:build linux

// Package e2e runs Nagare end to end on one machine: the real server, two
// real agents in hypervisor namespaces joined by an underlay bridge, VM
// namespaces and QEMU guests, and real tools (ping, iperf3, udhcpc, tcpdump) sending the
// traffic. The tests need root and skip with the reason otherwise; they are
// skipped in -short mode. See test/e2e/harness for the environment.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/nagare/nagare/test/e2e/harness"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || harness.Why() != "" {
		os.Exit(m.Run()) // every test skips, saying why
	}
	harness.SweepStale()
	dir, err := os.MkdirTemp("", "nagare-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := harness.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot build the binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
