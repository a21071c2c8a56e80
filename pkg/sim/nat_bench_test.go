package sim

import (
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// natWalks returns inputs for walks whose state exists: a masqueraded
// query (binding found) and its answer (reverse translation), and an
// established reply through security groups.
func natWalks(tb testing.TB) (*nenv, map[string]*Input) {
	t, _ := tb.(*testing.T)
	n := sgEnv(t)
	n.t = t
	query := frame(tb, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 5555, 53, 0)
	n.run("pc", query)
	var port uint16
	for _, e := range n.res.StateEntries() {
		if e.Fwd.Type == flowstate.KeyFwdSNAT {
			_, port = e.Translated()
		}
	}
	n.run("pc", frame(tb, macCli, macWeb, "10.0.0.6", "10.0.0.5", tcpP, 41000, 80, syn))
	in := n.input
	return n, map[string]*Input{
		"snat-forward":     in("pc", query),
		"snat-reply":       in("rU", frame(tb, macGWUp, macUp, "8.8.8.8", "198.51.100.2", udpP, 53, port, 0)),
		"conntrack-reply":  in("pw", frame(tb, macWeb, macCli, "10.0.0.5", "10.0.0.6", tcpP, 80, 41000, syn|ack)),
		"dnat-new-binding": in("rU", frame(tb, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40000, 80, syn)),
	}
}

// input is a walk of frame b entering port, its state two ticks old.
func (n *nenv) input(port string, b []byte) *Input {
	var p packet.Parsed
	p.Decode(b)
	i, _ := n.topo.PortIndex(port)
	return &Input{InPort: i, Pkt: &p, Now: 2}
}

// walksAllocateNothing checks that each walk forwards and allocates
// nothing.
func walksAllocateNothing(t *testing.T, n *nenv, ins map[string]*Input) {
	t.Helper()
	for name, in := range ins {
		n.sim.Simulate(in, n.res)
		if n.res.Verdict != Forward {
			t.Fatalf("%s: %v/%v", name, n.res.Verdict, n.res.Reason)
		}
		if a := testing.AllocsPerRun(1000, func() { n.sim.Simulate(in, n.res) }); a != 0 {
			t.Errorf("%s: %v allocations per walk", name, a)
		}
	}
}

func TestNATWalkAllocatesNothing(t *testing.T) {
	n, ins := natWalks(t)
	walksAllocateNothing(t, n, ins)
}

// benchWalk runs one walk of walks over and over.
func benchWalk(b *testing.B, walks func(testing.TB) (*nenv, map[string]*Input), name string) {
	n, ins := walks(b)
	in := ins[name]
	b.ReportAllocs()
	for b.Loop() {
		n.sim.Simulate(in, n.res)
	}
	if n.res.Verdict != Forward {
		b.Fatalf("%v/%v", n.res.Verdict, n.res.Reason)
	}
}

// benchNewConnections walks frame fr entering port over and over, as a
// new connection each time: vary makes the i-th copy's 5-tuple unique.
// The clock advances a quarter of timeout every 1024 walks, and the table
// is swept, so that the state stays bounded as in a running agent.
func benchNewConnections(b *testing.B, n *nenv, port string, fr []byte, vary func(fr []byte, i int), timeout time.Duration) {
	var p packet.Parsed
	in, _ := n.topo.PortIndex(port)
	input := &Input{InPort: in, Pkt: &p}
	now := int64(0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		vary(fr, i)
		p.Decode(fr)
		input.Now = now
		n.sim.Simulate(input, n.res)
		if n.res.Verdict != Forward {
			b.Fatalf("%v/%v", n.res.Verdict, n.res.Reason)
		}
		if i%1024 == 0 {
			now += int64(timeout) / 4
			n.tb.Sweep(now, 0, nil)
		}
	}
}

// BenchmarkSimulateSNATForward: a masqueraded packet whose binding
// exists: bridge, router with two chains, a lookup, the rewrites.
func BenchmarkSimulateSNATForward(b *testing.B) { benchWalk(b, natWalks, "snat-forward") }

// BenchmarkSimulateSNATReply: its answer, reverse-translated.
func BenchmarkSimulateSNATReply(b *testing.B) { benchWalk(b, natWalks, "snat-reply") }

// BenchmarkSimulateConntrackReply: a reply through two security groups
// on one bridge: one conntrack lookup.
func BenchmarkSimulateConntrackReply(b *testing.B) { benchWalk(b, natWalks, "conntrack-reply") }

// BenchmarkSimulateSNATNewConnection: every walk is a new connection:
// conntrack lookup, SNAT port allocation, commit of two entries.
func BenchmarkSimulateSNATNewConnection(b *testing.B) {
	n, _ := natWalks(b)
	fr := frame(b, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 5555, 53, 0)
	benchNewConnections(b, n, "pc", fr, func(fr []byte, i int) {
		fr[len(fr)-60+20+1], fr[len(fr)-60+20] = byte(i), byte(i>>8) // the UDP source port...
		fr[len(fr)-60+16+3] = byte(i >> 16)                          // ...and the destination's last octet
	}, flowstate.DefaultTimeouts().UDPNew)
}
