package sim

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// routedEnv is the common case: VM on bridge A → router → VM on bridge B,
// with MAC and ARP entries learned, as after the first few packets.
func routedEnv(tb testing.TB) (*env, *Input) {
	e := newEnv(tb, baseObjects(), Config{})
	e.arp[arpEntry{"r0", ip("10.0.2.11")}] = macVM4
	e.learned("bridge-b", 0, macVM4, "pb1")
	e.learned("bridge-a", 0, macVM1, "pa1")
	var p packet.Parsed
	p.Decode(udp(macVM1, macRA, "10.0.1.11", "10.0.2.11").bytes())
	in, _ := e.topo.PortIndex("pa1")
	return e, &Input{InPort: in, Pkt: &p}
}

func sameBridgeEnv(tb testing.TB) (*env, *Input) {
	e := newEnv(tb, baseObjects(), Config{})
	e.learned("bridge-a", 0, macVM1, "pa1")
	e.learned("bridge-a", 0, macVM2, "pa2")
	var p packet.Parsed
	p.Decode(udp(macVM1, macVM2, "10.0.1.11", "10.0.1.12").bytes())
	in, _ := e.topo.PortIndex("pa1")
	return e, &Input{InPort: in, Pkt: &p}
}

func TestSimulateAllocatesNothing(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) (*env, *Input){"routed": routedEnv, "same-bridge": sameBridgeEnv} {
		e, in := mk(t)
		e.sim.Simulate(in, e.res)
		if e.res.Verdict != Forward {
			t.Fatalf("%s: verdict %v/%v", name, e.res.Verdict, e.res.Reason)
		}
		if n := testing.AllocsPerRun(1000, func() { e.sim.Simulate(in, e.res) }); n != 0 {
			t.Errorf("%s: %v allocations per walk, want 0", name, n)
		}
	}
	// The slow paths that answer locally must not allocate either: they
	// run once per ARP request and per ICMP error, at line rate under
	// attack.
	for name, c := range map[string]struct {
		in    string
		frame []byte
	}{
		"arp-suppression": {"pa1", arpRequest(t, macVM1, "10.0.1.11", "10.0.1.1")},
		"flood":           {"pa1", udp(macVM1, packet.BroadcastMAC, "10.0.1.11", "10.0.1.255").bytes()},
		"ttl-expired":     {"pa1", func() []byte { p := udp(macVM1, macRA, "10.0.1.11", "10.0.2.11"); p.ttl = 1; return p.bytes() }()},
		"need-arp":        {"pa1", udp(macVM1, macRA, "10.0.1.11", "10.0.2.99").bytes()},
	} {
		e := newEnv(t, baseObjects(), Config{})
		var p packet.Parsed
		p.Decode(c.frame)
		in, _ := e.topo.PortIndex(c.in)
		input := &Input{InPort: in, Pkt: &p}
		e.sim.Simulate(input, e.res)
		if n := testing.AllocsPerRun(1000, func() { e.sim.Simulate(input, e.res) }); n != 0 {
			t.Errorf("%s: %v allocations per walk, want 0", name, n)
		}
	}
}

func BenchmarkSimulateBridgeRouterBridge(b *testing.B) {
	e, in := routedEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		e.sim.Simulate(in, e.res)
	}
	if e.res.Verdict != Forward {
		b.Fatalf("verdict %v/%v", e.res.Verdict, e.res.Reason)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "walks/s")
}

func BenchmarkSimulateSameBridge(b *testing.B) {
	e, in := sameBridgeEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		e.sim.Simulate(in, e.res)
	}
	if e.res.Verdict != Forward {
		b.Fatalf("verdict %v/%v", e.res.Verdict, e.res.Reason)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "walks/s")
}

// bigTopology is a cloud-sized snapshot: 10,000 ports on 500 bridges (19
// VMs and one router link each), 50 routers with 10 tenant subnets and a
// default route each, one security-group chain per bridge, 100 hosts.
func bigTopology() []model.Object {
	var objs []model.Object
	objs = append(objs, &model.TunnelZone{Meta: meta("tz"), Type: model.TunnelVXLAN})
	for h := range 100 {
		id := fmt.Sprintf("host-%d", h)
		objs = append(objs, &model.Host{Meta: meta(id)},
			&model.TunnelZoneMember{Meta: meta("tzm-" + id), TunnelZoneID: "tz", HostID: id, Address: netip.AddrFrom4([4]byte{10, 99, byte(h >> 8), byte(h)})})
	}
	key := uint32(1)
	for r := range 50 {
		rid := fmt.Sprintf("router-%d", r)
		objs = append(objs, &model.Router{Meta: meta(rid), State: model.StateUp})
		up := fmt.Sprintf("%s-up", rid)
		objs = append(objs, &model.Port{Meta: meta(up), RouterID: rid, State: model.StateUp, MAC: packet.MAC{2, 1, 0, 0, byte(r), 0xff},
			Address: netip.AddrFrom4([4]byte{192, 0, byte(r), 1}), Network: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, byte(r), 0}), 24),
			HostID: "host-0", InterfaceName: "up" + fmt.Sprint(r), TunnelKey: key})
		key++
		objs = append(objs, route(rid+"-default", rid, "0.0.0.0/0", fmt.Sprintf("192.0.%d.254", r), up, 100))
		for s := range 10 {
			bid := fmt.Sprintf("bridge-%d-%d", r, s)
			cid := "sg-" + bid
			objs = append(objs, &model.Bridge{Meta: meta(bid), State: model.StateUp},
				&model.Chain{Meta: meta(cid), RuleIDs: []string{cid + "-r1", cid + "-r2"}},
				&model.Rule{Meta: meta(cid + "-r1"), ChainID: cid, Type: model.RuleAccept, Condition: model.Condition{Proto: 6, DstPort: model.PortRange{Start: 22, End: 22}}},
				&model.Rule{Meta: meta(cid + "-r2"), ChainID: cid, Type: model.RuleDrop})
			rp, bp := fmt.Sprintf("%s-rp", bid), fmt.Sprintf("%s-bp", bid)
			objs = append(objs,
				&model.Port{Meta: meta(rp), RouterID: rid, State: model.StateUp, MAC: packet.MAC{2, 1, 0, byte(r), byte(s), 1},
					Address: netip.AddrFrom4([4]byte{10, byte(r), byte(s), 1}), Network: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r), byte(s), 0}), 24),
					PeerID: bp, TunnelKey: key},
				&model.Port{Meta: meta(bp), BridgeID: bid, State: model.StateUp, PeerID: rp, TunnelKey: key + 1})
			key += 2
			for v := range 19 {
				objs = append(objs, &model.Port{Meta: meta(fmt.Sprintf("%s-vm%d", bid, v)), BridgeID: bid, State: model.StateUp,
					HostID: fmt.Sprintf("host-%d", (r*10+s+v)%100), InterfaceName: fmt.Sprintf("tap%d", v), TunnelKey: key, InboundFilterID: cid})
				key++
			}
		}
	}
	return objs
}

func TestBigTopologyBuilds(t *testing.T) {
	objs := bigTopology()
	topo, err := Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	if n := topo.NumPorts(); n < 10000 {
		t.Fatalf("%d ports, want at least 10000", n)
	}
}

func BenchmarkBuild10kPorts(b *testing.B) {
	objs := bigTopology()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(objs); err != nil {
			b.Fatal(err)
		}
	}
}
