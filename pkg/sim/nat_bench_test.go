package sim

import (
	"testing"

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
	in := func(port string, b []byte) *Input {
		var p packet.Parsed
		p.Decode(b)
		i, _ := n.topo.PortIndex(port)
		return &Input{InPort: i, Pkt: &p, Now: 2}
	}
	return n, map[string]*Input{
		"snat-forward":     in("pc", query),
		"snat-reply":       in("rU", frame(tb, macGWUp, macUp, "8.8.8.8", "198.51.100.2", udpP, 53, port, 0)),
		"conntrack-reply":  in("pw", frame(tb, macWeb, macCli, "10.0.0.5", "10.0.0.6", tcpP, 80, 41000, syn|ack)),
		"dnat-new-binding": in("rU", frame(tb, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40000, 80, syn)),
	}
}

func TestNATWalkAllocatesNothing(t *testing.T) {
	n, ins := natWalks(t)
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

func benchWalk(b *testing.B, name string) {
	n, ins := natWalks(b)
	in := ins[name]
	b.ReportAllocs()
	for b.Loop() {
		n.sim.Simulate(in, n.res)
	}
	if n.res.Verdict != Forward {
		b.Fatalf("%v/%v", n.res.Verdict, n.res.Reason)
	}
}

// BenchmarkSimulateSNATForward: a masqueraded packet whose binding
// exists: bridge, router with two chains, a lookup, the rewrites.
func BenchmarkSimulateSNATForward(b *testing.B) { benchWalk(b, "snat-forward") }

// BenchmarkSimulateSNATReply: its answer, reverse-translated.
func BenchmarkSimulateSNATReply(b *testing.B) { benchWalk(b, "snat-reply") }

// BenchmarkSimulateConntrackReply: a reply through two security groups
// on one bridge: one conntrack lookup.
func BenchmarkSimulateConntrackReply(b *testing.B) { benchWalk(b, "conntrack-reply") }

// BenchmarkSimulateSNATNewConnection: every walk is a new connection:
// conntrack lookup, SNAT port allocation, commit of two entries.
func BenchmarkSimulateSNATNewConnection(b *testing.B) {
	n, _ := natWalks(b)
	var p packet.Parsed
	fr := frame(b, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 5555, 53, 0)
	in, _ := n.topo.PortIndex("pc")
	input := &Input{InPort: in, Pkt: &p}
	now := int64(0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		fr[len(fr)-60+20+1] = byte(i) // the UDP source port, low byte...
		fr[len(fr)-60+20] = byte(i >> 8)
		fr[len(fr)-60+16+3] = byte(i >> 16) // ...and the destination's last octet
		p.Decode(fr)
		input.Now = now
		n.sim.Simulate(input, n.res)
		if n.res.Verdict != Forward {
			b.Fatalf("%v/%v", n.res.Verdict, n.res.Reason)
		}
		if i%1024 == 0 {
			now += int64(flowstate.DefaultTimeouts().UDPNew) / 4
			n.tb.Sweep(now, 0, nil)
		}
	}
}
