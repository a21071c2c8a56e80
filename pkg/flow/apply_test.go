package flow

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

func TestCheck(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		act Action
		ok  bool
	}{
		{Action{Type: ActOutput, Port: 3}, true},
		{Action{Type: ActSetIPSrc, Addr: a("10.0.0.1")}, true},
		{Action{Type: ActSetIPSrc}, false},
		{Action{Type: ActInnerDst, Addr: a("fe80::1%eth0")}, false},
		{Action{Type: ActPushVLAN, VLAN: 4095}, true},
		{Action{Type: ActPushVLAN, VLAN: 4096}, false},
		{Action{Type: ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: a("192.0.2.1"), TunnelKey: packet.MaxTunnelKey}, true},
		{Action{Type: ActEncap, Tunnel: packet.TunnelGRE, Underlay: a("192.0.2.1"), TunnelKey: packet.MaxTunnelKey + 1}, false},
		{Action{Type: ActEncap, Tunnel: packet.TunnelNone, Underlay: a("192.0.2.1")}, false},
		{Action{Type: ActEncap, Tunnel: packet.TunnelVXLAN}, false},
		{Action{Type: 0}, false},
		{Action{Type: 200}, false},
	}
	for _, c := range cases {
		if err := c.act.Check(); (err == nil) != c.ok {
			t.Errorf("%s %+v: Check = %v, want ok %v", c.act.Type, c.act, err, c.ok)
		}
	}
}

func TestRewrite(t *testing.T) {
	frame := func() *packet.Parsed {
		b := make([]byte, 128)
		n, err := packet.BuildProbe(b, &packet.Probe{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
			Proto: packet.IPProtoUDP, SrcPort: 1000, DstPort: 53, TTL: 3})
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Parsed
		p.Decode(b[:n])
		return &p
	}
	p := frame()
	if err := (&Action{Type: ActDecTTL, Count: 2}).Rewrite(p); err != nil || p.TTL != 1 {
		t.Fatalf("dec-ttl 2 of 3: %v, TTL %d", err, p.TTL)
	}
	if err := (&Action{Type: ActDecTTL, Count: 1}).Rewrite(p); !errors.Is(err, ErrTTLExpired) || p.TTL != 1 {
		t.Fatalf("dec-ttl below 1: %v, TTL %d", err, p.TTL)
	}
	p = frame()
	if err := (&Action{Type: ActSetL4Src, L4Port: 4000}).Rewrite(p); err != nil {
		t.Fatal(err)
	}
	var again packet.Parsed
	again.Decode(p.Frame())
	if again.SrcPort != 4000 || again.Drop != packet.DropNone {
		t.Fatalf("after set-l4-src: port %d, drop %v", again.SrcPort, again.Drop)
	}
	if err := (&Action{Type: ActSetICMPID, L4Port: 1}).Rewrite(p); !errors.Is(err, ErrRewriteRefused) {
		t.Fatalf("an echo id on UDP: %v", err)
	}
	if err := (&Action{Type: ActSetIPSrc, Addr: netip.MustParseAddr("fd00::1")}).Rewrite(p); !errors.Is(err, ErrRewriteRefused) {
		t.Fatalf("an IPv6 address on IPv4: %v", err)
	}
	if err := (&Action{Type: ActOutput}).Rewrite(p); !errors.Is(err, ErrRewriteRefused) || (&Action{Type: ActOutput}).Rewrites() {
		t.Fatalf("output is not a rewrite: %v", err)
	}
}
