package datapath

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

func TestFlowConfigDefaults(t *testing.T) {
	c := FlowConfig{IdleTimeout: [NumFlowClasses]time.Duration{ClassDrop: time.Second}}.WithDefaults()
	if c.IdleTimeout[ClassNormal] != DefaultNormalIdle || c.IdleTimeout[ClassDrop] != time.Second || c.MaxFlows != DefaultMaxFlows {
		t.Errorf("WithDefaults = %+v", c)
	}
}

func TestDropLabels(t *testing.T) {
	if got := MalformedDrop(packet.DropTooManyVLANs); got != "malformed-too-many-vlans" {
		t.Errorf("MalformedDrop = %q", got)
	}
}

func TestFormatActions(t *testing.T) {
	got := FormatActions([]flow.Action{
		{Type: flow.ActSetEthDst, MAC: packet.MAC{2, 0, 0, 0, 0, 1}},
		{Type: flow.ActDecTTL, Count: 1},
		{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: netip.MustParseAddr("10.0.0.2"), TunnelKey: 7},
	})
	want := "set-eth-dst(02:00:00:00:00:01),dec-ttl(1),encap(vxlan 10.0.0.2 key 7)"
	if got != want {
		t.Errorf("FormatActions = %q, want %q", got, want)
	}
	if FormatActions(nil) != "drop" {
		t.Error("no actions should read as drop")
	}
	k := flow.Key{InPort: 3, EtherType: 0x0800, SrcIP: netip.MustParseAddr("::ffff:10.0.0.1").As16(), DstIP: netip.MustParseAddr("::ffff:10.0.0.2").As16()}
	if s := FormatKey(&k); !strings.Contains(s, "10.0.0.1>10.0.0.2") {
		t.Errorf("FormatKey = %q", s)
	}
}
