package sim

import (
	"slices"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The NAT-address fixture: the edge router with the load balancer, an
// IPv6 uplink r6 (2001:db8:e::1/64, on h1), and a pre-routing chain with
// floating IPs, directly and behind a jump, plus rules that must not make
// the router answer.
var mac6 = packet.MAC{2, 0, 0, 0, 0x0e, 0x06}

func natAddrObjects(opts ...lbOpt) []model.Object {
	host := func(s string) model.Condition { return model.Condition{Dst: pfx(s)} }
	pre := chainOf("pre",
		mkNAT(model.RuleDNAT, host("198.51.100.20/32"), "10.0.0.5"),                     // a floating IP
		mkNAT(model.RuleDNAT, model.Condition{Dst: pfx("198.51.100.0/28")}, "10.0.0.6"), // not a single host
		mkNAT(model.RuleDNAT, model.Condition{Dst: pfx("198.51.100.30/32"), InvDst: true}, "10.0.0.6"),
		mkNAT(model.RuleDNAT, host("192.0.2.40/32"), "10.0.0.6"),        // on no port's network
		mkNAT(model.RuleDNAT, host("10.0.0.99/32"), "10.0.0.5:1-65535"), // an inside address: the lan bridge's static entry
		mkNAT(model.RuleDNAT, host("2001:db8:e::20/128"), "10.0.0.5"),
		&model.Rule{Type: model.RuleJump, JumpChainID: "fips"},
		mkNAT(model.RuleSNAT, host("198.51.100.50/32"), "10.0.0.6"), // snat: no
	)
	fips := chainOf("fips", mkNAT(model.RuleDNAT, host("198.51.100.21/32"), "10.0.0.6"))
	r6 := rport("r6", "edge", "2001:db8:e::1", "2001:db8:e::/64", mac6, "")
	r6.HostID, r6.InterfaceName, r6.TunnelKey = "h1", "uplink6", 901
	objs := withChains(lbObjects(), map[string]string{"pre": "pre"}, pre, fips)
	objs = append(objs, r6,
		&model.VIP{Meta: meta("vip-in"), LoadBalancerID: "lb", PoolID: "pool-web", Address: ip("10.0.0.100"), ProtocolPort: 80},
		// A DHCP host claiming the inside NAT address: the NAT wins.
		&model.DHCPSubnet{Meta: meta("dhcp-lan"), BridgeID: "lan", Subnet: pfx("10.0.0.0/24")},
		&model.DHCPHost{Meta: meta("dhcp-99"), DHCPSubnetID: "dhcp-lan", MAC: mm(macCli), Address: ip("10.0.0.99")})
	for _, o := range opts {
		objs = o(objs)
	}
	return objs
}

func nsRequest(t testing.TB, src packet.MAC, srcIP, target string) []byte {
	b := make([]byte, 128)
	n, err := packet.BuildNeighborSolicit(b, src, ip(srcIP), ip(target))
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func TestARPForNATAddresses(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    []lbOpt
		in      string
		frame   func(t testing.TB) []byte
		answer  packet.MAC // zero: not answered
		tag     uint64     // read by the answer
		trace   string
		reasonN DropReason // when not answered
	}{
		{"floating IP", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.20") },
			macUp, ObjectTag(model.RuleKind, "pre-1"), "translates", 0},
		{"floating IP behind a jump", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.21") },
			macUp, ObjectTag(model.RuleKind, "fips-1"), "translates", 0},
		{"VIP", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.10") },
			macUp, ObjectTag(model.VIPKind, "vip-web"), "translates", 0},
		{"own address still", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.2") },
			macUp, 0, "own address", 0},
		{"IPv6 floating IP", nil, "r6", func(t testing.TB) []byte { return nsRequest(t, macGWUp, "2001:db8:e::9", "2001:db8:e::20") },
			mac6, ObjectTag(model.RuleKind, "pre-6"), "advertise", 0},
		{"a prefix, not a host", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.3") },
			packet.MAC{}, 0, "", DropNotForRouter},
		{"inverted destination", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.30") },
			packet.MAC{}, 0, "", DropNotForRouter},
		{"snat target", nil, "rU", func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.50") },
			packet.MAC{}, 0, "", DropNotForRouter},
		{"VIP of a balancer that is down", []lbOpt{modify("lb", func(l *model.LoadBalancer) { l.State = model.StateDown })}, "rU",
			func(t testing.TB) []byte { return arpRequest(t, macGWUp, "198.51.100.1", "198.51.100.10") },
			packet.MAC{}, 0, "", DropNotForRouter},
		{"floating IP on the wrong port", nil, "r6", func(t testing.TB) []byte { return nsRequest(t, macGWUp, "2001:db8:e::9", "2001:db8:e::21") },
			packet.MAC{}, 0, "", DropNotForRouter},
		// Behind a bridge: its suppression answers from the static entry,
		// over the DHCP host claiming the same address.
		{"inside NAT address, suppressed on the bridge", nil, "pc", func(t testing.TB) []byte { return arpRequest(t, macCli, "10.0.0.6", "10.0.0.99") },
			macIn, ObjectTag(model.RuleKind, "pre-5"), "ARP/ND suppression", 0},
		{"inside VIP, suppressed on the bridge", nil, "pc", func(t testing.TB) []byte { return arpRequest(t, macCli, "10.0.0.6", "10.0.0.100") },
			macIn, ObjectTag(model.VIPKind, "vip-in"), "ARP/ND suppression", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := lbEnv(t, flowstate.New(flowstate.Config{}), natAddrObjects(c.opts...))
			r, tr := n.trace(c.in, c.frame(t))
			checkInvariants(t, r)
			if c.answer.IsZero() {
				if len(r.Generated()) != 0 || r.Verdict != Drop || r.Reason != c.reasonN {
					t.Fatalf("answered or wrong verdict %v/%v, %d generated\n%s", r.Verdict, r.Reason, len(r.Generated()), tr)
				}
				return
			}
			g := r.Generated()
			if r.Verdict != Consumed || len(g) != 1 {
				t.Fatalf("verdict %v/%v, %d generated\n%s", r.Verdict, r.Reason, len(g), tr)
			}
			p := decode(r.Frame(g[0]))
			switch {
			case p.L3 == packet.L3ARP:
				if p.ARPOp != packet.ARPReply || p.ARPSenderMAC != c.answer || p.EthSrc != c.answer {
					t.Errorf("ARP reply %s, want sender MAC %s", p, c.answer)
				}
			case p.IsNeighborAdvert():
				if p.NDTarget != decode(c.frame(t)).NDTarget || !p.NDHasLinkAddr || p.NDLinkAddr != c.answer {
					t.Errorf("neighbor advertisement %s, want target MAC %s", p, c.answer)
				}
			default:
				t.Errorf("generated %s", p)
			}
			if c.tag != 0 && !r.HasTag(c.tag) {
				t.Errorf("the answer lacks the tag of what put the address there")
			}
			if !strings.Contains(tr.String(), c.trace) {
				t.Errorf("trace does not say %q:\n%s", c.trace, tr)
			}
		})
	}
}

// TestNATAddressChangeTags: a floating IP's rule, a VIP, the balancer and
// the router invalidate the floods of the bridge whose suppression answers
// their addresses (the flows of requests flooded before it knew them).
func TestNATAddressChangeTags(t *testing.T) {
	topo, err := Build(natAddrObjects())
	if err != nil {
		t.Fatal(err)
	}
	lan := FloodTag("lan")
	for _, o := range []model.Object{
		&model.Rule{Meta: meta("pre-5"), ChainID: "pre", Type: model.RuleDNAT},
		&model.VIP{Meta: meta("vip-in"), LoadBalancerID: "lb"},
		&model.LoadBalancer{Meta: meta("lb")},
		&model.Router{Meta: meta("edge")},
	} {
		if !slices.Contains(topo.ChangeTags(o), lan) {
			t.Errorf("%s %s: ChangeTags lacks lan's flood tag", model.KindOf(o).Name, o.GetMeta().ID)
		}
	}
	if slices.Contains(topo.ChangeTags(&model.Rule{Meta: meta("pre-1"), ChainID: "pre", Type: model.RuleDNAT}), lan) {
		t.Error("an uplink floating IP invalidates lan's floods")
	}
}
