//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestEncapsulation captures the underlay (tcpdump on the underlay bridge)
// while VMs on different hosts ping each other, bridged and routed, and
// checks that every tunnel packet carries the tunnel key of the port the
// packet leaves the overlay by (the EGRESS port, read from the API), first
// over VXLAN, then after the tunnel zone is switched to GRE.
func TestEncapsulation(t *testing.T) {
	harness.Require(t, "tcpdump")
	t.Parallel()
	tp := newTopology(t)
	key := map[string]uint32{}
	for _, vm := range []string{"vm11", "vm12", "vm22"} {
		key[vm] = tp.tunnelKey(t, tp.port[vm])
	}
	t.Logf("tunnel keys: vm11's port %d, vm12's port %d, vm22's port %d", key["vm11"], key["vm12"], key["vm22"])

	// Each ping's packets as they must appear on the underlay: outer hv
	// addresses, inner addresses and ICMP type (8 request, 0 reply), key.
	type want struct {
		outerSrc, outerDst, innerSrc, innerDst string
		icmpType                               uint8
		key                                    uint32
		what                                   string
	}
	wants := []want{
		{"10.99.0.1", "10.99.0.2", "10.0.1.11", "10.0.1.12", 8, key["vm12"], "bridged request to vm12"},
		{"10.99.0.2", "10.99.0.1", "10.0.1.12", "10.0.1.11", 0, key["vm11"], "bridged reply to vm11"},
		{"10.99.0.1", "10.99.0.2", "10.0.1.11", "10.0.2.12", 8, key["vm22"], "routed request to vm22"},
		{"10.99.0.2", "10.99.0.1", "10.0.2.12", "10.0.1.11", 0, key["vm11"], "routed reply to vm11"},
	}
	check := func(t *testing.T, kind string, pkts []harness.Encap) {
		t.Helper()
		for _, w := range wants {
			n := 0
			for _, p := range pkts {
				if p.Kind != kind || p.OuterSrc.String() != w.outerSrc || p.OuterDst.String() != w.outerDst ||
					p.InnerSrc.String() != w.innerSrc || p.InnerDst.String() != w.innerDst || p.InnerICMPType != w.icmpType {
					continue
				}
				n++
				if p.Key != w.key {
					t.Errorf("%s: %s key %d, want %d (the egress port's tunnel key)", w.what, kind, p.Key, w.key)
				}
				if kind == "vxlan" && p.UDPDstPort != 4789 {
					t.Errorf("%s: VXLAN to UDP port %d, want 4789", w.what, p.UDPDstPort)
				}
				if kind == "gre" && (p.GREFlags != 0x2000 || p.GREPro != 0x6558) {
					t.Errorf("%s: GRE flags %#04x protocol %#04x, want key only (0x2000) and Ethernet (0x6558)", w.what, p.GREFlags, p.GREPro)
				}
			}
			if n < 3 {
				t.Errorf("%s: %d %s packets on the underlay, want 3", w.what, n, kind)
			}
		}
		for _, p := range pkts {
			if p.Kind != kind {
				t.Errorf("unexpected %q packet on the underlay while the zone is %s: %s", p.Kind, kind, p)
			}
		}
	}
	ping := func(t *testing.T) {
		t.Helper()
		mustPing(t, tp.vm["vm11"], "10.0.1.12", 3)
		mustPing(t, tp.vm["vm11"], "10.0.2.12", 3)
	}

	t.Run("VXLAN", func(t *testing.T) {
		tp.vm["vm11"].WaitPing(t, "10.0.1.12", 10*time.Second)
		tp.vm["vm11"].WaitPing(t, "10.0.2.12", 10*time.Second)
		c := harness.StartCapture(t, tp.Underlay, "br0", "udp port 4789 or ip proto 47")
		ping(t)
		pkts := c.Stop(t)
		t.Logf("%d tunnel packets captured; e.g. %v", len(pkts), first(pkts))
		check(t, "vxlan", pkts)
	})
	t.Run("GRE", func(t *testing.T) {
		tp.MustCLI(t, "tunnel-zone tzone0 set type gre")
		if got := tp.MustCLI(t, "tunnel-zone tzone0 show type"); got != "gre" {
			t.Fatalf("tunnel zone type after set: %q", got)
		}
		tp.vm["vm11"].WaitPing(t, "10.0.1.12", 10*time.Second)
		tp.vm["vm11"].WaitPing(t, "10.0.2.12", 10*time.Second)
		c := harness.StartCapture(t, tp.Underlay, "br0", "udp port 4789 or ip proto 47")
		ping(t)
		pkts := c.Stop(t)
		t.Logf("%d tunnel packets captured; e.g. %v", len(pkts), first(pkts))
		check(t, "gre", pkts)
	})
}

func first(pkts []harness.Encap) string {
	if len(pkts) == 0 {
		return "none"
	}
	return pkts[0].String()
}
