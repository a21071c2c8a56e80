//go:build linux

package dptest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Underlay addresses of the two-host tests: a veth "ul" in each host.
var (
	underA   = netip.MustParseAddr("10.199.0.1")
	underB   = netip.MustParseAddr("10.199.0.2")
	underBad = netip.MustParseAddr("10.199.0.3") // on host B, not a peer
)

// pair is two hosts joined by an underlay veth, each with tunnels on.
type pair struct {
	a, b *host
}

func newPair(t *testing.T, fx Fixture) pair {
	p := pair{newHost(t, fx, "ta", datapath.FlowConfig{}), newHost(t, fx, "tb", datapath.FlowConfig{})}
	fx.joinUnderlay(t, p.a.env, p.b.env)
	for _, x := range []struct {
		h           *host
		local, peer netip.Addr
	}{{p.a, underA, underB}, {p.b, underB, underA}} {
		cfg := datapath.TunnelConfig{LocalIP: x.local, VXLAN: true, GRE: true, Peers: []netip.Addr{x.peer}}
		if err := x.h.dp.SetTunnels(cfg); err != nil {
			t.Fatalf("%s: SetTunnels: %v", x.h.name, err)
		}
	}
	return p
}

func encap(kind packet.Tunnel, to netip.Addr, v *vm) flow.Action {
	return flow.Action{Type: flow.ActEncap, Tunnel: kind, Underlay: to, TunnelKey: v.cfg.TunnelKey, Port: v.cfg.Index, PortID: v.cfg.PortID}
}

// testTunnels: an encap action reaches the peer host, which delivers the
// inner frame unchanged out of the port whose tunnel key was used, without
// simulating; on the wire the VNI (VXLAN) or GRE key is that key.
func testTunnels(t *testing.T, fx Fixture) {
	p := newPair(t, fx)
	vmA := p.a.addVM("a", 1, 101)
	vmB := p.b.addVM("b", 2, 202)
	vmB2 := p.b.addVM("c", 3, 303)

	for _, c := range []struct {
		kind  packet.Tunnel
		sport uint16
		to    *vm
		other *vm
	}{
		{packet.TunnelVXLAN, 8001, vmB2, vmB},
		{packet.TunnelGRE, 8002, vmB, vmB2},
	} {
		name := c.kind.String()
		cap := p.b.env.capture(t)
		dump := p.b.env.tcpdump(t, c.kind)
		p.a.miss.setScript(forward(t, p.a.dp, datapath.ClassNormal, nil, encap(c.kind, underB, c.to)))
		in := flowFrame(c.sport)
		vmA.send(in)
		p.a.miss.next(t, name)
		c.to.expect(name+": delivered by key", in)
		c.other.expectNone(name + ": other port")
		p.b.miss.none(t, name+": egress host must not simulate")

		outer := cap.tunnelPacket(t, c.kind)
		if outer.Key != c.to.cfg.TunnelKey {
			t.Errorf("%s: key on the wire %d, want the egress port's key %d", name, outer.Key, c.to.cfg.TunnelKey)
		}
		if outer.Src != underA || outer.Dst != underB {
			t.Errorf("%s: outer %s > %s, want %s > %s", name, outer.Src, outer.Dst, underA, underB)
		}
		if c.kind == packet.TunnelGRE && outer.GREProto != packet.EtherTypeTEB {
			t.Errorf("GRE protocol 0x%04x, want 0x6558", outer.GREProto)
		}
		if !bytes.Equal(outer.Inner, in) {
			t.Errorf("%s: inner frame on the wire %x, want %x", name, outer.Inner, in)
		}
		if dump != nil {
			line := dump.wait(t)
			t.Logf("tcpdump: %s", line)
			want := fmt.Sprintf("vni %d", c.to.cfg.TunnelKey)
			if c.kind == packet.TunnelGRE {
				want = fmt.Sprintf("key=0x%x", c.to.cfg.TunnelKey)
			}
			if !strings.Contains(line, want) {
				t.Errorf("tcpdump line %q does not show %q", line, want)
			}
		}

		// Later packets hit on A and take the same way.
		for i := range 5 {
			vmA.send(in)
			c.to.expect(fmt.Sprintf("%s: hit %d", name, i), in)
		}
		p.a.miss.none(t, name+": hits")
	}
	eventually(t, "tunnel stats", func() (bool, string) {
		sa, sb := p.a.dp.Stats(), p.b.dp.Stats()
		ok := sa.VXLAN.TxPackets == 6 && sa.GRE.TxPackets == 6 && sb.VXLAN.RxPackets == 6 && sb.GRE.RxPackets == 6
		return ok, fmt.Sprintf("A tx vxlan %d gre %d, B rx vxlan %d gre %d", sa.VXLAN.TxPackets, sa.GRE.TxPackets, sb.VXLAN.RxPackets, sb.GRE.RxPackets)
	})
	testHostileTunnel(t, p, vmA)
}

// testHostileTunnel: garbage, unknown keys and strangers on the tunnel
// sockets are dropped and counted by reason, and forwarding goes on.
func testHostileTunnel(t *testing.T, p pair, vmA *vm) {
	inner := flowFrame(9001)
	vx := func(flags byte, key uint32, payload []byte) []byte {
		b := make([]byte, 8, 8+len(payload))
		b[0] = flags
		binary.BigEndian.PutUint32(b[4:], key<<8)
		return append(b, payload...)
	}
	gre := func(flags uint16, proto uint16, key uint32, payload []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, flags)
		b = binary.BigEndian.AppendUint16(b, proto)
		b = binary.BigEndian.AppendUint32(b, key)
		return append(b, payload...)
	}
	good := vx(0x08, vmA.cfg.TunnelKey, inner)
	sends := []struct {
		what   string
		from   netip.Addr
		gre    bool
		data   []byte
		reason string
	}{
		{"short VXLAN", underB, false, []byte{8, 0, 0}, datapath.DropTunnelMalformed},
		{"VXLAN without I flag", underB, false, vx(0, vmA.cfg.TunnelKey, inner), datapath.DropTunnelMalformed},
		{"VXLAN with a truncated inner frame", underB, false, vx(0x08, vmA.cfg.TunnelKey, inner[:9]), datapath.DropTunnelMalformed},
		{"VXLAN with an unknown key", underB, false, vx(0x08, 4242, inner), datapath.DropTunnelUnknownKey},
		{"VXLAN from a non-peer", underBad, false, good, datapath.DropTunnelUnknownPeer},
		{"GRE version 1", underB, true, gre(0x2001, packet.EtherTypeTEB, vmA.cfg.TunnelKey, inner), datapath.DropTunnelMalformed},
		{"GRE without a key", underB, true, append([]byte{0, 0, 0x65, 0x58}, inner...), datapath.DropTunnelMalformed},
		{"GRE carrying IPv4, not Ethernet", underB, true, gre(0x2000, packet.EtherTypeIPv4, vmA.cfg.TunnelKey, inner), datapath.DropTunnelMalformed},
		{"GRE with an unknown key", underB, true, gre(0x2000, packet.EtherTypeTEB, 4242, inner), datapath.DropTunnelUnknownKey},
		{"GRE from a non-peer", underBad, true, gre(0x2000, packet.EtherTypeTEB, vmA.cfg.TunnelKey, inner), datapath.DropTunnelUnknownPeer},
	}
	want := map[string]uint64{}
	for _, s := range sends {
		p.b.env.sendRaw(t, s.from, s.gre, s.data)
		want[s.reason]++
	}
	eventually(t, "hostile tunnel input counted", func() (bool, string) {
		st := p.a.dp.Stats()
		for r, n := range want {
			if st.Drop(r) != n {
				return false, dropsString(st)
			}
		}
		return true, ""
	})
	vmA.expectNone("hostile tunnel input")
	// The endpoint still works: a well-formed packet from the peer.
	p.b.env.sendRaw(t, underB, false, good)
	vmA.expect("VXLAN after hostile input", inner)
	p.b.env.sendRaw(t, underB, true, gre(0x2000, packet.EtherTypeTEB, vmA.cfg.TunnelKey, inner))
	vmA.expect("GRE after hostile input", inner)
}

// testHostilePort: truncated and garbage frames on a port are dropped and
// counted by reason, never upcalled, and forwarding goes on.
func testHostilePort(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "hp", datapath.FlowConfig{})
	vm1, vm2 := h.addVM("1", 1, 1), h.addVM("2", 2, 2)
	h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil, output(vm2)))
	good := flowFrame(9101)
	truncated := append([]byte(nil), good[:14+10]...)
	badVersion := append([]byte(nil), good...)
	badVersion[14] = 0x75
	badLength := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(badLength[16:], 1400)
	threeTags := Pushed(Pushed(Pushed(good, 1), 2), 3)
	vm1.send(truncated, badVersion, badLength, threeTags)
	want := map[packet.Drop]uint64{packet.DropTruncated: 1, packet.DropBadIPVersion: 1, packet.DropBadIPLength: 1, packet.DropTooManyVLANs: 1}
	eventually(t, "malformed frames counted", func() (bool, string) {
		st := h.dp.Stats()
		for d, n := range want {
			if st.Drop(datapath.MalformedDrop(d)) != n {
				return false, dropsString(st)
			}
		}
		return true, ""
	})
	h.miss.none(t, "malformed frames")
	vm2.expectNone("malformed frames")
	vm1.send(good)
	h.miss.next(t, "good frame after garbage")
	vm2.expect("good frame after garbage", good)

	// A drop flow (no outputs) drops and counts its hits.
	dropped := flowFrame(9102)
	h.miss.setScript(func(u *datapath.Upcall) {
		if err := h.dp.Install(&datapath.FlowSpec{Key: u.Key, Class: datapath.ClassDrop}); err != nil {
			t.Errorf("Install: %v", err)
		}
	})
	vm1.send(dropped)
	h.miss.next(t, "drop flow")
	vm1.send(dropped, dropped)
	eventually(t, "drop flow hits counted", func() (bool, string) {
		st := h.dp.Stats()
		return st.Drop(datapath.DropFlow) == 2, dropsString(st)
	})
	vm2.expectNone("drop flow")
	h.miss.none(t, "drop flow hits")
}
