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
	"testing"

	"github.com/nagare/nagare/test/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m, "acceptance") }
