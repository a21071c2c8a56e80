package sim

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// checkInvariants holds for every walk, whatever went in.
func checkInvariants(t *testing.T, r *Result) {
	t.Helper()
	switch r.Verdict {
	case Forward:
		outs := 0
		for _, a := range r.Actions() {
			if a.Type == flow.ActOutput || a.Type == flow.ActEncap {
				outs++
			}
		}
		if outs == 0 {
			t.Fatalf("forward without an output: %s", acts(r.Actions()))
		}
	case Drop:
		if r.Reason == DropNone {
			t.Fatal("drop without a reason")
		}
		if len(r.Actions()) != 0 {
			t.Fatalf("drop with actions: %s", acts(r.Actions()))
		}
	case Consumed, NeedARP:
		if len(r.Actions()) != 0 {
			t.Fatalf("%v with flow actions: %s", r.Verdict, acts(r.Actions()))
		}
	default:
		t.Fatalf("no verdict")
	}
	for _, g := range r.Generated() {
		var p packet.Parsed
		p.Decode(append([]byte(nil), r.Frame(g)...))
		if p.Drop != packet.DropNone {
			t.Fatalf("generated %v does not decode: %v", g.Reason, p.Drop)
		}
	}
	if len(r.Tags()) == 0 && r.Reason != DropUnknownPort {
		t.Fatal("a walk read no object")
	}
}

func seedFrames(t testing.TB) [][]byte {
	icmp := udp(macVM1, macRA, "10.0.1.11", "10.0.1.1")
	icmp.proto = packet.IPProtoICMPv4
	ttl := udp(macVM1, macRA, "10.0.1.11", "10.0.2.11")
	ttl.ttl = 1
	tagged := udp(macVM3, macV10, "10.0.10.3", "10.0.10.6")
	tagged.vlan = 10
	ns := make([]byte, 128)
	n, _ := packet.BuildNeighborSolicit(ns, macVM6, ip("2001:db8:c::6"), ip("2001:db8:c::1"))
	var nsp packet.Parsed
	nsp.Decode(ns[:n])
	na := make([]byte, 128)
	nn, _ := packet.BuildNeighborAdvert(na, &nsp, macVM1, false)
	return [][]byte{
		udp(macVM1, macVM3, "10.0.1.11", "10.0.1.13").bytes(),
		udp(macVM1, packet.BroadcastMAC, "10.0.1.11", "10.0.1.255").bytes(),
		udp(macVM1, macRA, "10.0.1.11", "10.0.2.11").bytes(),
		udp(macVM1, macRA, "10.0.1.11", "172.16.1.1").bytes(),
		udp(macVM6, macRC, "2001:db8:c::6", "2001:db8:f::1").bytes(),
		icmp.bytes(), ttl.bytes(), tagged.bytes(), ns[:n],
		arpRequest(t, macVM1, "10.0.1.11", "10.0.1.1"),
		arpRequest(t, macGW, "192.0.2.254", "192.0.2.1"),
		na[:nn], forgedSHA(t, macVM1, macVM3, "10.0.1.11", "10.0.1.1"),
	}
}

func FuzzSimulate(f *testing.F) {
	for i, fr := range seedFrames(f) {
		f.Add(uint8(i), fr)
	}
	e := newEnv(f, baseObjects(), Config{})
	e.arp[arpEntry{"r0", ip("10.0.2.11")}] = macVM4
	e.learned("bridge-b", 0, macVM4, "pb1")
	var p packet.Parsed
	f.Fuzz(func(t *testing.T, port uint8, frame []byte) {
		p.Decode(frame)
		// Some frames enter at every port, including interior ones and
		// one past the end.
		in := int32(port) % int32(e.topo.NumPorts()+1)
		e.sim.Simulate(&Input{InPort: in, Pkt: &p, Trace: &Tracer{}}, e.res)
		checkInvariants(t, e.res)
	})
}

// fuzzReader hands out bytes of the fuzz input as small choices, zero once
// exhausted, so every input is some topology.
type fuzzReader struct {
	b []byte
	i int
}

func (r *fuzzReader) n(max int) int {
	if r.i >= len(r.b) || max <= 0 {
		return 0
	}
	v := int(r.b[r.i]) % max
	r.i++
	return v
}

func (r *fuzzReader) bit() bool { return r.n(2) == 1 }

// randomTopology builds up to 3 bridges and 3 routers with up to 12 ports,
// links, bindings on two hosts, routes and a chain, from fuzz bytes. Some
// of what it builds is invalid on purpose: Build must reject it cleanly.
func randomTopology(data []byte) []model.Object {
	r := &fuzzReader{b: data}
	objs := []model.Object{
		&model.Host{Meta: meta("h1")}, &model.Host{Meta: meta("h2")},
		&model.TunnelZone{Meta: meta("tz"), Type: model.TunnelVXLAN},
		&model.TunnelZoneMember{Meta: meta("m1"), TunnelZoneID: "tz", HostID: "h1", Address: ip("10.99.0.1")},
		&model.TunnelZoneMember{Meta: meta("m2"), TunnelZoneID: "tz", HostID: "h2", Address: ip("10.99.0.2")},
		&model.Chain{Meta: meta("c"), RuleIDs: []string{"r0", "r1"}},
		&model.Rule{Meta: meta("r0"), ChainID: "c", Type: []model.RuleType{model.RuleAccept, model.RuleDrop, model.RuleReject, model.RuleContinue}[r.n(4)],
			Condition: model.Condition{Proto: uint8(r.n(3) * 6), InvProto: r.bit(), Dst: pfx(fmt.Sprintf("10.%d.0.0/16", r.n(3))), InvDst: r.bit()}},
		&model.Rule{Meta: meta("r1"), ChainID: "c", Type: model.RuleReturn},
	}
	nb, nr := 1+r.n(3), 1+r.n(3)
	for i := range nb {
		objs = append(objs, &model.Bridge{Meta: meta(fmt.Sprintf("b%d", i)), State: model.StateUp})
	}
	for i := range nr {
		objs = append(objs, &model.Router{Meta: meta(fmt.Sprintf("r%d", i)), State: model.StateUp})
	}
	np := 2 + r.n(11)
	ports := make([]*model.Port, np)
	for i := range np {
		p := &model.Port{Meta: meta(fmt.Sprintf("p%d", i)), State: model.StateUp, TunnelKey: uint32(i + 1)}
		if r.n(3) == 0 {
			p.RouterID = fmt.Sprintf("r%d", r.n(nr))
			p.MAC = packet.MAC{2, 0, 0, 0, 1, byte(i)}
			if r.n(4) != 0 {
				net := byte(r.n(4))
				if r.n(5) == 0 {
					p.Address = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, net, 15: byte(1 + i)})
					p.Network = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, net}), 64)
				} else {
					p.Address = netip.AddrFrom4([4]byte{10, net, 0, byte(1 + i)})
					p.Network = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, net, 0, 0}), 24)
				}
			}
		} else {
			p.BridgeID = fmt.Sprintf("b%d", r.n(nb))
			if r.n(4) == 0 {
				p.VLAN = uint16(r.n(3))
			}
		}
		if r.n(6) == 0 {
			p.State = model.StateDown
		}
		if r.n(5) == 0 {
			p.InboundFilterID = "c"
		}
		ports[i] = p
	}
	for i := range np {
		p := ports[i]
		switch r.n(3) {
		case 0:
			p.HostID, p.InterfaceName = []string{"h1", "h2"}[r.n(2)], fmt.Sprintf("if%d", i)
		case 1:
			if j := r.n(np); j != i && ports[j].PeerID == "" && p.PeerID == "" && ports[j].HostID == "" {
				p.PeerID, ports[j].PeerID = ports[j].ID, p.ID
			}
		}
		objs = append(objs, p)
	}
	for i := range r.n(6) {
		rt := fmt.Sprintf("r%d", r.n(nr))
		pi := r.n(np)
		typ := []model.RouteType{model.RouteNormal, model.RouteNormal, model.RouteBlackhole, model.RouteReject}[r.n(4)]
		dst := pfx(fmt.Sprintf("10.%d.0.0/%d", r.n(4), []int{0, 8, 16, 24, 32}[r.n(5)]))
		if r.n(5) == 0 {
			dst = pfx("::/0")
		}
		objs = append(objs, &model.Route{Meta: meta(fmt.Sprintf("rt%d", i)), RouterID: rt, Type: typ, Dst: dst.Masked(),
			Gateway: map[bool]netip.Addr{true: ip("10.1.0.254"), false: {}}[r.bit() && dst.Addr().Is4()], PortID: ports[pi].ID, Weight: uint32(r.n(3))})
	}
	// The anti-spoofing conditions are chosen last, so that older corpus
	// entries still build the topologies they did.
	r0 := objs[6].(*model.Rule)
	switch r.n(3) {
	case 1:
		r0.ARPSHA, r0.InvARPSHA = mm(macVM1), r.bit()
	case 2:
		r0.NDTarget, r0.InvNDTarget = pfx("2001:db8:c::/64"), r.bit()
	}
	return objs
}

func FuzzTopology(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 5, 0, 0, 1, 0, 0, 1, 2, 3, 0, 0, 0, 1, 1, 2, 0, 1, 1, 0, 3, 3, 0, 1, 0, 2, 4, 1})
	f.Add([]byte("a longer seed that makes several bridges, routers, ports and links"))
	var p packet.Parsed
	frames := seedFrames(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Build(randomTopology(data))
		if err != nil {
			return // invalid snapshots are rejected, which is fine; panics are not
		}
		macs := newFakeMACs()
		s := NewSimulator(topo, Config{HostID: "h1", MACs: macs, ARP: fakeARP{}})
		res := NewResult()
		for pi := range int32(topo.NumPorts()) {
			for i, fr := range frames {
				if (int(pi)+i)%3 != 0 {
					continue
				}
				p.Decode(fr)
				s.Simulate(&Input{InPort: pi, Pkt: &p, Trace: &Tracer{}}, res)
				checkInvariants(t, res)
			}
		}
	})
}
