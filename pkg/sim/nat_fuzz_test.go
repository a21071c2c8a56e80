package sim

import (
	"fmt"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// natMenu is what fuzzed chains are made of: every NAT rule type, static
// and dynamic, tiny port ranges (to reach exhaustion), and the conntrack
// conditions.
func natMenu(i int) *model.Rule {
	tcp80 := model.Condition{Dst: pfx("198.51.100.2/32"), Proto: tcpP, DstPort: model.PortRange{Start: 80, End: 80}}
	switch i % 13 {
	case 0:
		return mkNAT(model.RuleRevSNAT, model.Condition{})
	case 1:
		return mkNAT(model.RuleRevDNAT, model.Condition{})
	case 2:
		return mkNAT(model.RuleSNAT, model.Condition{Src: pfx("10.0.0.0/24"), OutPortIDs: []string{"rU"}}, "198.51.100.2:1024-1030")
	case 3:
		return mkNAT(model.RuleSNAT, model.Condition{Src: pfx("10.0.0.5/32")}, "203.0.113.50")
	case 4:
		return mkNAT(model.RuleDNAT, tcp80, "10.0.0.5:80")
	case 5:
		return mkNAT(model.RuleDNAT, model.Condition{Dst: pfx("203.0.113.50/32")}, "10.0.0.5")
	case 6:
		return mkNAT(model.RuleSNAT, model.Condition{InPortIDs: []string{"rI"}, OutPortIDs: []string{"rI"}}, "10.0.0.1:2000-2003")
	case 7:
		return plain(model.RuleDrop, model.Condition{CTState: "invalid"})
	case 8:
		return plain(model.RuleAccept, model.Condition{Flow: "return-flow"})
	case 9:
		return plain(model.RuleDrop, model.Condition{CTState: "new", InvCTState: true, Flow: "fwd-flow"})
	case 10:
		return mkNAT(model.RuleDNAT, model.Condition{Dst: pfx("198.51.100.2/32"), Proto: udpP}, "10.0.0.5-10.0.0.6:8080-8081")
	case 11:
		return mkNAT(model.RuleSNAT, model.Condition{}, "[2001:db8::1]:1000-1001") // the other family
	}
	return plain(model.RuleReject, model.Condition{CTState: "related", InvCTState: true, Proto: udpP})
}

var natChainSlots = []string{"pre", "post", "pc:in", "pc:out", "pw:in", "pw:out", "rI:in", "rU:out"}

func natFuzzTopology(r *fuzzReader) []model.Object {
	attach := map[string]string{}
	var chains [][]model.Object
	for i, slot := range natChainSlots {
		n := r.n(4)
		if n == 0 {
			continue
		}
		var rules []*model.Rule
		for range n {
			rl := natMenu(r.n(256))
			if rl.Type.IsNAT() {
				rl.FlowAction = []string{"accept", "continue", "return"}[r.n(3)]
			}
			rules = append(rules, rl)
		}
		id := fmt.Sprintf("c%d", i)
		attach[slot] = id
		chains = append(chains, chainOf(id, rules...))
	}
	return withChains(edgeObjects(), attach, chains...)
}

var (
	fuzzAddrs = []string{"10.0.0.5", "10.0.0.6", "198.51.100.2", "8.8.8.8", "203.0.113.50", "10.0.0.1", "203.0.113.9", "198.51.100.1"}
	fuzzPorts = []string{"pc", "pw", "rU", "pv6a"}
)

// fuzzFrame builds a frame entering port in from fuzz bytes, with the
// MACs a real sender there would use.
func fuzzFrame(t *testing.T, r *fuzzReader) (string, []byte) {
	in := fuzzPorts[r.n(len(fuzzPorts))]
	src, dst := fuzzAddrs[r.n(len(fuzzAddrs))], fuzzAddrs[r.n(len(fuzzAddrs))]
	proto := []uint8{tcpP, udpP, icmp}[r.n(3)]
	sp, dp := []uint16{80, 5555, 1024, 2000}[r.n(4)], []uint16{80, 53, 1025, 2001, 8080}[r.n(5)]
	flags := []uint8{syn, syn | ack, ack, packet.TCPRst, packet.TCPFin | ack}[r.n(5)]
	smac, dmac := macCli, macIn
	switch in {
	case "pw":
		smac = macWeb
	case "rU":
		smac, dmac = macGWUp, macUp
	case "pv6a":
		src, dst, smac, dmac = "2001:db8:a::5", "2001:db8:a::6", macV6a, macV6b
		if proto == icmp {
			proto = packet.IPProtoICMPv6
		}
	}
	if dst == "10.0.0.5" && in == "pc" && r.bit() {
		dmac = macWeb // bridged, not routed
	}
	return in, frame(t, smac, dmac, src, dst, proto, sp, dp, flags)
}

// FuzzNAT builds an edge topology whose router and port chains are drawn
// from every NAT rule type and conntrack condition, then sends a sequence
// of packets, each followed by a reply of what came out (sent back in by
// the port it left by) and an ICMP error about it. Every walk must keep
// the Result invariants, emit actions the datapath's rewrites accept,
// produce correct checksums, create state only when it forwards, and
// keep the table within its bounds.
// natFuzzEnv builds a fuzzed topology with a small flow-state table (so
// that fuzzing reaches its limits) and the neighbours the walks need: the
// upstream gateway, the web server and the client.
func natFuzzEnv(t *testing.T, objs []model.Object) (*env, *flowstate.Table) {
	t.Helper()
	topo, err := Build(objs)
	if err != nil {
		t.Fatalf("the fuzzed topology is valid: %v", err)
	}
	tb := flowstate.New(flowstate.Config{MaxEntries: 32, MaxPerZone: 12})
	e := &env{topo: topo, macs: newFakeMACs(), arp: fakeARP{}, res: NewResult()}
	e.sim = NewSimulator(topo, Config{HostID: "h1", MACs: e.macs, ARP: e.arp, FlowState: tb})
	e.arp[arpEntry{"edge", ip("198.51.100.1")}] = macGWUp
	e.arp[arpEntry{"edge", ip("10.0.0.5")}] = macWeb
	e.arp[arpEntry{"edge", ip("10.0.0.6")}] = macCli
	e.learned("lan", 0, macWeb, "pw")
	e.learned("lan", 0, macCli, "pc")
	e.learned("lan6", 0, macV6b, "pv6b")
	return e, tb
}

func FuzzNAT(f *testing.F) {
	f.Add([]byte{3, 0, 4, 1, 3, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0}, []byte{0, 1, 3, 1, 1, 1, 0, 2, 2, 2, 4, 0, 0, 0, 1, 1})
	f.Add([]byte{2, 5, 0, 2, 3, 0, 6, 1, 1, 7, 0, 2, 8, 9, 0, 1, 7}, []byte{1, 4, 0, 0, 0, 0, 0, 0, 2, 3, 2, 2, 0, 4, 1, 0})
	f.Add([]byte("any bytes make some chains"), []byte("and some packets to walk through them"))
	f.Fuzz(func(t *testing.T, topoBytes, pktBytes []byte) {
		e, tb := natFuzzEnv(t, natFuzzTopology(&fuzzReader{b: topoBytes}))
		r := &fuzzReader{b: pktBytes}
		now := int64(0)
		for step := 0; step < 6 && r.i < len(r.b); step++ {
			in, fr := fuzzFrame(t, r)
			now += int64(r.n(40)) * 1e9
			out, outPort := natFuzzWalk(t, e, tb, in, fr, now)
			if out == nil || outPort == "" {
				continue
			}
			// The reply, sent back in by the port the packet left by.
			p := decode(out)
			rep := frame(t, p.EthDst, p.EthSrc, p.DstIP.String(), p.SrcIP.String(), p.IPProto, p.DstPort, p.SrcPort, syn|ack)
			if p.IsEchoRequest() {
				rep = echoReply(t, p.EthDst, p.EthSrc, p.DstIP.String(), p.SrcIP.String(), p.ICMPEchoID)
			}
			natFuzzWalk(t, e, tb, outPort, rep, now+1)
			// And an ICMP error about it from its destination.
			if p.L3 == packet.L3IPv4 && p.L4 != packet.L4ICMPv4 {
				var q packet.Parsed
				q.Decode(out)
				buf := make([]byte, 512)
				if n, err := packet.BuildICMPv4Unreachable(buf, &q, p.DstIP, packet.ICMPv4PortUnreachable); err == nil {
					natFuzzWalk(t, e, tb, outPort, buf[:n], now+2)
				}
			}
		}
		if s := tb.Stats(); s.Entries > 32 {
			t.Fatalf("table over its bound: %+v", s)
		}
	})
}

// natFuzzWalk simulates one frame, checks the result, and returns the
// frame as it leaves by the first local output and that port.
func natFuzzWalk(t *testing.T, e *env, tb *flowstate.Table, in string, fr []byte, now int64) ([]byte, string) {
	t.Helper()
	var p packet.Parsed
	p.Decode(fr)
	tr := &Tracer{}
	e.sim.Simulate(&Input{InPortID: in, Pkt: &p, Now: now, Trace: tr}, e.res)
	res := e.res
	checkInvariants(t, res)
	if res.Verdict != Forward && len(res.StateEntries()) != 0 {
		t.Fatalf("%v walk left state entries %v\n%s", res.Verdict, res.StateEntries(), tr)
	}
	for _, a := range res.Actions() {
		if (a.Type == flow.ActInnerSrc || a.Type == flow.ActInnerDst) && !res.SlowPath {
			t.Fatalf("a quote rewrite in a cacheable flow\n%s", tr)
		}
	}
	for _, k := range res.StateKeys() {
		if !res.HasTag(k.Tag()) && !res.TagsOverflowed {
			t.Fatalf("state key %v read but not tagged", k)
		}
	}
	if res.Verdict != Forward {
		return nil, ""
	}
	var outPort string
	for _, a := range res.Actions() {
		if a.Type == flow.ActOutput {
			outPort = a.PortID
			break
		}
		if a.Type == flow.ActEncap {
			return nil, ""
		}
	}
	out := applyActs(t, fr, res.Actions())
	checksumsOK(t, out)
	if t.Failed() {
		t.Fatalf("after %s\n%s", nact(res.Actions()), tr)
	}
	return out, outPort
}
