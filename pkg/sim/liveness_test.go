package sim

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// liveSet is a Liveness over a set of dead uplinks.
type liveSet map[string]bool // port id → dead

func (l liveSet) PortLive(id string) bool { return !l[id] }

// uplinkObjects adds to the base topology three gateways, each with an
// uplink of r0 that has a route to 100.96.0.0/16 (learned from its BGP
// peer, say), and a less specific fallback through the old uplink rU.
func uplinkObjects() []model.Object {
	objs := baseObjects()
	for i := 1; i <= 3; i++ {
		gw, port := fmt.Sprintf("g%d", i), fmt.Sprintf("u%d", i)
		u := rport(port, "r0", fmt.Sprintf("10.10.%d.2", i), fmt.Sprintf("10.10.%d.0/24", i), packet.MAC{2, 0, 0, 0, 0x10, byte(i)}, "")
		u.HostID, u.InterfaceName, u.TunnelKey = gw, "eth1", uint32(1000+i)
		objs = append(objs, &model.Host{Meta: meta(gw), Name: gw},
			&model.TunnelZoneMember{Meta: meta("tzm-" + gw), TunnelZoneID: "tz", HostID: gw, Address: ip(fmt.Sprintf("10.99.0.%d", 10+i))},
			u, route("learned-"+port, "r0", "100.96.0.0/16", fmt.Sprintf("10.10.%d.1", i), port, 100))
	}
	return append(objs, route("fallback", "r0", "100.0.0.0/8", "192.0.2.254", "rU", 100))
}

// uplinkOf says which uplink a forwarded flow left by: its tunnel key.
func uplinkOf(t *testing.T, r *Result) string {
	t.Helper()
	if r.Verdict != Forward {
		t.Fatalf("%v/%v", r.Verdict, r.Reason)
	}
	for _, a := range r.Actions() {
		switch {
		case a.Type == flow.ActEncap && a.TunnelKey > 1000 && a.TunnelKey < 1004:
			return fmt.Sprintf("u%d", a.TunnelKey-1000)
		case a.Type == flow.ActEncap, a.Type == flow.ActOutput:
			return "rU"
		}
	}
	t.Fatalf("no output: %v", r.Actions())
	return ""
}

func TestUplinkLiveness(t *testing.T) {
	dead := liveSet{}
	e := newEnv(t, uplinkObjects(), Config{Liveness: dead})
	for i := 1; i <= 3; i++ {
		e.arp[arpEntry{"r0", ip(fmt.Sprintf("10.10.%d.1", i))}] = packet.MAC{2, 0, 0, 0, 0xee, byte(i)}
	}
	e.arp[arpEntry{"r0", ip("192.0.2.254")}] = macGW
	const flows = 600
	frame := func(i int) []byte {
		p := udp(macVM1, macRA, "10.0.1.11", fmt.Sprintf("100.96.%d.%d", i%13, 1+i%200))
		p.sport = uint16(10000 + i)
		return p.bytes()
	}
	allLive := make([]string, flows)
	count := map[string]int{}
	for i := range flows {
		r := e.run("pa1", frame(i))
		allLive[i] = uplinkOf(t, r)
		count[allLive[i]]++
		// A flow reads its own uplink's liveness and no other's: the
		// others' deaths do not concern it.
		for _, u := range []string{"u1", "u2", "u3"} {
			if r.HasTag(PortLiveTag(u)) != (u == allLive[i]) {
				t.Fatalf("flow %d via %s: liveness tag of %s is %v", i, allLive[i], u, r.HasTag(PortLiveTag(u)))
			}
		}
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		if count[u] < flows/5 {
			t.Errorf("uplink %s got %d of %d flows: %v", u, count[u], flows, count)
		}
	}

	// u2 dies: its flows spread over u1 and u3, nobody else's move, and
	// exactly the flows that would return to u2 read its liveness.
	dead["u2"] = true
	for i := range flows {
		r := e.run("pa1", frame(i))
		got := uplinkOf(t, r)
		switch {
		case got == "u2":
			t.Fatalf("flow %d still uses the dead uplink", i)
		case allLive[i] != "u2" && got != allLive[i]:
			t.Fatalf("flow %d moved from %s to %s although its uplink lives", i, allLive[i], got)
		}
		if r.HasTag(PortLiveTag("u2")) != (allLive[i] == "u2") {
			t.Fatalf("flow %d (first via %s): reads u2's liveness: %v", i, allLive[i], r.HasTag(PortLiveTag("u2")))
		}
	}

	// Every uplink of the /16 dies: the /8 through rU takes over, and
	// the flow reads every dead uplink (any coming back wins it again).
	dead["u1"], dead["u3"] = true, true
	r, tr := e.trace("pa1", frame(1))
	if got := uplinkOf(t, r); got != "rU" {
		t.Fatalf("all uplinks dead: flow left by %s", got)
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		if !r.HasTag(PortLiveTag(u)) {
			t.Errorf("fallback flow does not read %s's liveness", u)
		}
	}
	if !strings.Contains(tr.String(), "3 routes through uplinks that are down skipped") {
		t.Errorf("trace does not say why the /16 was not used:\n%s", tr)
	}
	// rU is an uplink too (exterior): when it dies as well, no route
	// through a live uplink is left, and the walk fails open: every
	// flow takes the uplink it had with all of them alive, reading every
	// dead uplink's liveness.
	dead["rU"] = true
	for i := range flows {
		r := e.run("pa1", frame(i))
		if got := uplinkOf(t, r); got != allLive[i] {
			t.Fatalf("every uplink dead: flow %d left by %s, %s when all lived", i, got, allLive[i])
		}
		for _, u := range []string{"u1", "u2", "u3", "rU"} {
			if !r.HasTag(PortLiveTag(u)) {
				t.Fatalf("every uplink dead: flow %d does not read %s's liveness", i, u)
			}
		}
	}
	if _, tr := e.trace("pa1", frame(1)); !strings.Contains(tr.String(), "every usable route is through an uplink that is down (5): used as if up") {
		t.Errorf("trace does not say the walk failed open:\n%s", tr)
	}

	// Back to life: everyone returns to the choice they had.
	clear(dead)
	for i := range flows {
		if got := uplinkOf(t, e.run("pa1", frame(i))); got != allLive[i] {
			t.Fatalf("flow %d: %s after recovery, %s before", i, got, allLive[i])
		}
	}
}

// Interior router ports are never gated: liveness is about uplinks.
func TestLivenessIgnoresInteriorPorts(t *testing.T) {
	e := newEnv(t, baseObjects(), Config{Liveness: liveSet{"rB": true, "rL": true}})
	e.learned("bridge-b", 0, macVM4, "pb1")
	e.arp[arpEntry{"r0", ip("10.0.2.14")}] = macVM4
	r := e.run("pa1", udp(macVM1, macRA, "10.0.1.11", "10.0.2.14").bytes())
	if r.Verdict != Forward {
		t.Fatalf("routed to an interior port: %v/%v", r.Verdict, r.Reason)
	}
	if r.HasTag(PortLiveTag("rB")) {
		t.Error("a walk through an interior port reads liveness")
	}
}

func BenchmarkSimulateECMPUplinks(b *testing.B) {
	e := newEnv(b, uplinkObjects(), Config{Liveness: liveSet{"u2": true}})
	for i := 1; i <= 3; i++ {
		e.arp[arpEntry{"r0", ip(fmt.Sprintf("10.10.%d.1", i))}] = packet.MAC{2, 0, 0, 0, 0xee, byte(i)}
	}
	var p packet.Parsed
	p.Decode(udp(macVM1, macRA, "10.0.1.11", "100.96.1.1").bytes())
	in := &Input{InPortID: "pa1", Pkt: &p, Now: 1}
	b.ReportAllocs()
	for b.Loop() {
		e.sim.Simulate(in, e.res)
	}
	if e.res.Verdict != Forward {
		b.Fatalf("%v/%v", e.res.Verdict, e.res.Reason)
	}
}
