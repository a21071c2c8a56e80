package sim

import (
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// lbFuzzOpts draws the load balancer's state: members' states, health
// statuses and weights, the pool's and balancer's states, persistence,
// and whether the pool has a monitor.
func lbFuzzOpts(r *fuzzReader) []lbOpt {
	var opts []lbOpt
	for _, id := range []string{"m5", "m6", "m7", "d5"} {
		st := []model.State{model.StateUp, model.StateDown}[r.n(2)]
		status := []string{"", model.MemberUp, model.MemberDown, model.MemberNoMonitor}[r.n(4)]
		w := uint16(r.n(4))
		opts = append(opts, modify(id, func(m *model.PoolMember) { m.State, m.Status, m.Weight = st, status, w }))
	}
	poolUp, lbUp, monitored, sticky := r.n(5) != 0, r.n(5) != 0, r.bit(), r.bit()
	opts = append(opts,
		modify("pool-web", func(p *model.Pool) {
			if !poolUp {
				p.State = model.StateDown
			}
			if !monitored {
				p.HealthMonitorID = ""
			}
		}),
		modify("lb", func(l *model.LoadBalancer) {
			if !lbUp {
				l.State = model.StateDown
			}
		}),
		modify("vip-web", func(v *model.VIP) {
			if sticky {
				v.SessionPersistence = "source_ip"
			}
		}))
	return opts
}

var lbFuzzVIPs = []struct {
	addr string
	port uint16
}{{"198.51.100.10", 80}, {"198.51.100.11", 53}, {"198.51.100.12", 80}, {"198.51.100.10", 53}}

// FuzzLB is FuzzNAT with the load balancer on the edge router, its state
// drawn from the fuzz input, and packets often sent to a VIP: balanced
// packets, their replies from the member, and ICMP errors about them
// must all keep the invariants FuzzNAT checks; the router's NAT chains
// are fuzzed alongside, and ARP requests for VIPs and translated
// addresses are answered or not without breaking them.
func FuzzLB(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, []byte{2, 1, 3, 1, 1, 2, 0, 2, 2, 0, 0, 1, 1, 0})
	f.Add([]byte{3, 1, 2, 4, 1, 0, 3, 2, 1, 1, 0, 0, 4, 4, 1, 0, 2, 2, 5}, []byte{2, 0, 1, 2, 1, 0, 0, 0, 1, 2, 3, 3, 1, 1, 2})
	f.Add([]byte("load balancers and their members"), []byte("packets to the vips and back again"))
	f.Fuzz(func(t *testing.T, topoBytes, pktBytes []byte) {
		tr := &fuzzReader{b: topoBytes}
		objs := withLB(natFuzzTopology(tr), lbFuzzOpts(tr)...)
		chains := false
		for _, o := range objs {
			_, isChain := o.(*model.Chain)
			chains = chains || isChain
		}
		e, tb := natFuzzEnv(t, objs)
		e.arp[arpEntry{"edge", ip("10.0.0.7")}] = macM7
		e.learned("lan", 0, macM7, "p7")
		r := &fuzzReader{b: pktBytes}
		now := int64(0)
		for step := 0; step < 6 && r.i < len(r.b); step++ {
			in, fr := fuzzFrame(t, r)
			if r.n(3) != 0 {
				// To a VIP from the Internet.
				v := lbFuzzVIPs[r.n(len(lbFuzzVIPs))]
				p := decode(fr)
				proto := []uint8{tcpP, udpP}[r.n(2)]
				fr = frame(t, macGWUp, macUp, []string{"203.0.113.9", "203.0.113.10", "8.8.8.8"}[r.n(3)], v.addr, proto, p.SrcPort+uint16(r.n(3)), v.port, p.TCPFlags)
				in = "rU"
			}
			if r.n(4) == 0 {
				// An ARP request for a VIP, a translated or a plain address.
				target := append([]string{"198.51.100.10", "198.51.100.12", "10.0.0.99"}, fuzzAddrs...)[r.n(len(fuzzAddrs)+3)]
				in, req := "rU", arpRequest(t, macGWUp, "198.51.100.1", target)
				if r.bit() {
					in, req = "pc", arpRequest(t, macCli, "10.0.0.6", target)
				}
				var p packet.Parsed
				p.Decode(req)
				e.sim.Simulate(&Input{InPortID: in, Pkt: &p, Now: now}, e.res)
				checkInvariants(t, e.res)
				if len(e.res.StateEntries()) != 0 {
					t.Fatalf("an ARP request created state: %v", e.res.StateEntries())
				}
			}
			now += int64(r.n(40)) * 1e9
			out, outPort := natFuzzWalk(t, e, tb, in, fr, now)
			if out == nil || outPort == "" {
				continue
			}
			p := decode(out)
			rep := frame(t, p.EthDst, p.EthSrc, p.DstIP.String(), p.SrcIP.String(), p.IPProto, p.DstPort, p.SrcPort, syn|ack)
			if p.IsEchoRequest() {
				rep = echoReply(t, p.EthDst, p.EthSrc, p.DstIP.String(), p.SrcIP.String(), p.ICMPEchoID)
			}
			if back, _ := natFuzzWalk(t, e, tb, outPort, rep, now+1); back != nil && in == "rU" && !chains {
				// Without NAT rules to blur it, a reply that makes it back
				// out to the client comes from where the client sent to.
				q, orig := decode(back), decode(fr)
				if q.DstIP == orig.SrcIP && q.HasPorts() && q.DstPort == orig.SrcPort && (q.SrcIP != orig.DstIP || q.SrcPort != orig.DstPort) {
					t.Fatalf("reply to %s:%d comes from %s:%d, not %s:%d", q.DstIP, q.DstPort, q.SrcIP, q.SrcPort, orig.DstIP, orig.DstPort)
				}
			}
		}
		if s := tb.Stats(); s.Entries > 32 {
			t.Fatalf("table over its bound: %+v", s)
		}
	})
}
