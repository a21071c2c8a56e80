package sim

import (
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// TestNATPortRangeForwarding: a DNAT target with a base port maps a range
// of public ports one to one onto the server's (Neutron's port forwarding
// of internal_port_range 1300:1399 from external_port_range 2300:2399);
// ports outside the range are not translated.
func TestNATPortRangeForwarding(t *testing.T) {
	pub := pfx("198.51.100.2/32")
	tgt, err := model.ParseNATTarget("10.0.0.5:1300-1399/2300")
	if err != nil || tgt.Base != 2300 || tgt.String() != "10.0.0.5:1300-1399/2300" {
		t.Fatalf("parse: %+v %v", tgt, err)
	}
	pre := chainOf("pre", mkNAT(model.RuleDNAT, model.Condition{Dst: pub, Proto: tcpP, DstPort: model.PortRange{Start: 2300, End: 2399}}, tgt.String()))
	post := chainOf("post", mkNAT(model.RuleRevDNAT, model.Condition{}))
	e, tb := natEnv(t, withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, pre, post))
	n := &nenv{e, tb, t}
	for _, c := range []struct{ ext, internal uint16 }{{2300, 1300}, {2342, 1342}, {2399, 1399}} {
		r := n.walk("rU", frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40000+c.ext, c.ext, syn))
		out := applyActs(t, frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40000+c.ext, c.ext, syn), r.Actions())
		checksumsOK(t, out)
		if p := decode(out); p.DstIP != ip("10.0.0.5") || p.DstPort != c.internal {
			t.Errorf("public port %d forwarded to %s, want 10.0.0.5:%d", c.ext, p, c.internal)
		}
		// The reply leaves from the public port it was sent to.
		r = n.walk("pw", frame(t, macWeb, macIn, "10.0.0.5", "203.0.113.9", tcpP, c.internal, 40000+c.ext, syn|ack))
		back := applyActs(t, frame(t, macWeb, macIn, "10.0.0.5", "203.0.113.9", tcpP, c.internal, 40000+c.ext, syn|ack), r.Actions())
		if p := decode(back); p.SrcIP != ip("198.51.100.2") || p.SrcPort != c.ext {
			t.Errorf("reply of %d left as %s, want from 198.51.100.2:%d", c.internal, p, c.ext)
		}
	}
	r := n.walk("rU", frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, 40001, 2400, syn))
	n.expect(r, Drop, DropRouterLocal, "")

	for _, bad := range []string{"10.0.0.5/2300", "10.0.0.5:1300-1399/0", "10.0.0.5:1300-65535/2300"} {
		if _, err := model.ParseNATTarget(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	snat := mkNAT(model.RuleSNAT, model.Condition{}, "198.51.100.2:2300-2399/1300")
	if _, err := compileNAT(snat); err == nil {
		t.Error("a base port on an snat target compiled")
	}
}

// TestNATForwardedPortReplies: port forwarding as Neutron translates it
// (a dnat in pre-routing, a rev_dnat of the server's replies leaving by
// the uplink in post-routing): replies leave from the public port each
// client connected to, for every port of a range and for several clients
// connected at once to one port. An snat in post-routing (the translation
// before) picked any free port of the public range for a reply and, for a
// single port, refused every client after the first.
func TestNATForwardedPortReplies(t *testing.T) {
	pub := pfx("198.51.100.2/32")
	for _, c := range []struct {
		name, target        string
		extLo, extHi, intLo uint16
	}{
		{"range", "10.0.0.5:8080-8081/9080", 9080, 9081, 8080},
		{"one port", "10.0.0.5:22", 2222, 2222, 22},
	} {
		t.Run(c.name, func(t *testing.T) {
			pre := chainOf("pre", mkNAT(model.RuleDNAT, model.Condition{Dst: pub, Proto: tcpP,
				DstPort: model.PortRange{Start: c.extLo, End: c.extHi}}, c.target))
			post := chainOf("post", mkNAT(model.RuleRevDNAT, model.Condition{Src: pfx("10.0.0.5/32"), Proto: tcpP,
				SrcPort: model.PortRange{Start: c.intLo, End: c.intLo + c.extHi - c.extLo}, OutPortIDs: []string{"rU"}}))
			e, tb := natEnv(t, withChains(edgeObjects(), map[string]string{"pre": "pre", "post": "post"}, pre, post))
			n := &nenv{e, tb, t}
			// Every client's SYN first, then the replies: the connections
			// are open at once.
			type conn struct{ client, ext, internal uint16 }
			var conns []conn
			for ext := c.extLo; ext <= c.extHi; ext++ {
				for client := uint16(40000); client < 40004; client++ {
					conns = append(conns, conn{client, ext, c.intLo + ext - c.extLo})
				}
			}
			for _, k := range conns {
				in := frame(t, macGWUp, macUp, "203.0.113.9", "198.51.100.2", tcpP, k.client, k.ext, syn)
				if p := decode(applyActs(t, in, n.walk("rU", in).Actions())); p.DstIP != ip("10.0.0.5") || p.DstPort != k.internal {
					t.Fatalf("client %d → public port %d forwarded as %s, want to 10.0.0.5:%d", k.client, k.ext, p, k.internal)
				}
			}
			for _, k := range conns {
				back := frame(t, macWeb, macIn, "10.0.0.5", "203.0.113.9", tcpP, k.internal, k.client, syn|ack)
				if p := decode(applyActs(t, back, n.walk("pw", back).Actions())); p.SrcIP != ip("198.51.100.2") || p.SrcPort != k.ext {
					t.Errorf("reply to client %d of public port %d left as %s, want from 198.51.100.2:%d", k.client, k.ext, p, k.ext)
				}
			}
		})
	}
}
