package sim

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

const (
	tcpP = packet.IPProtoTCP
	udpP = packet.IPProtoUDP
	icmp = packet.IPProtoICMPv4
	syn  = packet.TCPSyn
	ack  = packet.TCPAck
)

func cond(f func(c *model.Condition)) model.Condition {
	var c model.Condition
	f(&c)
	return c
}

// older returns a copy of frame one router hop later.
func older(frame []byte) []byte {
	b := append([]byte(nil), frame...)
	decode(b).DecTTL()
	return b
}

// The rewrites of a routed packet leaving by port, after the NAT actions.
func toWeb(nat string) string {
	return nat + fmt.Sprintf("set-eth-src %s; set-eth-dst %s; dec-ttl 1; output pw/tap-web", macIn, macWeb)
}
func toCli(nat string) string {
	return nat + fmt.Sprintf("set-eth-src %s; set-eth-dst %s; dec-ttl 1; output pc/tap-cli", macIn, macCli)
}
func toUplink(nat string) string {
	return nat + fmt.Sprintf("set-eth-src %s; set-eth-dst %s; dec-ttl 1; output rU/uplink0", macUp, macGWUp)
}

// oneBox is a Vyatta-style OneBox: one public address that forwards
// tcp/80 to the web server and masquerades the inside network.
func oneBox() []model.Object {
	pub := pfx("198.51.100.2/32")
	pre := chainOf("pre",
		mkNAT(model.RuleRevSNAT, model.Condition{Dst: pub}),
		mkNAT(model.RuleDNAT, model.Condition{Dst: pub, Proto: tcpP, DstPort: model.PortRange{Start: 80, End: 80}}, "10.0.0.5:80"))
	post := chainOf("post",
		mkNAT(model.RuleRevDNAT, model.Condition{}),
		mkNAT(model.RuleSNAT, model.Condition{Src: pfx("10.0.0.0/24"), OutPortIDs: []string{"rU"}}, "198.51.100.2:1024-65535"))
	return withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, pre, post)
}

func TestNATOneBox(t *testing.T) {
	e, tb := natEnv(t, oneBox())
	n := &nenv{e, tb, t}

	// Port forwarding: a client on the Internet reaches the web server.
	clientSyn := frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40000, 80, syn)
	r := n.walk("rU", clientSyn)
	n.expect(r, Forward, DropNone, toWeb("set-ip-dst 10.0.0.5; "))
	if es := r.StateEntries(); len(es) != 1 || es[0].Fwd.Type != flowstate.KeyFwdDNAT {
		t.Fatalf("state created: %v", es)
	}
	out := applyActs(t, clientSyn, r.Actions())
	checksumsOK(t, out)
	if p := decode(out); p.DstIP != ip("10.0.0.5") || p.DstPort != 80 || p.SrcIP != ip("203.0.113.9") {
		t.Fatalf("forwarded %s", p)
	}
	for _, k := range r.StateKeys() {
		if !r.HasTag(k.Tag()) {
			t.Errorf("state key %v read but not tagged", k)
		}
	}
	// Its reply leaves as the public address.
	r = n.walk("pw", frame(t, macWeb, macIn, "10.0.0.5", "203.0.113.9", tcpP, 80, 40000, syn|ack))
	n.expect(r, Forward, DropNone, toUplink("set-ip-src 198.51.100.2; "))
	if len(r.StateEntries()) != 0 {
		t.Fatalf("the reply created state: %v", r.StateEntries())
	}

	// Masquerade: an inside client's DNS query gets a public port.
	query := frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 5555, 53, 0)
	r = n.walk("pc", query)
	if len(r.StateEntries()) != 1 {
		t.Fatalf("masquerade created %v", r.StateEntries())
	}
	_, port := r.StateEntries()[0].Translated()
	if port < 1024 {
		t.Fatalf("translated to port %d, outside the target range", port)
	}
	n.expect(r, Forward, DropNone, toUplink(fmt.Sprintf("set-ip-src 198.51.100.2; set-l4-src %d; ", port)))
	sent := applyActs(t, query, r.Actions())
	checksumsOK(t, sent)
	// The same connection again (a retransmission before the flow is in):
	// the same binding, nothing new.
	r = n.walk("pc", query)
	n.expect(r, Forward, DropNone, toUplink(fmt.Sprintf("set-ip-src 198.51.100.2; set-l4-src %d; ", port)))
	if len(r.StateEntries()) != 0 {
		t.Fatal("a second binding for the same connection")
	}
	// The answer is translated back.
	answer := frame(t, macGWUp, macUp, "8.8.8.8", "198.51.100.2", udpP, 53, port, 0)
	r = n.walk("rU", answer)
	n.expect(r, Forward, DropNone, toCli("set-ip-dst 10.0.0.6; set-l4-dst 5555; "))
	checksumsOK(t, applyActs(t, answer, r.Actions()))

	// An ICMP error about the query comes back to the public address: the
	// outer destination and the quoted packet are translated, per packet.
	icmpErr := icmpErrorAbout(t, sent, "8.8.8.8")
	r = n.walk("rU", icmpErr)
	n.expect(r, Forward, DropNone, toCli("set-ip-dst 10.0.0.6; set-inner-src 10.0.0.6:5555; "))
	if !r.SlowPath {
		t.Error("reverse NAT of an ICMP error installed as a flow")
	}
	got := applyActs(t, icmpErr, r.Actions())
	checksumsOK(t, got)
	// What the client would get without NAT: an error quoting its query
	// as the upstream router received it (one hop older), one hop old.
	want := icmpErrorAbout(t, older(query), "8.8.8.8")
	wp := decode(want)
	wp.DecTTL()
	if !bytes.Equal(got, want) {
		t.Errorf("reverse-translated error\n got %x\nwant %x", got, want)
	}

	// The web server refuses the forwarded connection with an ICMP error:
	// reverse DNAT makes it come from the public address, about the
	// packet the client sent.
	webErr := icmpErrorAbout(t, applyActs(t, clientSyn, n.walk("rU", clientSyn).Actions()), "10.0.0.5")
	r = n.walk("pw", webErr)
	n.expect(r, Forward, DropNone, toUplink("set-ip-src 198.51.100.2; set-inner-dst 198.51.100.2:80; "))
	got = applyActs(t, webErr, r.Actions())
	want = icmpErrorAbout(t, older(clientSyn), "198.51.100.2")
	wp = decode(want)
	wp.DecTTL()
	if !bytes.Equal(got, want) {
		t.Errorf("reverse-DNAT error\n got %x\nwant %x", got, want)
	}

	// Ping through the masquerade translates the identifier both ways.
	r = n.walk("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", icmp, 0x77, 0, 0))
	_, id := r.StateEntries()[0].Translated()
	n.expect(r, Forward, DropNone, toUplink(fmt.Sprintf("set-ip-src 198.51.100.2; set-icmp-id %d; ", id)))
	reply := echoReply(t, macGWUp, macUp, "8.8.8.8", "198.51.100.2", id)
	r = n.walk("rU", reply)
	n.expect(r, Forward, DropNone, toCli("set-ip-dst 10.0.0.6; set-icmp-id 119; "))
	checksumsOK(t, applyActs(t, reply, r.Actions()))

	// Nothing was asked for on port 22: not translated, the router drops it.
	r = n.walk("rU", frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40001, 22, syn))
	n.expect(r, Drop, DropRouterLocal, "")
	if s := tb.Stats(); s.Entries != 3 || s.PortsInUse != 2 {
		t.Errorf("table: %+v", s)
	}
}

// Cisco's two-router NAT: PAT on the inside router, static 1:1 of the
// inside router's outside address on the edge.
func TestNATTwoRouters(t *testing.T) {
	macR1i, macR1o, macR2i := packet.MAC{2, 0, 0, 1, 0, 1}, packet.MAC{2, 0, 0, 1, 0, 2}, packet.MAC{2, 0, 0, 1, 0, 3}
	macVM := packet.MAC{2, 0, 0, 1, 0, 0x55}
	pb := bport("pbR", "b1")
	pb.PeerID = "r1i"
	up := rport("r2u", "r2", "198.51.100.10", "198.51.100.0/24", macUp, "")
	up.HostID, up.InterfaceName, up.TunnelKey = "h1", "uplink0", 900
	objs := []model.Object{
		&model.Host{Meta: meta("h1")},
		&model.Bridge{Meta: meta("b1"), State: model.StateUp},
		&model.Router{Meta: meta("r1"), Name: "inside", State: model.StateUp, InboundFilterID: "r1pre", OutboundFilterID: "r1post"},
		&model.Router{Meta: meta("r2"), Name: "edge", State: model.StateUp, InboundFilterID: "r2pre", OutboundFilterID: "r2post"},
		vmPort("pv", "b1", "h1", "tap-vm", 1), pb,
		rport("r1i", "r1", "10.1.0.1", "10.1.0.0/24", macR1i, "pbR"),
		rport("r1o", "r1", "172.16.0.2", "172.16.0.0/30", macR1o, "r2i"),
		rport("r2i", "r2", "172.16.0.1", "172.16.0.0/30", macR2i, "r1o"), up,
		route("r1-lan", "r1", "10.1.0.0/24", "", "r1i", 100),
		route("r1-link", "r1", "172.16.0.0/30", "", "r1o", 100),
		route("r1-default", "r1", "0.0.0.0/0", "172.16.0.1", "r1o", 100),
		route("r2-link", "r2", "172.16.0.0/30", "", "r2i", 100),
		route("r2-up", "r2", "198.51.100.0/24", "", "r2u", 100),
		route("r2-default", "r2", "0.0.0.0/0", "198.51.100.1", "r2u", 100),
	}
	objs = append(objs, chainOf("r1pre", mkNAT(model.RuleRevSNAT, model.Condition{Dst: pfx("172.16.0.2/32")}))...)
	objs = append(objs, chainOf("r1post", mkNAT(model.RuleSNAT, model.Condition{Src: pfx("10.1.0.0/24"), OutPortIDs: []string{"r1o"}}, "172.16.0.2:1024-65535"))...)
	objs = append(objs, chainOf("r2pre", mkNAT(model.RuleDNAT, model.Condition{Dst: pfx("198.51.100.20/32")}, "172.16.0.2"))...)
	objs = append(objs, chainOf("r2post", mkNAT(model.RuleSNAT, model.Condition{Src: pfx("172.16.0.2/32"), OutPortIDs: []string{"r2u"}}, "198.51.100.20"))...)
	tb := flowstate.New(flowstate.Config{})
	e := newEnv(t, objs, Config{FlowState: tb})
	e.arp[arpEntry{"r2", ip("198.51.100.1")}] = macGWUp
	e.arp[arpEntry{"r1", ip("10.1.0.5")}] = macVM
	e.learned("b1", 0, macVM, "pv")
	n := &nenv{e, tb, t}

	q := frame(t, macVM, macR1i, "10.1.0.5", "8.8.8.8", udpP, 5555, 53, 0)
	r := n.walk("pv", q)
	if len(r.StateEntries()) != 1 || r.StateEntries()[0].Fwd.Type != flowstate.KeyFwdSNAT {
		t.Fatalf("state: %v (only the inside PAT keeps any)", r.StateEntries())
	}
	_, port := r.StateEntries()[0].Translated()
	n.expect(r, Forward, DropNone, fmt.Sprintf("set-ip-src 198.51.100.20; set-l4-src %d; set-eth-src %s; set-eth-dst %s; dec-ttl 2; output r2u/uplink0", port, macUp, macGWUp))
	checksumsOK(t, applyActs(t, q, r.Actions()))

	a := frame(t, macGWUp, macUp, "8.8.8.8", "198.51.100.20", udpP, 53, port, 0)
	r = n.walk("r2u", a)
	n.expect(r, Forward, DropNone, fmt.Sprintf("set-ip-dst 10.1.0.5; set-l4-dst 5555; set-eth-src %s; set-eth-dst %s; dec-ttl 2; output pv/tap-vm", macR1i, macVM))
	checksumsOK(t, applyActs(t, a, r.Actions()))
}

// A floating IP: static 1:1 both ways, no state at all.
func floatingIP() []model.Object {
	fip := pfx("203.0.113.50/32")
	pre := chainOf("pre", mkNAT(model.RuleDNAT, model.Condition{Dst: fip}, "10.0.0.5"))
	post := chainOf("post", mkNAT(model.RuleSNAT, model.Condition{Src: pfx("10.0.0.5/32"), OutPortIDs: []string{"rU"}}, "203.0.113.50"))
	return withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, pre, post)
}

func TestNATFloatingIP(t *testing.T) {
	e, tb := natEnv(t, floatingIP())
	n := &nenv{e, tb, t}
	in := frame(t, macGWUp, macUp, "192.0.2.33", "203.0.113.50", tcpP, 41000, 22, syn)
	r := n.walk("rU", in)
	n.expect(r, Forward, DropNone, toWeb("set-ip-dst 10.0.0.5; "))
	checksumsOK(t, applyActs(t, in, r.Actions()))
	back := frame(t, macWeb, macIn, "10.0.0.5", "192.0.2.33", tcpP, 22, 41000, syn|ack)
	r = n.walk("pw", back)
	n.expect(r, Forward, DropNone, toUplink("set-ip-src 203.0.113.50; "))
	checksumsOK(t, applyActs(t, back, r.Actions()))
	// A ping to the floating IP keeps its echo identifier both ways.
	ping := frame(t, macGWUp, macUp, "192.0.2.33", "203.0.113.50", icmp, 0x77, 0, 0)
	r = n.walk("rU", ping)
	n.expect(r, Forward, DropNone, toWeb("set-ip-dst 10.0.0.5; "))
	checksumsOK(t, applyActs(t, ping, r.Actions()))
	pong := echoReply(t, macWeb, macIn, "10.0.0.5", "192.0.2.33", 0x77)
	r = n.walk("pw", pong)
	n.expect(r, Forward, DropNone, toUplink("set-ip-src 203.0.113.50; "))
	if tb.Len() != 0 {
		t.Fatalf("static NAT kept %d entries", tb.Len())
	}
	// An ICMP error about a packet the VM sent from its floating IP.
	out := frame(t, macWeb, macIn, "10.0.0.5", "192.0.2.33", udpP, 999, 53, 0)
	sent := applyActs(t, out, n.walk("pw", out).Actions())
	errFrame := icmpErrorAbout(t, sent, "192.0.2.33")
	r = n.walk("rU", errFrame)
	n.expect(r, Forward, DropNone, toWeb("set-ip-dst 10.0.0.5; set-inner-src 10.0.0.5:999; "))
	got := applyActs(t, errFrame, r.Actions())
	want := icmpErrorAbout(t, older(out), "192.0.2.33")
	decode(want).DecTTL()
	if !bytes.Equal(got, want) || !r.SlowPath {
		t.Errorf("error through a floating IP (slow path %v)\n got %x\nwant %x", r.SlowPath, got, want)
	}
}

// Hairpin: a VM reaches another through its floating IP. The router
// translates the destination to the web server and, since the reply
// would otherwise go straight back on the LAN, the source to its own
// inside address; the reply is translated back twice.
func TestNATHairpin(t *testing.T) {
	fip := pfx("203.0.113.50/32")
	pre := chainOf("pre",
		mkNAT(model.RuleRevSNAT, model.Condition{Dst: pfx("10.0.0.1/32")}),
		mkNAT(model.RuleDNAT, model.Condition{Dst: fip}, "10.0.0.5"))
	post := chainOf("post",
		mkNAT(model.RuleSNAT, model.Condition{Src: pfx("10.0.0.5/32")}, "203.0.113.50"),
		mkNAT(model.RuleSNAT, model.Condition{InPortIDs: []string{"rI"}, OutPortIDs: []string{"rI"}}, "10.0.0.1:1024-65535"))
	e, tb := natEnv(t, withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, pre, post))
	n := &nenv{e, tb, t}
	s := frame(t, macCli, macIn, "10.0.0.6", "203.0.113.50", tcpP, 43000, 80, syn)
	r := n.walk("pc", s)
	if len(r.StateEntries()) != 1 {
		t.Fatalf("state: %v", r.StateEntries())
	}
	_, port := r.StateEntries()[0].Translated()
	n.expect(r, Forward, DropNone, toWeb(fmt.Sprintf("set-ip-src 10.0.0.1; set-ip-dst 10.0.0.5; set-l4-src %d; ", port)))
	checksumsOK(t, applyActs(t, s, r.Actions()))
	rep := frame(t, macWeb, macIn, "10.0.0.5", "10.0.0.1", tcpP, 80, port, syn|ack)
	r = n.walk("pw", rep)
	n.expect(r, Forward, DropNone, toCli("set-ip-src 203.0.113.50; set-ip-dst 10.0.0.6; set-l4-dst 43000; "))
	got := decode(applyActs(t, rep, r.Actions()))
	if got.SrcIP != ip("203.0.113.50") || got.SrcPort != 80 || got.DstIP != ip("10.0.0.6") || got.DstPort != 43000 {
		t.Fatalf("hairpin reply arrives as %s", got)
	}
}

func TestNATBoundsAndStateless(t *testing.T) {
	// One port only: the second connection finds none.
	pre := chainOf("pre", mkNAT(model.RuleRevSNAT, model.Condition{}))
	post := chainOf("post", mkNAT(model.RuleSNAT, model.Condition{OutPortIDs: []string{"rU"}}, "198.51.100.2:2000"))
	objs := withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, pre, post)
	e, tb := natEnv(t, objs)
	n := &nenv{e, tb, t}
	r := n.walk("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 1, 53, 0))
	n.expect(r, Forward, DropNone, toUplink("set-ip-src 198.51.100.2; set-l4-src 2000; "))
	r = n.walk("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 2, 53, 0))
	n.expect(r, Drop, DropNATExhausted, "")
	if len(r.StateEntries()) != 0 || tb.Stats().PortsExhausted != 1 {
		t.Fatalf("exhaustion: %v, %+v", r.StateEntries(), tb.Stats())
	}

	// A full zone refuses the binding: the packet is dropped, counted,
	// and the reserved port returns to the pool.
	small := flowstate.New(flowstate.Config{MaxPerZone: 1})
	e2 := newEnv(t, withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, chainOf("pre", mkNAT(model.RuleRevSNAT, model.Condition{})),
		chainOf("post", mkNAT(model.RuleSNAT, model.Condition{OutPortIDs: []string{"rU"}}, "198.51.100.2:1024-65535"))), Config{FlowState: small})
	e2.arp[arpEntry{"edge", ip("198.51.100.1")}] = macGWUp
	n2 := &nenv{e2, small, t}
	n2.expect(n2.walk("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 1, 53, 0)), Forward, DropNone, "")
	r = n2.walk("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 2, 53, 0))
	n2.expect(r, Drop, DropFlowStateFull, "")
	if s := small.Stats(); s.RefusedZoneFull != 1 || s.PortsInUse != 1 {
		t.Fatalf("zone full: %+v", s)
	}

	// Without flow state, NAT rules are not applied: today's behaviour.
	e3 := newEnv(t, oneBox(), Config{})
	e3.arp[arpEntry{"edge", ip("198.51.100.1")}] = macGWUp
	r, tr := e3.trace("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 1, 53, 0))
	if r.Verdict != Forward || strings.Contains(nact(r.Actions()), "set-ip") || !strings.Contains(tr.String(), "no flow state configured") {
		t.Fatalf("stateless: %v %s\n%s", r.Verdict, nact(r.Actions()), tr)
	}
}

func TestNATTrace(t *testing.T) {
	e, tb := natEnv(t, oneBox())
	n := &nenv{e, tb, t}
	_, tr := n.trace("rU", frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40000, 80, syn))
	s := tr.String()
	for _, want := range []string{"nat", "no binding for rev-snat", "dnat 203.0.113.9:40000>198.51.100.2:80 -> 203.0.113.9:40000>10.0.0.5:80 (new binding)", "created fwd-dnat"} {
		if !strings.Contains(s, want) {
			t.Errorf("trace lacks %q:\n%s", want, s)
		}
	}
}
