package sim

import (
	"testing"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// lbWalks returns inputs for load-balanced walks whose binding exists:
// the client's next packet and the member's reply.
func lbWalks(tb testing.TB) (*nenv, map[string]*Input) {
	t, _ := tb.(*testing.T)
	n := lbEnv(t, flowstate.New(flowstate.Config{}), lbObjects())
	n.env.t = t
	first := clientSyn(tb, "203.0.113.9", 40000, "198.51.100.10", 80)
	n.run("rU", first)
	m := memberOf(n.res)
	macOf := map[string]packet.MAC{"10.0.0.5": macWeb, "10.0.0.6": macCli, "10.0.0.7": macM7}
	portOf := map[string]string{"10.0.0.5": "pw", "10.0.0.6": "pc", "10.0.0.7": "p7"}
	in := n.input
	return n, map[string]*Input{
		"lb-existing": in("rU", frame(tb, macGWUp, macUp, "203.0.113.9", "198.51.100.10", tcpP, 40000, 80, ack)),
		"lb-reply":    in(portOf[m], frame(tb, macOf[m], macIn, m, "203.0.113.9", tcpP, 8080, 40000, ack)),
	}
}

func TestLBWalkAllocatesNothing(t *testing.T) {
	n, ins := lbWalks(t)
	walksAllocateNothing(t, n, ins)
	// A new connection: member choice and binding.
	var p packet.Parsed
	fr := clientSyn(t, "203.0.113.9", 1, "198.51.100.10", 80)
	in, _ := n.topo.PortIndex("rU")
	input := &Input{InPort: in, Pkt: &p}
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		i++
		fr[len(fr)-60+20+1], fr[len(fr)-60+20] = byte(i), byte(i>>8) // the TCP source port
		p.Decode(fr)
		n.sim.Simulate(input, n.res)
		if n.res.Verdict != Forward {
			t.Fatalf("%v/%v", n.res.Verdict, n.res.Reason)
		}
	}); a != 0 {
		t.Errorf("new connection: %v allocations per walk", a)
	}
}

// BenchmarkSimulateLBExisting: a packet of a balanced connection: VIP
// match, binding lookup, rewrite, routing to the member.
func BenchmarkSimulateLBExisting(b *testing.B) { benchWalk(b, lbWalks, "lb-existing") }

// BenchmarkSimulateLBReply: the member's answer, translated back to the
// VIP.
func BenchmarkSimulateLBReply(b *testing.B) { benchWalk(b, lbWalks, "lb-reply") }

// BenchmarkSimulateLBNewConnection: every walk is a new connection:
// binding lookup, weighted rendezvous over three members, commit.
func BenchmarkSimulateLBNewConnection(b *testing.B) {
	n, _ := lbWalks(b)
	fr := clientSyn(b, "203.0.113.9", 1, "198.51.100.10", 80)
	benchNewConnections(b, n, "rU", fr, func(fr []byte, i int) {
		fr[len(fr)-60+20+1], fr[len(fr)-60+20] = byte(i), byte(i>>8) // the TCP source port...
		fr[len(fr)-60+12+3] = byte(i >> 16)                          // ...and the client's last octet
	}, flowstate.DefaultTimeouts().TCPSynSent)
}
