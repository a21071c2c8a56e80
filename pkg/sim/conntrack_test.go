package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// securityGroup is what a Neutron security group compiles to on a VM's
// port: from the VM, invalid packets are dropped and the rest allowed;
// towards it, invalid packets are dropped, replies and related ICMP
// errors pass, new connections only to tcp/80.
func securityGroup(port string) ([]model.Object, map[string]string) {
	in := chainOf(port+"-in",
		plain(model.RuleDrop, model.Condition{CTState: "invalid"}),
		plain(model.RuleAccept, model.Condition{}))
	out := chainOf(port+"-out",
		plain(model.RuleDrop, model.Condition{CTState: "invalid"}),
		plain(model.RuleAccept, model.Condition{Flow: "return-flow"}),
		plain(model.RuleAccept, model.Condition{CTState: "new", Proto: tcpP, DstPort: model.PortRange{Start: 80, End: 80}}),
		plain(model.RuleDrop, model.Condition{}))
	objs := append(in, out...)
	return objs, map[string]string{port + ":in": port + "-in", port + ":out": port + "-out"}
}

func sgEnv(t *testing.T) *nenv {
	sgC, attC := securityGroup("pc")
	sgW, attW := securityGroup("pw")
	sg6, att6 := securityGroup("pv6b")
	attach := map[string]string{"pre": "pre", "post": "post"}
	for _, m := range []map[string]string{attC, attW, att6} {
		for k, v := range m {
			attach[k] = v
		}
	}
	// The OneBox chains give the inside clients a way out (masquerade).
	box := oneBox()
	var natChains []model.Object
	for _, o := range box {
		switch o.(type) {
		case *model.Chain, *model.Rule:
			natChains = append(natChains, o)
		}
	}
	objs := withChains(edgeObjects(), attach, natChains, sgC, sgW, sg6)
	e, tb := natEnv(t, objs)
	return &nenv{e, tb, t}
}

func TestConntrackSecurityGroup(t *testing.T) {
	n := sgEnv(t)
	lan := func(from, to string, sp, dp uint16, flags uint8) []byte {
		macs := map[string]packet.MAC{"10.0.0.5": macWeb, "10.0.0.6": macCli}
		return frame(t, macs[from], macs[to], from, to, tcpP, sp, dp, flags)
	}
	// A new connection to a port the group does not open is dropped.
	r := n.walk("pw", lan("10.0.0.5", "10.0.0.6", 33000, 22, syn))
	n.expect(r, Drop, DropRuleDrop, "")
	// A reply-looking segment with no connection is invalid: dropped, and
	// not as a cached flow (a SYN of the same tuple must not meet it).
	r = n.walk("pw", lan("10.0.0.5", "10.0.0.6", 80, 41000, syn|ack))
	n.expect(r, Drop, DropRuleDrop, "")
	if !r.SlowPath {
		t.Error("an invalid (flag-decided) drop would be cached")
	}
	// The client opens a connection to the web server's port 80.
	r = n.walk("pc", lan("10.0.0.6", "10.0.0.5", 41000, 80, syn))
	n.expect(r, Forward, DropNone, "output pw/tap-web")
	if es := r.StateEntries(); len(es) != 1 || es[0].Fwd.Type != flowstate.KeyConn {
		t.Fatalf("state: %v", es)
	}
	// Its reply is established and passes the client's group.
	r = n.walk("pw", lan("10.0.0.5", "10.0.0.6", 80, 41000, syn|ack))
	n.expect(r, Forward, DropNone, "output pc/tap-cli")
	if r.SlowPath || len(r.StateEntries()) != 0 {
		t.Errorf("established reply: slow path %v, created %v", r.SlowPath, r.StateEntries())
	}
	// The same reply after the connection timed out is invalid again:
	// return traffic passes only while the connection lives.
	n.sim.Simulate(&Input{InPortID: "pc", Pkt: decode(lan("10.0.0.6", "10.0.0.5", 41001, 80, syn)), Now: 1}, n.res)
	late := 1 + int64(flowstate.DefaultTimeouts().TCPSynSent) + 1
	var p packet.Parsed
	p.Decode(lan("10.0.0.5", "10.0.0.6", 80, 41001, syn|ack))
	n.sim.Simulate(&Input{InPortID: "pw", Pkt: &p, Now: late}, n.res)
	if n.res.Verdict != Drop || n.res.Reason != DropRuleDrop {
		t.Fatalf("reply after the connection expired: %v/%v", n.res.Verdict, n.res.Reason)
	}
}

func TestConntrackThroughNATAndRelatedICMP(t *testing.T) {
	n := sgEnv(t)
	// The client queries a server on the Internet: a connection (at the
	// lan) and a masquerade binding (at the router) are created.
	query := frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 5555, 53, 0)
	r := n.walk("pc", query)
	es := r.StateEntries()
	if len(es) != 2 {
		t.Fatalf("state: %v", es)
	}
	var port uint16
	for _, e := range es {
		if e.Fwd.Type == flowstate.KeyFwdSNAT {
			_, port = e.Translated()
		}
	}
	// The answer enters the uplink: at the router it is the reply of the
	// connection (whose reverse key is the translated tuple there).
	answer := frame(t, macGWUp, macUp, "8.8.8.8", "198.51.100.2", udpP, 53, port, 0)
	r = n.walk("rU", answer)
	n.expect(r, Forward, DropNone, toCli("set-ip-dst 10.0.0.6; set-l4-dst 5555; "))
	// An ICMP error about the query: related, it passes the group.
	sent := applyActs(t, query, n.walk("pc", query).Actions())
	r, tr := n.trace("rU", icmpErrorAbout(t, sent, "8.8.8.8"))
	n.expect(r, Forward, DropNone, toCli("set-ip-dst 10.0.0.6; set-inner-src 10.0.0.6:5555; "))
	if !r.SlowPath || !strings.Contains(tr.String(), "related") {
		t.Errorf("related error: slow path %v\n%s", r.SlowPath, tr)
	}
	// An error quoting a packet the client never sent is invalid.
	forged := frame(t, macCli, macIn, "10.0.0.6", "10.0.0.5", udpP, 7777, 53, 0)
	r = n.walk("pw", func() []byte {
		b := icmpErrorAbout(t, forged, "10.0.0.5")
		decode(b).SetEthDst(macCli)
		return b
	}())
	n.expect(r, Drop, DropRuleDrop, "")
	if !r.SlowPath {
		t.Error("invalid error cached as a drop flow")
	}
}

func TestConntrackIPv6(t *testing.T) {
	n := sgEnv(t)
	f := func(from, to string, sp, dp uint16, flags uint8) []byte {
		macs := map[string]packet.MAC{"2001:db8:a::5": macV6a, "2001:db8:a::6": macV6b}
		return frame(t, macs[from], macs[to], from, to, tcpP, sp, dp, flags)
	}
	// v6a may not connect to v6b's port 22...
	n.expect(n.walk("pv6a", f("2001:db8:a::5", "2001:db8:a::6", 50000, 22, syn)), Drop, DropRuleDrop, "")
	// ...but v6b's own connections' replies come back.
	r := n.walk("pv6b", f("2001:db8:a::6", "2001:db8:a::5", 50001, 443, syn))
	n.expect(r, Forward, DropNone, "output pv6a/tap-v6a")
	r = n.walk("pv6a", f("2001:db8:a::5", "2001:db8:a::6", 443, 50001, syn|ack))
	if r.Verdict != Forward || len(r.Actions()) != 1 || r.Actions()[0].Type != flow.ActEncap {
		t.Fatalf("IPv6 reply: %v %s", r.Verdict, nact(r.Actions()))
	}
}

// Expired or removed state hands back the tags of its keys, which the
// walks that used it carry: the agent invalidates exactly those flows.
func TestStateTagsInvalidate(t *testing.T) {
	n := sgEnv(t)
	r := n.walk("pc", frame(t, macCli, macIn, "10.0.0.6", "8.8.8.8", udpP, 5555, 53, 0))
	var port uint16
	for _, e := range r.StateEntries() {
		if e.Fwd.Type == flowstate.KeyFwdSNAT {
			_, port = e.Translated()
		}
	}
	reply := n.walk("rU", frame(t, macGWUp, macUp, "8.8.8.8", "198.51.100.2", udpP, 53, port, 0))
	replyTags := append([]uint64(nil), reply.Tags()...)
	tags, removed := n.tb.Sweep(int64(time.Hour), 0, nil)
	if removed != 2 {
		t.Fatalf("%d entries expired, want the connection and the binding", removed)
	}
	hit := 0
	for _, tag := range tags {
		for _, rt := range replyTags {
			if tag == rt {
				hit++
			}
		}
	}
	// The reply read the connection's reverse key and the binding's.
	if hit != 2 {
		t.Fatalf("the reply flow carries %d of the expired keys' tags, want 2", hit)
	}
}
