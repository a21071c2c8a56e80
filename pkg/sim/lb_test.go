package sim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The load-balancer fixture: the NAT tests' edge router with a load
// balancer. Clients on the Internet (behind gw, on the uplink) reach:
//
//	vip-web  198.51.100.10:80  tcp  pool-web: m5 10.0.0.5:8080, m6 10.0.0.6:8080, m7 10.0.0.7:8080
//	vip-dns  198.51.100.11:53  udp  pool-dns: d5 10.0.0.5:5353
//	vip-st   198.51.100.12:80  tcp  pool-web, source-IP persistence
//
// m7 is a third VM on lan (port p7).
var macM7 = packet.MAC{2, 0, 0, 0, 0x0d, 0x07}

type lbOpt func(objs []model.Object) []model.Object

func lbObjects(opts ...lbOpt) []model.Object {
	return withLB(edgeObjects(), opts...)
}

// withLB adds the load balancer to the edge router of objs.
func withLB(objs []model.Object, opts ...lbOpt) []model.Object {
	for _, o := range objs {
		if r, ok := o.(*model.Router); ok && r.ID == "edge" {
			r.LoadBalancerID = "lb"
		}
	}
	member := func(id, pool, addr string, port, weight uint16) *model.PoolMember {
		return &model.PoolMember{Meta: meta(id), PoolID: pool, Address: ip(addr), ProtocolPort: port, Weight: weight, State: model.StateUp}
	}
	objs = append(objs,
		vmPort("p7", "lan", "h1", "tap-m7", 13),
		&model.LoadBalancer{Meta: meta("lb"), Name: "lb", State: model.StateUp},
		&model.HealthMonitor{Meta: meta("hm"), Type: "tcp", State: model.StateUp},
		&model.Pool{Meta: meta("pool-web"), LoadBalancerID: "lb", Protocol: "tcp", Method: "weighted", HealthMonitorID: "hm", State: model.StateUp},
		&model.Pool{Meta: meta("pool-dns"), LoadBalancerID: "lb", Protocol: "udp", Method: "weighted", State: model.StateUp},
		member("m5", "pool-web", "10.0.0.5", 8080, 1),
		member("m6", "pool-web", "10.0.0.6", 8080, 1),
		member("m7", "pool-web", "10.0.0.7", 8080, 1),
		member("d5", "pool-dns", "10.0.0.5", 5353, 1),
		&model.VIP{Meta: meta("vip-web"), LoadBalancerID: "lb", PoolID: "pool-web", Address: ip("198.51.100.10"), ProtocolPort: 80},
		&model.VIP{Meta: meta("vip-dns"), LoadBalancerID: "lb", PoolID: "pool-dns", Address: ip("198.51.100.11"), ProtocolPort: 53},
		&model.VIP{Meta: meta("vip-st"), LoadBalancerID: "lb", PoolID: "pool-web", Address: ip("198.51.100.12"), ProtocolPort: 80, SessionPersistence: "source_ip"},
	)
	for _, o := range opts {
		objs = o(objs)
	}
	return objs
}

// modify changes the object with id in place.
func modify[T model.Object](id string, f func(T)) lbOpt {
	return func(objs []model.Object) []model.Object {
		for _, o := range objs {
			if x, ok := o.(T); ok && o.GetMeta().ID == id {
				f(x)
			}
		}
		return objs
	}
}

func memberState(id string, s model.State) lbOpt {
	return modify(id, func(m *model.PoolMember) { m.State = s })
}

func memberStatus(id, s string) lbOpt {
	return modify(id, func(m *model.PoolMember) { m.Status = s })
}

// lbEnv is the fixture over table tb (shared across rebuilds, as the
// agent's table outlives its topologies).
func lbEnv(t *testing.T, tb *flowstate.Table, objs []model.Object) *nenv {
	e := newEnv(t, objs, Config{FlowState: tb})
	e.arp[arpEntry{"edge", ip("198.51.100.1")}] = macGWUp
	e.arp[arpEntry{"edge", ip("10.0.0.5")}] = macWeb
	e.arp[arpEntry{"edge", ip("10.0.0.6")}] = macCli
	e.arp[arpEntry{"edge", ip("10.0.0.7")}] = macM7
	e.learned("lan", 0, macWeb, "pw")
	e.learned("lan", 0, macCli, "pc")
	e.learned("lan", 0, macM7, "p7")
	return &nenv{e, tb, t}
}

// memberOf says which member a balanced packet went to, by its output.
func memberOf(r *Result) string {
	for _, a := range r.Actions() {
		if a.Type == flow.ActOutput {
			switch a.PortID {
			case "pw":
				return "10.0.0.5"
			case "pc":
				return "10.0.0.6"
			case "p7":
				return "10.0.0.7"
			}
			return a.PortID
		}
	}
	return "none"
}

func clientSyn(t testing.TB, src string, sport uint16, vip string, dport uint16) []byte {
	return frame(t, macGWUp, macUp, src, vip, tcpP, sport, dport, syn)
}

func TestLBConnection(t *testing.T) {
	tb := flowstate.New(flowstate.Config{})
	n := lbEnv(t, tb, lbObjects())
	in := clientSyn(t, "203.0.113.9", 40000, "198.51.100.10", 80)
	r, tr := n.trace("rU", in)
	checkInvariants(t, r)
	if r.Verdict != Forward {
		t.Fatalf("verdict %v/%v\n%s", r.Verdict, r.Reason, tr)
	}
	m := memberOf(r)
	acts := nact(r.Actions())
	if !strings.HasPrefix(acts, "set-ip-dst "+m+"; set-l4-dst 8080; ") {
		t.Errorf("actions %s do not translate to the member %s:8080", acts, m)
	}
	if es := r.StateEntries(); len(es) != 1 || es[0].Fwd.Type != flowstate.KeyFwdDNAT || es[0].Fwd.Zone != ObjectTag(model.RouterKind, "edge") {
		t.Fatalf("state created: %v", es)
	}
	for _, tag := range []struct {
		kind *model.Kind
		id   string
	}{{model.LoadBalancerKind, "lb"}, {model.VIPKind, "vip-web"}, {model.PoolKind, "pool-web"}} {
		if !r.HasTag(ObjectTag(tag.kind, tag.id)) {
			t.Errorf("balanced flow lacks the tag of %s %s", tag.kind.Name, tag.id)
		}
	}
	memberID := map[string]string{"10.0.0.5": "m5", "10.0.0.6": "m6", "10.0.0.7": "m7"}[m]
	if !r.HasTag(ObjectTag(model.PoolMemberKind, memberID)) {
		t.Errorf("balanced flow lacks its member %s's tag", memberID)
	}
	if s := tr.String(); !strings.Contains(s, "lb ") || !strings.Contains(s, "new connection: member "+memberID) {
		t.Errorf("trace does not say which member was chosen:\n%s", s)
	}
	out := applyActs(t, in, r.Actions())
	checksumsOK(t, out)

	// The member's reply leaves as the VIP.
	macOf := map[string]packet.MAC{"10.0.0.5": macWeb, "10.0.0.6": macCli, "10.0.0.7": macM7}
	portOf := map[string]string{"10.0.0.5": "pw", "10.0.0.6": "pc", "10.0.0.7": "p7"}
	reply := frame(t, macOf[m], macIn, m, "203.0.113.9", tcpP, 8080, 40000, syn|ack)
	r, tr = n.trace(portOf[m], reply)
	checkInvariants(t, r)
	n.expect(r, Forward, DropNone, toUplink("set-ip-src 198.51.100.10; set-l4-src 80; "))
	if !strings.Contains(tr.String(), "reply from a member") {
		t.Errorf("trace of the reply:\n%s", tr)
	}
	checksumsOK(t, applyActs(t, reply, r.Actions()))

	// The connection's next packets keep the member, even once it is
	// down, disabled or removed: existing connections are never moved.
	next := frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.10", tcpP, 40000, 80, ack)
	for _, c := range []struct {
		name string
		opts []lbOpt
	}{
		{"unchanged", nil},
		{"member health down", []lbOpt{memberStatus(memberID, model.MemberDown)}},
		{"member disabled", []lbOpt{memberState(memberID, model.StateDown)}},
		{"member removed", []lbOpt{func(objs []model.Object) []model.Object {
			return slices.DeleteFunc(objs, func(o model.Object) bool { return o.GetMeta().ID == memberID })
		}}},
	} {
		n := lbEnv(t, tb, lbObjects(c.opts...))
		r, tr := n.trace("rU", next)
		checkInvariants(t, r)
		if r.Verdict != Forward || memberOf(r) != m || len(r.StateEntries()) != 0 {
			t.Errorf("%s: next packet went to %s (%v), want %s on the existing binding\n%s", c.name, memberOf(r), r.Verdict, m, tr)
		}
		if !strings.Contains(tr.String(), "existing connection") {
			t.Errorf("%s: trace does not say the binding was kept:\n%s", c.name, tr)
		}
	}
}

// TestLBMemberChoice: which members new connections may go to.
func TestLBMemberChoice(t *testing.T) {
	for _, c := range []struct {
		name   string
		opts   []lbOpt
		vip    string
		proto  uint8
		port   uint16
		want   []string // the members new connections may reach; nil: none (dropped)
		reason DropReason
		gen    GenReason
	}{
		{"all usable", nil, "198.51.100.10", tcpP, 80, []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, DropNone, 0},
		{"one disabled", []lbOpt{memberState("m6", model.StateDown)}, "198.51.100.10", tcpP, 80, []string{"10.0.0.5", "10.0.0.7"}, DropNone, 0},
		{"one health down", []lbOpt{memberStatus("m5", model.MemberDown)}, "198.51.100.10", tcpP, 80, []string{"10.0.0.6", "10.0.0.7"}, DropNone, 0},
		{"statuses up and no_monitor count", []lbOpt{memberStatus("m5", model.MemberUp), memberStatus("m6", model.MemberNoMonitor)},
			"198.51.100.10", tcpP, 80, []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, DropNone, 0},
		{"weight 0 takes no new connections", []lbOpt{modify("m7", func(m *model.PoolMember) { m.Weight = 0 })},
			"198.51.100.10", tcpP, 80, []string{"10.0.0.5", "10.0.0.6"}, DropNone, 0},
		{"status ignored without a monitor", []lbOpt{memberStatus("m5", model.MemberDown), memberStatus("m6", model.MemberDown),
			modify("pool-web", func(p *model.Pool) { p.HealthMonitorID = "" })},
			"198.51.100.10", tcpP, 80, []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, DropNone, 0},
		{"status ignored with the monitor down", []lbOpt{memberStatus("m5", model.MemberDown),
			modify("hm", func(h *model.HealthMonitor) { h.State = model.StateDown })},
			"198.51.100.10", tcpP, 80, []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, DropNone, 0},
		{"all down: reset", []lbOpt{memberStatus("m5", model.MemberDown), memberState("m6", model.StateDown), memberStatus("m7", model.MemberDown)},
			"198.51.100.10", tcpP, 80, nil, DropNoLBMember, GenTCPReset},
		{"pool down: reset", []lbOpt{modify("pool-web", func(p *model.Pool) { p.State = model.StateDown })},
			"198.51.100.10", tcpP, 80, nil, DropNoLBMember, GenTCPReset},
		{"udp pool", nil, "198.51.100.11", udpP, 53, []string{"10.0.0.5"}, DropNone, 0},
		{"udp, member down: port unreachable", []lbOpt{memberState("d5", model.StateDown)}, "198.51.100.11", udpP, 53, nil, DropNoLBMember, GenICMPError},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := lbEnv(t, flowstate.New(flowstate.Config{}), lbObjects(c.opts...))
			seen := map[string]bool{}
			for i := range 60 {
				in := frame(t, macGWUp, macUp, fmt.Sprintf("203.0.113.%d", 1+i%50), c.vip, c.proto, uint16(30000+i*7), c.port, syn)
				r, tr := n.trace("rU", in)
				checkInvariants(t, r)
				if c.want == nil {
					if r.Verdict != Drop || r.Reason != c.reason {
						t.Fatalf("verdict %v/%v, want a drop %v\n%s", r.Verdict, r.Reason, c.reason, tr)
					}
					if g := r.Generated(); len(g) != 1 || g[0].Reason != c.gen {
						t.Fatalf("generated %v, want one %v", g, c.gen)
					}
					if !r.HasTag(ObjectTag(model.PoolKind, "pool-web")) && !r.HasTag(ObjectTag(model.PoolKind, "pool-dns")) {
						t.Fatal("no-member drop lacks the pool's tag: a member coming up would not undo it")
					}
					if !strings.Contains(tr.String(), "no usable member") {
						t.Fatalf("trace does not say why:\n%s", tr)
					}
					return
				}
				if r.Verdict != Forward {
					t.Fatalf("verdict %v/%v\n%s", r.Verdict, r.Reason, tr)
				}
				seen[memberOf(r)] = true
			}
			var got []string
			for m := range seen {
				got = append(got, m)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("connections went to %v, want %v", got, c.want)
			}
		})
	}
}

// TestLBWeights: over many connections the shares follow the weights.
func TestLBWeights(t *testing.T) {
	for _, c := range []struct {
		name    string
		weights [3]uint16
	}{
		{"1/2/3", [3]uint16{1, 2, 3}},
		{"equal", [3]uint16{1, 1, 1}},
		{"10/1/5", [3]uint16{10, 1, 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := []lbOpt{}
			for i, id := range []string{"m5", "m6", "m7"} {
				w := c.weights[i]
				opts = append(opts, modify(id, func(m *model.PoolMember) { m.Weight = w }))
			}
			n := lbEnv(t, flowstate.New(flowstate.Config{}), lbObjects(opts...))
			const conns = 6000
			count := map[string]int{}
			for i := range conns {
				in := clientSyn(t, fmt.Sprintf("203.0.%d.%d", 113+i/250, 1+i%250), uint16(1024+i*13), "198.51.100.10", 80)
				r := n.run("rU", in)
				if r.Verdict != Forward {
					t.Fatalf("connection %d: %v/%v", i, r.Verdict, r.Reason)
				}
				count[memberOf(r)]++
			}
			total := float64(c.weights[0] + c.weights[1] + c.weights[2])
			for i, m := range []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"} {
				want := float64(c.weights[i]) / total
				got := float64(count[m]) / conns
				if math.Abs(got-want) > 0.025 {
					t.Errorf("member %s (weight %d) got %.3f of the connections, want %.3f ± 0.025", m, c.weights[i], got, want)
				}
			}
		})
	}
}

// TestLBSourceIPPersistence: a client keeps its member across
// connections, and a member going down moves only its own clients.
func TestLBSourceIPPersistence(t *testing.T) {
	pick := func(objs []model.Object, client string, sport uint16) string {
		n := lbEnv(t, flowstate.New(flowstate.Config{}), objs)
		r := n.run("rU", clientSyn(t, client, sport, "198.51.100.12", 80))
		if r.Verdict != Forward {
			t.Fatalf("%s: %v/%v", client, r.Verdict, r.Reason)
		}
		return memberOf(r)
	}
	before := map[string]string{}
	spread := map[string]bool{}
	for i := range 40 {
		client := fmt.Sprintf("203.0.113.%d", i+1)
		m := pick(lbObjects(), client, 40000)
		for _, sport := range []uint16{40001, 50000, 61000} {
			if again := pick(lbObjects(), client, sport); again != m {
				t.Fatalf("client %s: port %d went to %s, port 40000 to %s", client, sport, again, m)
			}
		}
		before[client] = m
		spread[m] = true
	}
	if len(spread) != 3 {
		t.Errorf("40 clients went to %d members, want all 3", len(spread))
	}
	down := lbObjects(memberStatus("m6", model.MemberDown))
	for client, m := range before {
		after := pick(down, client, 40000)
		if m != "10.0.0.6" && after != m {
			t.Errorf("client %s moved from %s to %s when another member went down", client, m, after)
		}
		if after == "10.0.0.6" {
			t.Errorf("client %s still sent to the down member", client)
		}
	}
}

// TestLBNotBalanced: packets the balancer leaves alone.
func TestLBNotBalanced(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []lbOpt
		in   func(t testing.TB) []byte
	}{
		{"other port", nil, func(t testing.TB) []byte { return clientSyn(t, "203.0.113.9", 40000, "198.51.100.10", 81) }},
		{"other protocol", nil, func(t testing.TB) []byte {
			return frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.10", udpP, 40000, 80, 0)
		}},
		{"load balancer down", []lbOpt{modify("lb", func(l *model.LoadBalancer) { l.State = model.StateDown })},
			func(t testing.TB) []byte { return clientSyn(t, "203.0.113.9", 40000, "198.51.100.10", 80) }},
		{"router without the balancer", []lbOpt{modify("edge", func(r *model.Router) { r.LoadBalancerID = "" })},
			func(t testing.TB) []byte { return clientSyn(t, "203.0.113.9", 40000, "198.51.100.10", 80) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := flowstate.New(flowstate.Config{})
			n := lbEnv(t, tb, lbObjects(c.opts...))
			r, tr := n.trace("rU", c.in(t))
			checkInvariants(t, r)
			if strings.Contains(nact(r.Actions()), "set-ip-dst") || len(r.StateEntries()) != 0 || strings.Contains(tr.String(), "member") {
				t.Errorf("balanced: %v %s\n%s", r.Verdict, nact(r.Actions()), tr)
			}
		})
	}
	// Without flow state the balancer cannot keep connections: it does
	// not balance at all.
	e := newEnv(t, lbObjects(), Config{})
	e.arp[arpEntry{"edge", ip("198.51.100.1")}] = macGWUp
	r, tr := e.trace("rU", clientSyn(t, "203.0.113.9", 40000, "198.51.100.10", 80))
	if strings.Contains(nact(r.Actions()), "set-ip-dst") || !strings.Contains(tr.String(), "no flow state") {
		t.Errorf("stateless walk balanced: %s\n%s", nact(r.Actions()), tr)
	}
}

func TestLBChangeTags(t *testing.T) {
	topo, err := Build(lbObjects())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		o    model.Object
		want []uint64
	}{
		{&model.PoolMember{Meta: meta("m5"), PoolID: "pool-web"}, []uint64{ObjectTag(model.PoolMemberKind, "m5"), ObjectTag(model.PoolKind, "pool-web")}},
		{&model.VIP{Meta: meta("vip-web"), LoadBalancerID: "lb"}, []uint64{ObjectTag(model.VIPKind, "vip-web"), ObjectTag(model.LoadBalancerKind, "lb")}},
		{&model.HealthMonitor{Meta: meta("hm")}, []uint64{ObjectTag(model.HealthMonitorKind, "hm"), ObjectTag(model.PoolKind, "pool-web")}},
		{&model.Pool{Meta: meta("pool-dns")}, []uint64{ObjectTag(model.PoolKind, "pool-dns")}},
		{&model.LoadBalancer{Meta: meta("lb")}, []uint64{ObjectTag(model.LoadBalancerKind, "lb")}},
	} {
		got := topo.ChangeTags(c.o)
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s %s: ChangeTags %x lacks %x", model.KindOf(c.o).Name, c.o.GetMeta().ID, got, w)
			}
		}
	}
	// Dangling references are errors, like everywhere in Build.
	for _, bad := range []lbOpt{
		modify("edge", func(r *model.Router) { r.LoadBalancerID = "nope" }),
		modify("vip-web", func(v *model.VIP) { v.PoolID = "nope" }),
		modify("m5", func(m *model.PoolMember) { m.PoolID = "nope" }),
		modify("pool-web", func(p *model.Pool) { p.LoadBalancerID = "nope" }),
	} {
		if _, err := Build(lbObjects(bad)); err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("dangling reference: %v", err)
		}
	}
}
