package sim

import (
	"fmt"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

var (
	macP1 = packet.MAC{2, 0, 0, 0, 9, 1}
	macP2 = packet.MAC{2, 0, 0, 0, 9, 2}
)

// ruleObjects is one bridge with three local VM ports; p1's inbound filter
// is chain "in", made of rules; extra holds further chains and groups.
func ruleObjects(rules []*model.Rule, extra ...model.Object) []model.Object {
	p1 := vmPort("p1", "br", "h1", "tap1", 1)
	p1.InboundFilterID = "in"
	objs := []model.Object{
		&model.Host{Meta: meta("h1")},
		&model.Bridge{Meta: meta("br"), Name: "br", State: model.StateUp},
		p1,
		vmPort("p2", "br", "h1", "tap2", 2),
		vmPort("p3", "br", "h1", "tap3", 3),
	}
	chains := map[string]*model.Chain{"in": {Meta: meta("in"), Name: "in"}}
	for _, o := range extra {
		if c, ok := o.(*model.Chain); ok {
			chains[c.ID] = c
			continue
		}
		objs = append(objs, o)
	}
	for _, r := range rules {
		c, ok := chains[r.ChainID]
		if !ok {
			c = &model.Chain{Meta: meta(r.ChainID), Name: r.ChainID}
			chains[r.ChainID] = c
		}
		c.RuleIDs = append(c.RuleIDs, r.ID)
		objs = append(objs, r)
	}
	for _, c := range chains {
		objs = append(objs, c)
	}
	return objs
}

var ruleSeq int

func rl(chain string, typ model.RuleType, cond model.Condition) *model.Rule {
	ruleSeq++
	return &model.Rule{Meta: meta(fmt.Sprintf("rule-%d", ruleSeq)), ChainID: chain, Type: typ, Condition: cond}
}

func jump(chain, to string, cond model.Condition) *model.Rule {
	r := rl(chain, model.RuleJump, cond)
	r.JumpChainID = to
	return r
}

func udpP1(src, dst string, dport uint16) []byte {
	p := udp(macP1, macP2, src, dst)
	p.dport = dport
	return p.bytes()
}

func tcpP1(src, dst string, dport uint16) []byte {
	p := udp(macP1, macP2, src, dst)
	p.proto, p.dport, p.tcpFlags = packet.IPProtoTCP, dport, packet.TCPSyn
	p.payloadLen = 0
	return p.bytes()
}

// forgedSHA is an ARP request from src whose payload claims sha as the
// sender hardware address.
func forgedSHA(t testing.TB, src, sha packet.MAC, srcIP, target string) []byte {
	b := arpRequest(t, src, srcIP, target)
	copy(b[14+8:14+14], sha[:])
	return b
}

// neighborAdvert is p1's (macP1's) advertisement of target, answering a
// solicitation from macP2.
func neighborAdvert(t testing.TB, target string) []byte {
	ns := make([]byte, 128)
	n, err := packet.BuildNeighborSolicit(ns, macP2, ip("fe80::2"), ip(target))
	if err != nil {
		t.Fatal(err)
	}
	var p packet.Parsed
	p.Decode(ns[:n])
	na := make([]byte, 128)
	if n, err = packet.BuildNeighborAdvert(na, &p, macP1, false); err != nil {
		t.Fatal(err)
	}
	return na[:n]
}

func neighborSolicit(t testing.TB, src, target string) []byte {
	b := make([]byte, 128)
	n, err := packet.BuildNeighborSolicit(b, macP1, ip(src), ip(target))
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func TestRules(t *testing.T) {
	any := model.Condition{}
	pr := func(s string) model.PortRange { r, _ := model.ParsePortRange(s); return r }
	type sent struct {
		frame  []byte
		v      Verdict
		reason DropReason
	}
	fwd := func(f []byte) sent { return sent{f, Forward, DropNone} }
	drop := func(f []byte) sent { return sent{f, Drop, DropRuleDrop} }
	cases := []struct {
		name  string
		rules []*model.Rule
		extra []model.Object
		sends []sent
		check func(t *testing.T, r *Result)
	}{
		{name: "empty chain accepts", sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53))}},
		{name: "drop any", rules: []*model.Rule{rl("in", model.RuleDrop, any)}, sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))}},
		{
			name:  "accept stops evaluation",
			rules: []*model.Rule{rl("in", model.RuleAccept, model.Condition{Proto: 17}), rl("in", model.RuleDrop, any)},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(tcpP1("10.1.0.1", "10.1.0.2", 80))},
		},
		{
			name:  "continue goes on",
			rules: []*model.Rule{rl("in", model.RuleContinue, any), rl("in", model.RuleDrop, any)},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "reject TCP with a reset",
			rules: []*model.Rule{rl("in", model.RuleReject, any)},
			sends: []sent{{tcpP1("10.1.0.1", "10.1.0.2", 80), Drop, DropRuleReject}},
			check: func(t *testing.T, r *Result) {
				p, a := genFrame(t, r, 0)
				if !p.IsTCPRst() || p.SrcIP != ip("10.1.0.2") || p.DstIP != ip("10.1.0.1") || acts(a) != "output p1/tap1" {
					t.Errorf("reset %v via %s", p, acts(a))
				}
			},
		},
		{
			name:  "reject UDP with admin prohibited",
			rules: []*model.Rule{rl("in", model.RuleReject, any)},
			sends: []sent{{udpP1("10.1.0.1", "10.1.0.2", 53), Drop, DropRuleReject}},
			check: func(t *testing.T, r *Result) {
				p, _ := genFrame(t, r, 0)
				if p.ICMPType != packet.ICMPv4Unreachable || p.ICMPCode != packet.ICMPv4AdminProhibited {
					t.Errorf("reject sent %v", p)
				}
			},
		},
		{
			name: "jump into a chain that drops one destination, else falls back",
			rules: []*model.Rule{jump("in", "sub", any), rl("in", model.RuleAccept, any),
				rl("sub", model.RuleDrop, model.Condition{Dst: pfx("10.1.0.2/32")})},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53)), fwd(udpP1("10.1.0.1", "10.1.0.3", 53))},
		},
		{
			name: "return leaves the jumped chain",
			rules: []*model.Rule{jump("in", "sub2", any), rl("in", model.RuleAccept, any),
				rl("sub2", model.RuleReturn, model.Condition{Proto: 17}), rl("sub2", model.RuleDrop, any)},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(tcpP1("10.1.0.1", "10.1.0.2", 80))},
		},
		{
			name:  "return in the top chain accepts",
			rules: []*model.Rule{rl("in", model.RuleReturn, any), rl("in", model.RuleDrop, any)},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "jump cycle is cut",
			rules: []*model.Rule{jump("in", "ca", any), jump("ca", "cb", any), jump("cb", "ca", any)},
			sends: []sent{{udpP1("10.1.0.1", "10.1.0.2", 53), Drop, DropChainLoop}},
		},
		{
			name:  "inverted source prefix",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{Src: pfx("10.1.0.0/24"), InvSrc: true})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(udpP1("10.9.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "inverted protocol",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{Proto: 6, InvProto: true})},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53)), fwd(tcpP1("10.1.0.1", "10.1.0.2", 80))},
		},
		{
			name:  "destination port range and its inversion",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{Proto: 17, DstPort: pr("1000-2000")}), rl("in", model.RuleDrop, model.Condition{Proto: 6, DstPort: pr("22"), InvDstPort: true})},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 1500)), fwd(udpP1("10.1.0.1", "10.1.0.2", 999)), fwd(tcpP1("10.1.0.1", "10.1.0.2", 22)), drop(tcpP1("10.1.0.1", "10.1.0.2", 80))},
		},
		{
			name:  "inverted in-ports",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{InPortIDs: []string{"p1"}, InvInPorts: true})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "in-ports",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{InPortIDs: []string{"p3", "p1"}})},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "port group",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{PortGroupID: "pg"})},
			extra: []model.Object{&model.PortGroup{Meta: meta("pg")}, &model.PortGroupMember{Meta: meta("pgm"), PortGroupID: "pg", PortID: "p1"}},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
			check: func(t *testing.T, r *Result) {
				if !r.HasTag(ObjectTag(model.PortGroupKind, "pg")) {
					t.Error("port group tag missing")
				}
			},
		},
		{
			name:  "inverted port group without the port",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{PortGroupID: "pg", InvPortGroup: true})},
			extra: []model.Object{&model.PortGroup{Meta: meta("pg")}, &model.PortGroupMember{Meta: meta("pgm"), PortGroupID: "pg", PortID: "p2"}},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "IP address groups, source and inverted destination",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{IPAddrGroupSrcID: "admins", InvIPAddrGroupSrc: true}), rl("in", model.RuleDrop, model.Condition{IPAddrGroupDstID: "dbs"})},
			extra: []model.Object{&model.IPAddrGroup{Meta: meta("admins")}, &model.IPAddrGroupAddr{Meta: meta("a1"), IPAddrGroupID: "admins", Address: ip("10.1.0.1")},
				&model.IPAddrGroup{Meta: meta("dbs")}, &model.IPAddrGroupAddr{Meta: meta("d1"), IPAddrGroupID: "dbs", Address: ip("10.1.0.9")}},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(udpP1("10.1.0.5", "10.1.0.2", 53)), drop(udpP1("10.1.0.1", "10.1.0.9", 53))},
			check: func(t *testing.T, r *Result) {
				if !r.HasTag(ObjectTag(model.IPAddrGroupKind, "admins")) || !r.HasTag(ObjectTag(model.IPAddrGroupKind, "dbs")) {
					t.Error("address group tags missing")
				}
			},
		},
		{
			name:  "MAC conditions",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{SrcMAC: mm(macP1), DstMAC: mm(macP2), InvDstMAC: true})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(udp(macP1, macVM1, "10.1.0.1", "10.1.0.2").bytes())},
		},
		{
			name:  "ethertype",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{EtherType: packet.EtherTypeIPv6})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(udp(macP1, macP2, "2001:db8::1", "2001:db8::2").bytes())},
		},
		{
			name:  "inverted ethertype: an anti-spoofing 'drop non-IPv4'",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{EtherType: packet.EtherTypeIPv4, InvEtherType: true})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53)), drop(udp(macP1, macP2, "2001:db8::1", "2001:db8::2").bytes())},
		},
		{
			name:  "an IP condition does not match ARP for a non-IP field, and its inversion does",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{Proto: 17, InvProto: true})},
			sends: []sent{drop(arpRequest(t, macP1, "10.1.0.1", "10.1.0.2")), fwd(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "ARP sender address matches src",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{Src: pfx("10.1.0.0/24"), InvSrc: true})},
			sends: []sent{drop(arpRequest(t, macP1, "10.66.0.1", "10.1.0.2"))},
		},
		{
			name: "arp-sha: the payload's sender hardware address, not the Ethernet source",
			rules: []*model.Rule{rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeARP, ARPSHA: mm(macP1)}),
				rl("in", model.RuleDrop, any)},
			sends: []sent{fwd(arpRequest(t, macP1, "10.1.0.1", "10.1.0.2")),
				drop(forgedSHA(t, macP1, macP2, "10.1.0.1", "10.1.0.2")),
				drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "inverted arp-sha holds for a frame that is not ARP",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{ARPSHA: mm(macP1), InvARPSHA: true})},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53)),
				fwd(arpRequest(t, macP1, "10.1.0.1", "10.1.0.2")),
				drop(forgedSHA(t, macP1, macP2, "10.1.0.1", "10.1.0.2"))},
		},
		{
			name: "anti-spoofing ARP: own MAC inside and out, own address",
			rules: []*model.Rule{rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeARP, SrcMAC: mm(macP1), ARPSHA: mm(macP1), Src: pfx("10.1.0.1/32")}),
				rl("in", model.RuleDrop, any)},
			sends: []sent{fwd(arpRequest(t, macP1, "10.1.0.1", "10.1.0.2")),
				drop(arpRequest(t, macP1, "10.1.0.9", "10.1.0.2")),
				drop(forgedSHA(t, macP1, macP2, "10.1.0.1", "10.1.0.2"))},
		},
		{
			name: "nd-target matches an advertisement's target",
			rules: []*model.Rule{rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeIPv6, Proto: packet.IPProtoICMPv6, SrcPort: pr("136"), NDTarget: pfx("2001:db8::1/128")}),
				rl("in", model.RuleDrop, any)},
			sends: []sent{fwd(neighborAdvert(t, "2001:db8::1")), drop(neighborAdvert(t, "2001:db8::9"))},
		},
		{
			name:  "nd-target matches a solicitation's target",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{NDTarget: pfx("2001:db8::/64")})},
			sends: []sent{drop(neighborSolicit(t, "fe80::1", "2001:db8::7")), fwd(neighborSolicit(t, "fe80::1", "2001:db9::7"))},
		},
		{
			name:  "inverted nd-target holds for IPv6 that is not ND, and for ARP",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{NDTarget: pfx("2001:db8::/64"), InvNDTarget: true})},
			sends: []sent{drop(udp(macP1, macP2, "2001:db8::1", "2001:db8::2").bytes()),
				drop(arpRequest(t, macP1, "10.1.0.1", "10.1.0.2")),
				fwd(neighborAdvert(t, "2001:db8::1")),
				drop(neighborAdvert(t, "fe80::1"))},
		},
		{
			name:  "NAT rules are not implemented and continue",
			rules: []*model.Rule{{Meta: meta("nat"), ChainID: "in", Type: model.RuleDNAT, Targets: []model.NATTarget{{AddrFrom: ip("10.1.0.3"), AddrTo: ip("10.1.0.3")}}}, rl("in", model.RuleDrop, any)},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "return-flow never matches without connection tracking",
			rules: []*model.Rule{rl("in", model.RuleAccept, model.Condition{Flow: "return-flow"}), rl("in", model.RuleDrop, any)},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "fragment policy unfragmented",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{FragmentPolicy: "unfragmented", InvSrc: false})},
			sends: []sent{drop(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "fragment policy nonheader does not match a whole packet",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{FragmentPolicy: "nonheader"})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
		{
			name:  "TOS",
			rules: []*model.Rule{rl("in", model.RuleDrop, model.Condition{TOS: 0x10})},
			sends: []sent{fwd(udpP1("10.1.0.1", "10.1.0.2", 53))},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, ruleObjects(c.rules, c.extra...), Config{})
			e.learned("br", 0, macP2, "p2")
			e.learned("br", 0, macVM1, "p3")
			for i, s := range c.sends {
				r, tr := e.trace("p1", s.frame)
				if r.Verdict != s.v || r.Reason != s.reason {
					t.Errorf("send %d: %v/%v, want %v/%v\n%s", i, r.Verdict, r.Reason, s.v, s.reason, tr)
				}
				if r.Verdict == Drop && !r.HasTag(ObjectTag(model.ChainKind, "in")) {
					t.Errorf("send %d: chain tag missing", i)
				}
				if c.check != nil && i == 0 {
					c.check(t, r)
				}
			}
		})
	}
}

func TestRuleTraceNamesTheRule(t *testing.T) {
	e := newEnv(t, ruleObjects([]*model.Rule{rl("in", model.RuleAccept, model.Condition{Proto: 17}),
		rl("in", model.RuleDrop, model.Condition{Dst: pfx("10.0.0.0/8"), Proto: 6})}), Config{})
	_, tr := e.trace("p1", tcpP1("10.1.0.1", "10.1.0.2", 80))
	want := "rule 2 (dst 10.0.0.0/8 proto 6): drop"
	for _, s := range tr.Steps {
		if s.Kind == StepChain && s.Object == "in" && s.Message == want {
			return
		}
	}
	t.Errorf("no step %q in\n%s", want, tr)
}

func TestDescribeAntiSpoofingConditions(t *testing.T) {
	r := rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeARP, ARPSHA: mm(macP1), InvARPSHA: true,
		NDTarget: pfx("fe80::/64")})
	want := "ethertype 0x0806 arp-sha !02:00:00:00:09:01 nd-target fe80::/64"
	if got := describeRule(r); got != want {
		t.Errorf("describeRule = %q, want %q", got, want)
	}
}

// The anti-spoofing conditions run for every ARP and ND frame a VM sends;
// matching them must not allocate. A drop records its reason with the port's
// name, which allocates once; a spoofed frame must cost no more than that.
func TestAntiSpoofingConditionsAllocateNothing(t *testing.T) {
	pr, _ := model.ParsePortRange("136")
	e := newEnv(t, ruleObjects([]*model.Rule{
		rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeARP, SrcMAC: mm(macP1), ARPSHA: mm(macP1), Src: pfx("10.1.0.1/32")}),
		rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeIPv6, Proto: packet.IPProtoICMPv6, SrcPort: pr, SrcMAC: mm(macP1), NDTarget: pfx("2001:db8::1/128")}),
		rl("in", model.RuleDrop, model.Condition{})}), Config{})
	e.learned("br", 0, macP2, "p2")
	in, _ := e.topo.PortIndex("p1")
	allocs := func(name string, frame []byte, v Verdict) float64 {
		var p packet.Parsed
		p.Decode(frame)
		input := &Input{InPort: in, Pkt: &p}
		e.sim.Simulate(input, e.res)
		if e.res.Verdict != v {
			t.Fatalf("%s: verdict %v/%v, want %v", name, e.res.Verdict, e.res.Reason, v)
		}
		return testing.AllocsPerRun(1000, func() { e.sim.Simulate(input, e.res) })
	}
	for name, f := range map[string][]byte{"arp": arpRequest(t, macP1, "10.1.0.1", "10.1.0.2"), "na": neighborAdvert(t, "2001:db8::1")} {
		if n := allocs(name, f, Forward); n != 0 {
			t.Errorf("%s: %v allocations per walk, want 0", name, n)
		}
	}
	base := allocs("udp", udpP1("10.1.0.1", "10.1.0.2", 53), Drop)
	for name, f := range map[string][]byte{"forged-arp": forgedSHA(t, macP1, macP2, "10.1.0.1", "10.1.0.2"), "forged-na": neighborAdvert(t, "2001:db8::9")} {
		if n := allocs(name, f, Drop); n > base {
			t.Errorf("%s: %v allocations per walk, more than a plain drop's %v", name, n, base)
		}
	}
}

// A verdict that read the ARP sender hardware address or the ND target
// must not become a flow: the flow key holds neither, so the next frame
// with the same key but another claim would take the same verdict.
func TestAntiSpoofingConditionsAreNotCached(t *testing.T) {
	e := newEnv(t, ruleObjects([]*model.Rule{
		rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeARP, ARPSHA: mm(macP1)}),
		rl("in", model.RuleAccept, model.Condition{NDTarget: pfx("2001:db8::1/128")}),
		rl("in", model.RuleAccept, model.Condition{EtherType: packet.EtherTypeIPv4})}), Config{})
	e.learned("br", 0, macP2, "p2")
	for _, c := range []struct {
		name  string
		frame []byte
		slow  bool
	}{
		{"arp", arpRequest(t, macP1, "10.1.0.1", "10.1.0.2"), true},
		{"forged-arp", forgedSHA(t, macP1, macP2, "10.1.0.1", "10.1.0.2"), true},
		{"na", neighborAdvert(t, "2001:db8::1"), true},
		{"ns", neighborSolicit(t, "fe80::1", "2001:db8::7"), true},
		{"udp", udpP1("10.1.0.1", "10.1.0.2", 53), false},
		{"udp6", udp(macP1, macP2, "2001:db8::1", "2001:db8::2").bytes(), false},
	} {
		if r := e.run("p1", c.frame); r.SlowPath != c.slow {
			t.Errorf("%s: SlowPath %v, want %v (%v/%v)", c.name, r.SlowPath, c.slow, r.Verdict, r.Reason)
		}
	}
}
