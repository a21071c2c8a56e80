//go:build linux

// Package e2e runs Nagare end to end on one machine: the real server, two
// real agents in hypervisor namespaces joined by an underlay bridge, VM
// namespaces and QEMU guests, and real tools (ping, iperf3, udhcpc, tcpdump) sending the
// traffic. The tests need root and skip with the reason otherwise; they are
// skipped in -short mode. See test/e2e/harness for the environment.
package e2e

import (
	"testing"

	"github.com/nagare/nagare/test/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m, "e2e") }
