package sim

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

func TestECMPSpreadsDeterministically(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{})
	gws := map[packet.MAC]string{{2, 0, 0, 0, 0xee, 0x10}: "192.0.2.10", {2, 0, 0, 0, 0xee, 0x11}: "192.0.2.11", {2, 0, 0, 0, 0xee, 0x12}: "192.0.2.12"}
	for mac, gw := range gws {
		e.arp[arpEntry{"r0", ip(gw)}] = mac
	}
	count := map[string]int{}
	for i := range 400 {
		p := udp(macVM1, macRA, "10.0.1.11", fmt.Sprintf("100.64.%d.%d", 10+i%7, i%250))
		p.sport = uint16(20000 + i)
		frame := p.bytes()
		r := e.run("pa1", frame)
		if r.Verdict != Forward {
			t.Fatalf("flow %d: %v/%v", i, r.Verdict, r.Reason)
		}
		var dst packet.MAC
		for _, a := range r.Actions() {
			if a.Type == flow.ActSetEthDst {
				dst = a.MAC
			}
		}
		gw := gws[dst]
		count[gw]++
		// Only the chosen route is read: the group's other member and
		// the heavier route are not (a change to them reaches this flow
		// through the covering tags, ChangeTags).
		chosen, other := "route-ecmp1", "route-ecmp2"
		if gw == "192.0.2.11" {
			chosen, other = other, chosen
		}
		if !r.HasTag(ObjectTag(model.RouteKind, chosen)) || r.HasTag(ObjectTag(model.RouteKind, other)) || r.HasTag(ObjectTag(model.RouteKind, "route-ecmp3")) {
			t.Fatalf("flow %d via %s: ECMP tags wrong: %v", i, gw, r.Tags())
		}
		// Same flow, same choice.
		r = e.run("pa1", frame)
		for _, a := range r.Actions() {
			if a.Type == flow.ActSetEthDst && a.MAC != dst {
				t.Fatalf("flow %d chose %s then %s", i, dst, a.MAC)
			}
		}
	}
	if count["192.0.2.12"] != 0 {
		t.Errorf("%d flows took the weight-200 route", count["192.0.2.12"])
	}
	for _, gw := range []string{"192.0.2.10", "192.0.2.11"} {
		if count[gw] < 150 {
			t.Errorf("next hop %s got %d of 400 flows: %v", gw, count[gw], count)
		}
	}
}

// Removing one member of an ECMP group moves only its own flows.
func TestECMPRendezvousIsConsistent(t *testing.T) {
	mk := func(n int) *routeTable {
		var rs []*model.Route
		for i := range n {
			rs = append(rs, route(fmt.Sprintf("r%d", i), "r0", "0.0.0.0/0", fmt.Sprintf("192.0.2.%d", 10+i), "rU", 100))
		}
		objs := slices.DeleteFunc(baseObjects(), func(o model.Object) bool { _, ok := o.(*model.Route); return ok })
		topo, err := Build(append(objs, toObjects(rs)...))
		if err != nil {
			t.Fatal(err)
		}
		return &topo.routers[topo.routerByID["r0"]].routes
	}
	four, three := mk(4), mk(3)
	moved, kept := 0, 0
	for i := range 1000 {
		var p packet.Parsed
		q := udp(macVM1, macRA, "10.0.1.11", "8.8.8.8")
		q.sport = uint16(i)
		p.Decode(q.bytes())
		a, _ := four.lookup(&p, nil, nil)
		b, _ := three.lookup(&p, nil, nil)
		ida, idb := four.entries[a.chosen].id, three.entries[b.chosen].id
		if ida == "r3" {
			continue
		}
		if ida == idb {
			kept++
		} else {
			moved++
		}
	}
	if moved != 0 || kept < 600 {
		t.Errorf("after removing r3, %d flows of other routes moved (%d kept)", moved, kept)
	}
}

func toObjects[T model.Object](l []T) []model.Object {
	var out []model.Object
	for _, x := range l {
		out = append(out, x)
	}
	return out
}

func TestRouteLookup(t *testing.T) {
	objs := []model.Object{
		&model.Router{Meta: meta("r")},
		rport("p1", "r", "10.0.0.1", "10.0.0.0/24", macRA, ""),
		rport("p2", "r", "10.0.1.1", "10.0.1.0/24", macRB, ""),
		rport("p6", "r", "2001:db8::1", "2001:db8::/64", macRC, ""),
		route("n1", "r", "10.0.0.0/24", "", "p1", 100),
		route("n2", "r", "10.0.1.0/24", "", "p2", 100),
		route("n6", "r", "2001:db8::/64", "", "p6", 100),
		route("default", "r", "0.0.0.0/0", "10.0.0.254", "p1", 100),
		route("a8", "r", "10.0.0.0/8", "10.0.0.253", "p1", 100),
		route("a16", "r", "10.20.0.0/16", "10.0.1.254", "p2", 100),
		route("a16heavy", "r", "10.20.0.0/16", "10.0.0.254", "p1", 50),
		route("host", "r", "10.20.30.40/32", "10.0.1.254", "p2", 100),
		&model.Route{Meta: meta("srcbound"), RouterID: "r", Type: model.RouteNormal, Src: pfx("192.168.0.0/16"), Dst: pfx("10.30.0.0/16"), PortID: "p2", Weight: 100},
		route("v6default", "r", "::/0", "2001:db8::fe", "p6", 100),
		route("v6x", "r", "2001:db8:aa::/48", "2001:db8::fd", "p6", 100),
	}
	topo, err := Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	rt := &topo.routers[0].routes
	for _, c := range []struct{ src, dst, want string }{
		{"10.0.0.5", "8.8.8.8", "default"},
		{"10.0.0.5", "10.99.0.1", "a8"},
		{"10.0.0.5", "10.0.0.7", "n1"}, // the port's subnet, routed explicitly
		{"10.0.0.5", "10.0.1.7", "n2"},
		{"10.0.0.5", "10.20.1.1", "a16heavy"}, // lower weight wins among equal prefixes
		{"10.0.0.5", "10.20.30.40", "host"},
		{"10.0.0.5", "10.30.0.1", "a8"},          // source does not match: the next shorter prefix
		{"192.168.1.1", "10.30.0.1", "srcbound"}, // source matches
		{"2001:db8::5", "2001:db8:aa:1::1", "v6x"},
		{"2001:db8::5", "2001:db8::9", "n6"},
		{"2001:db8::5", "2001:db9::1", "v6default"},
	} {
		var p packet.Parsed
		p.Decode(udp(macVM1, macRA, c.src, c.dst).bytes())
		lr, ok := rt.lookup(&p, nil, nil)
		if !ok || rt.entries[lr.chosen].id != c.want {
			got := "none"
			if ok {
				got = rt.entries[lr.chosen].id
			}
			t.Errorf("%s → %s: route %s, want %s", c.src, c.dst, got, c.want)
		}
	}
}

func TestPortAndDeviceDown(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(objs []model.Object)
		reason DropReason
	}{
		{"ingress port down", func(o []model.Object) { findPort(o, "pa1").State = model.StateDown }, DropPortDown},
		{"egress port down", func(o []model.Object) { findPort(o, "pb1").State = model.StateDown }, DropPortDown},
		{"router port down", func(o []model.Object) { findPort(o, "rB").State = model.StateDown }, DropPortDown},
		{"router down", func(o []model.Object) {
			for _, x := range o {
				if r, ok := x.(*model.Router); ok && r.ID == "r0" {
					r.State = model.StateDown
				}
			}
		}, DropDeviceDown},
		{"bridge down", func(o []model.Object) {
			for _, x := range o {
				if b, ok := x.(*model.Bridge); ok && b.ID == "bridge-b" {
					b.State = model.StateDown
				}
			}
		}, DropDeviceDown},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := baseObjects()
			c.mutate(objs)
			e := newEnv(t, objs, Config{})
			e.arp[arpEntry{"r0", ip("10.0.2.11")}] = macVM4
			e.learned("bridge-b", 0, macVM4, "pb1")
			r, tr := e.trace("pa1", udp(macVM1, macRA, "10.0.1.11", "10.0.2.11").bytes())
			if r.Verdict != Drop || r.Reason != c.reason {
				t.Errorf("%v/%v, want drop/%v\n%s", r.Verdict, r.Reason, c.reason, tr)
			}
		})
	}
}

func findPort(objs []model.Object, id string) *model.Port {
	for _, o := range objs {
		if p, ok := o.(*model.Port); ok && p.ID == id {
			return p
		}
	}
	panic("no port " + id)
}

func TestMACLearningAndMove(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{})
	e.run("pa1", udp(macVM1, packet.BroadcastMAC, "10.0.1.11", "10.0.1.255").bytes())
	if p, _ := e.macs.Lookup("bridge-a", 0, macVM1); p != "pa1" || e.macs.learns != 1 {
		t.Fatalf("learned on %q after %d learns", p, e.macs.learns)
	}
	e.run("pa1", udp(macVM1, packet.BroadcastMAC, "10.0.1.11", "10.0.1.255").bytes())
	if e.macs.learns != 1 {
		t.Errorf("an unchanged entry was learned again")
	}
	r, tr := e.trace("pa4", udp(macVM1, packet.BroadcastMAC, "10.0.1.11", "10.0.1.255").bytes())
	if p, _ := e.macs.Lookup("bridge-a", 0, macVM1); p != "pa4" || e.macs.learns != 2 {
		t.Errorf("move not detected: on %q after %d learns", p, e.macs.learns)
	}
	if !strings.Contains(tr.String(), "moved from port pa1") || !r.HasTag(MACEntryTag("bridge-a", 0, macVM1)) {
		t.Errorf("move not traced or tagged:\n%s", tr)
	}
	// Unicast back to the ingress port is dropped, not hairpinned.
	e.learned("bridge-a", 0, macVM2, "pa1")
	if r := e.run("pa1", udp(macVM1, macVM2, "10.0.1.11", "10.0.1.12").bytes()); r.Reason != DropSamePort {
		t.Errorf("hairpin: %v/%v", r.Verdict, r.Reason)
	}
}

func TestChangeTags(t *testing.T) {
	topo, err := Build(baseObjects())
	if err != nil {
		t.Fatal(err)
	}
	// A new /24 inside the default route's and the /16 ECMP group's range
	// invalidates the flows that used them, not the unrelated routes.
	tags := topo.ChangeTags(route("new", "r0", "100.64.9.0/24", "192.0.2.30", "rU", 100))
	for _, want := range []string{"new", "route-default", "route-ecmp1", "route-ecmp2", "route-ecmp3"} {
		if !slices.Contains(tags, ObjectTag(model.RouteKind, want)) {
			t.Errorf("route change misses %s", want)
		}
	}
	for _, not := range []string{"route-lpm", "route-bh", "route-loop0"} {
		if slices.Contains(tags, ObjectTag(model.RouteKind, not)) {
			t.Errorf("route change invalidates unrelated %s", not)
		}
	}
	if !slices.Contains(tags, NoRouteTag("r0")) {
		t.Error("route change misses the no-route tag")
	}
	rule := &model.Rule{Meta: meta("x"), ChainID: "c", Type: model.RuleDrop}
	if tags := topo.ChangeTags(rule); !slices.Contains(tags, ObjectTag(model.ChainKind, "c")) {
		t.Error("rule change misses its chain")
	}
	if tags := topo.ChangeTags(findPort(baseObjects(), "pa1")); !slices.Contains(tags, FloodTag("bridge-a")) {
		t.Error("port change misses its bridge's flood tag")
	}
	if tags := topo.ChangeTags(findPort(baseObjects(), "rA")); !slices.Contains(tags, FloodTag("bridge-a")) || !slices.Contains(tags, ObjectTag(model.PortKind, "paR")) {
		t.Error("router port change misses its peer bridge")
	}
	if tags := topo.ChangeTags(&model.DHCPHost{Meta: meta("d"), DHCPSubnetID: "dhcp-a"}); !slices.Contains(tags, FloodTag("bridge-a")) {
		t.Error("DHCP host change misses the bridge's flood tag")
	}
	// Tags do not depend on the Topology: the same object, the same tag.
	if ObjectTag(model.PortKind, "pa1") != topo.ports.At(mustIndex(topo, "pa1")).tag {
		t.Error("port tag differs from ObjectTag")
	}
	if MACEntryTag("bridge-a", 3, macVM1) == MACEntryTag("bridge-a", 4, macVM1) || ObjectTag(model.PortKind, "x") == ObjectTag(model.RuleKind, "x") {
		t.Error("distinct objects share a tag")
	}
}

func TestBuildErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		add  model.Object
		want string
	}{
		{"port of a missing bridge", &model.Port{Meta: meta("px"), BridgeID: "nope"}, "bridge nope does not exist"},
		{"dangling peer", &model.Port{Meta: meta("px"), BridgeID: "bridge-a", PeerID: "nope"}, "peer port nope does not exist"},
		{"asymmetric peer", &model.Port{Meta: meta("px"), BridgeID: "bridge-a", PeerID: "rA"}, "not back to it"},
		{"route via another router's port", route("rx", "r1", "10.9.0.0/16", "", "rA", 100), "is not a port of router r1"},
		{"missing filter chain", &model.Port{Meta: meta("px"), BridgeID: "bridge-a", InboundFilterID: "nochain"}, "chain nochain does not exist"},
		{"duplicate port", findPort(baseObjects(), "pa1"), "appears twice"},
		{"duplicate tunnel key", &model.Port{Meta: meta("px"), BridgeID: "bridge-a", TunnelKey: 101}, "tunnel key 101"},
		{"chain listing a missing rule", &model.Chain{Meta: meta("cx"), RuleIDs: []string{"nope"}}, "rule nope does not exist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(append(baseObjects(), c.add))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestTraceReadsLikeOVNTrace(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{})
	e.arp[arpEntry{"r0", ip("10.0.2.11")}] = macVM4
	e.learned("bridge-b", 0, macVM4, "pb1")
	_, tr := e.trace("pa1", udp(macVM1, macRA, "10.0.1.11", "10.0.2.11").bytes())
	got := tr.String()
	for _, want := range []string{
		"ingress  bridge-a:pa1: ingress port bridge-a:pa1 (tap-vm1)",
		"bridge   bridge-a: dst 02:00:00:00:01:01 is router port r0:rA behind port bridge-a:paR: unicast",
		"router   r0: route 10.0.2.0/24 port r0:rB (weight 100)",
		"router   r0: next hop 10.0.2.11 is at 02:00:00:00:0b:01",
		"bridge   bridge-b: dst 02:00:00:00:0b:01 learned on port bridge-b:pb1 (vlan 0): unicast",
		"output   bridge-b:pb1: output to interface tap-vm4",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("trace lacks %q:\n%s", want, got)
		}
	}
}

func TestResultWithoutBufferGeneratesNothing(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{})
	e.res = &Result{}
	r := e.run("pa1", arpRequest(t, macVM1, "10.0.1.11", "10.0.1.1"))
	if len(r.Generated()) != 0 || r.GenFailed == 0 {
		t.Errorf("generated %d, failed %d", len(r.Generated()), r.GenFailed)
	}
	if r.Verdict == VerdictNone {
		t.Error("no verdict")
	}
}

func TestDropReasonsHaveLabels(t *testing.T) {
	seen := map[string]bool{}
	for r := DropNone; r < numDropReasons; r++ {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("reason %d has label %q (duplicate or empty)", r, s)
		}
		seen[s] = true
	}
}

func TestLoopStopsAtMaxDevices(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{})
	r, tr := e.trace("pa1", udp(macVM1, macRA, "10.0.1.11", "172.16.1.1").bytes())
	ingress := 0
	for _, s := range tr.Steps {
		if s.Kind == StepIngress {
			ingress++
		}
	}
	// One ingress per device entered, plus the one refused.
	if r.Reason != DropLoop || ingress != MaxDevices+1 {
		t.Errorf("%v after %d ingress steps, want loop after %d\n%s", r.Reason, ingress, MaxDevices+1, tr)
	}
}

// Simulators on different goroutines share one Topology (run with -race).
func TestConcurrentSimulators(t *testing.T) {
	topo, err := Build(baseObjects())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	for g := range 4 {
		go func() {
			defer func() { done <- true }()
			arp := fakeARP{{"r0", ip("10.0.2.11")}: macVM4}
			s := NewSimulator(topo, Config{HostID: "h1", MACs: newFakeMACs(), ARP: arp})
			res := NewResult()
			var p packet.Parsed
			for i := range 200 {
				q := udp(macVM1, macRA, "10.0.1.11", "10.0.2.11")
				q.sport = uint16(g*1000 + i)
				p.Decode(q.bytes())
				s.Simulate(&Input{InPortID: "pa1", Pkt: &p}, res)
				if res.Verdict != Forward {
					t.Errorf("goroutine %d: %v/%v", g, res.Verdict, res.Reason)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}

func mustIndex(t *Topology, id string) int32 {
	i, ok := t.PortIndex(id)
	if !ok {
		panic("no port " + id)
	}
	return i
}

// Pings between the same two addresses with different echo identifiers
// are different flows, and ECMP spreads them as it spreads ports.
func TestECMPSpreadsPingsByEchoID(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{})
	gws := map[packet.MAC]string{{2, 0, 0, 0, 0xee, 0x10}: "192.0.2.10", {2, 0, 0, 0, 0xee, 0x11}: "192.0.2.11"}
	for mac, gw := range gws {
		e.arp[arpEntry{"r0", ip(gw)}] = mac
	}
	count := map[string]int{}
	for id := range uint16(64) {
		r := e.run("pa1", frame(t, macVM1, macRA, "10.0.1.11", "100.64.10.1", packet.IPProtoICMPv4, 1000+id, 0, 0))
		if r.Verdict != Forward {
			t.Fatalf("echo id %d: %v/%v", 1000+id, r.Verdict, r.Reason)
		}
		for _, a := range r.Actions() {
			if a.Type == flow.ActSetEthDst {
				count[gws[a.MAC]]++
			}
		}
	}
	for _, gw := range []string{"192.0.2.10", "192.0.2.11"} {
		if count[gw] < 16 {
			t.Errorf("next hop %s got %d of 64 pings: %v", gw, count[gw], count)
		}
	}
}
