//go:build linux

// Package acceptance runs OpenStack's own API acceptance tests against a
// real Nagare, unmodified: gophercloud's networking suite
// (internal/acceptance/openstack/networking/v2/...), copied out of the Go
// module cache, against nagare-server with password authentication and one
// real nagare-agent (the agents API and BGP speaker scheduling need a
// registered host). It needs root for the agent's namespace, as the e2e
// tests do, and addresses nothing but loopback.
//
// TestGophercloudNetworking fails on any failing test and on any skip that
// is not in expectedSkips, the skips gophercloud's suite takes against
// Neutron with ML2/OVN as well, for reasons outside the API.
package acceptance

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
	dir, err := os.MkdirTemp("", "nagare-acceptance-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := harness.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "acceptance: cannot build the binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
