package sim

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// act renders an action compactly for comparisons.
func act(a flow.Action) string {
	switch a.Type {
	case flow.ActSetEthSrc, flow.ActSetEthDst:
		return fmt.Sprintf("%s %s", a.Type, a.MAC)
	case flow.ActPushVLAN:
		return fmt.Sprintf("push-vlan %d", a.VLAN)
	case flow.ActDecTTL:
		return fmt.Sprintf("dec-ttl %d", a.Count)
	case flow.ActOutput:
		return fmt.Sprintf("output %s/%s", a.PortID, a.Interface)
	case flow.ActEncap:
		return fmt.Sprintf("encap %s %s@%s key %d %s", a.PortID, a.HostID, a.Underlay, a.TunnelKey, a.Tunnel)
	}
	return a.Type.String()
}

func acts(l []flow.Action) string {
	var s []string
	for _, a := range l {
		s = append(s, act(a))
	}
	return strings.Join(s, "; ")
}

// genFrame decodes the i-th generated packet.
func genFrame(t *testing.T, r *Result, i int) (*packet.Parsed, []flow.Action) {
	t.Helper()
	if len(r.Generated()) <= i {
		t.Fatalf("want generated packet %d, have %d (GenFailed %d)", i, len(r.Generated()), r.GenFailed)
	}
	g := r.Generated()[i]
	var p packet.Parsed
	p.Decode(append([]byte(nil), r.Frame(g)...))
	if p.Drop != packet.DropNone {
		t.Fatalf("generated packet does not decode: %v", p.Drop)
	}
	return &p, r.GeneratedActions(g)
}

func TestScenarios(t *testing.T) {
	type check func(t *testing.T, e *env, r *Result)
	wantVerdict := func(v Verdict, reason DropReason) check {
		return func(t *testing.T, e *env, r *Result) {
			t.Helper()
			if r.Verdict != v || r.Reason != reason {
				t.Errorf("verdict %v/%v, want %v/%v", r.Verdict, r.Reason, v, reason)
			}
		}
	}
	wantActs := func(s string) check {
		return func(t *testing.T, e *env, r *Result) {
			t.Helper()
			if got := acts(r.Actions()); got != s {
				t.Errorf("actions\n got %s\nwant %s", got, s)
			}
		}
	}
	wantTags := func(tags ...uint64) check {
		return func(t *testing.T, e *env, r *Result) {
			t.Helper()
			for i, tag := range tags {
				if !r.HasTag(tag) {
					t.Errorf("tag %d (%#x) missing", i, tag)
				}
			}
		}
	}
	noTags := func(tags ...uint64) check {
		return func(t *testing.T, e *env, r *Result) {
			t.Helper()
			for i, tag := range tags {
				if r.HasTag(tag) {
					t.Errorf("tag %d (%#x) present, should not be", i, tag)
				}
			}
		}
	}
	wantMTU := func(m int) check {
		return func(t *testing.T, e *env, r *Result) {
			t.Helper()
			if r.MTU != m {
				t.Errorf("MTU %d, want %d", r.MTU, m)
			}
		}
	}
	// wantICMP checks one generated ICMP(v6) error or reply sent back out of inPort.
	wantICMP := func(typ, code uint8, from, to string, outPort string) check {
		return func(t *testing.T, e *env, r *Result) {
			t.Helper()
			p, a := genFrame(t, r, 0)
			if p.L4 != packet.L4ICMPv4 && p.L4 != packet.L4ICMPv6 || p.ICMPType != typ || p.ICMPCode != code {
				t.Errorf("generated %v, want ICMP type %d code %d", p, typ, code)
			}
			if p.SrcIP != ip(from) || p.DstIP != ip(to) {
				t.Errorf("generated %s > %s, want %s > %s", p.SrcIP, p.DstIP, from, to)
			}
			if len(a) != 1 || a[0].PortID != outPort {
				t.Errorf("generated packet goes to %s, want %s", acts(a), outPort)
			}
		}
	}
	noGen := func(t *testing.T, e *env, r *Result) {
		t.Helper()
		if n := len(r.Generated()); n != 0 {
			t.Errorf("%d packets generated, want none", n)
		}
	}

	big := func(p pkt, total int) pkt { p.payloadLen = total - 20 - 8; return p }

	cases := []struct {
		name   string
		cfg    Config
		setup  func(e *env)
		in     string
		frame  func(t *testing.T) []byte
		checks []check
	}{
		{
			name:  "same bridge, local unicast",
			setup: func(e *env) { e.learned("bridge-a", 0, macVM3, "pa4") },
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macVM3, "10.0.1.11", "10.0.1.13").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantActs("output pa4/trunk0"), wantMTU(1500),
				wantTags(ObjectTag(model.PortKind, "pa1"), ObjectTag(model.PortKind, "pa4"), ObjectTag(model.BridgeKind, "bridge-a"),
					MACEntryTag("bridge-a", 0, macVM3), MACEntryTag("bridge-a", 0, macVM1)),
				noTags(FloodTag("bridge-a"))},
		},
		{
			name:   "same bridge, remote unicast is encapsulated with the egress port's key",
			setup:  func(e *env) { e.learned("bridge-a", 0, macVM2, "pa2") },
			in:     "pa1",
			frame:  func(*testing.T) []byte { return udp(macVM1, macVM2, "10.0.1.11", "10.0.1.12").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantActs("encap pa2 h2@10.99.0.2 key 102 vxlan"), wantMTU(1450), wantTags(ObjectTag(model.TunnelZoneMemberKind, "tzm2"))},
		},
		{
			name:  "broadcast floods to the untagged ports, local and remote; the router drops its copy",
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, packet.BroadcastMAC, "10.0.1.11", "10.0.1.255").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantActs("encap pa2 h2@10.99.0.2 key 102 vxlan; output pa4/trunk0"),
				wantTags(FloodTag("bridge-a"), ObjectTag(model.RouterKind, "r0"))},
		},
		{
			name:  "unknown unicast floods and reads the missing MAC entry",
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macVM5, "10.0.1.11", "10.0.1.77").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantActs("encap pa2 h2@10.99.0.2 key 102 vxlan; output pa4/trunk0"),
				wantTags(FloodTag("bridge-a"), MACEntryTag("bridge-a", 0, macVM5))},
		},
		{
			name:  "flood from an access port respects the VLAN: tagged on trunks, untagged on access ports",
			in:    "pa6",
			frame: func(*testing.T) []byte { return udp(macV10, packet.BroadcastMAC, "10.0.10.6", "10.0.10.255").bytes() },
			checks: []check{wantVerdict(Forward, DropNone),
				wantActs("push-vlan 10; output pa1/tap-vm1; encap pa2 h2@10.99.0.2 key 102 vxlan; output pa4/trunk0; pop-vlan; encap pa5 h2@10.99.0.2 key 105 vxlan")},
		},
		{
			name:  "tagged frame from a trunk is switched on its VLAN and untagged to the access port",
			setup: func(e *env) { e.learned("bridge-a", 10, macV10, "pa6") },
			in:    "pa4",
			frame: func(*testing.T) []byte {
				p := udp(macVM3, macV10, "10.0.10.3", "10.0.10.6")
				p.vlan = 10
				return p.bytes()
			},
			checks: []check{wantVerdict(Forward, DropNone), wantActs("pop-vlan; output pa6/tap-v10b"), wantTags(MACEntryTag("bridge-a", 10, macV10))},
		},
		{
			name: "tagged frame on an access port is dropped",
			in:   "pa6",
			frame: func(*testing.T) []byte {
				p := udp(macV10, macVM1, "10.0.10.6", "10.0.10.1")
				p.vlan = 20
				return p.bytes()
			},
			checks: []check{wantVerdict(Drop, DropVLANMismatch)},
		},
		{
			name:  "routed across subnets: TTL decremented, MACs rewritten",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("10.0.2.11")}] = macVM4; e.learned("bridge-b", 0, macVM4, "pb1") },
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "10.0.2.11").bytes() },
			checks: []check{wantVerdict(Forward, DropNone),
				wantActs("set-eth-src 02:00:00:00:01:02; set-eth-dst 02:00:00:00:0b:01; dec-ttl 1; output pb1/tap-vm4"),
				wantTags(ObjectTag(model.PortKind, "pa1"), ObjectTag(model.PortKind, "paR"), ObjectTag(model.PortKind, "rA"),
					ObjectTag(model.RouterKind, "r0"), ObjectTag(model.PortKind, "rB"), ObjectTag(model.PortKind, "pbR"),
					ObjectTag(model.BridgeKind, "bridge-b"), ObjectTag(model.PortKind, "pb1"),
					ARPEntryTag("r0", ip("10.0.2.11")), MACEntryTag("bridge-b", 0, macVM4)),
				noTags(ObjectTag(model.RouteKind, "route-default"), FloodTag("bridge-b"))},
		},
		{
			name:  "routed to a VM on another host: encapsulated, overlay MTU",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("10.0.2.12")}] = macVM5; e.learned("bridge-b", 0, macVM5, "pb2") },
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "10.0.2.12").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantMTU(1450),
				wantActs("set-eth-src 02:00:00:00:01:02; set-eth-dst 02:00:00:00:0b:02; dec-ttl 1; encap pb2 h2@10.99.0.2 key 202 vxlan")},
		},
		{
			name:  "ARP suppression answers for the router port on the bridge",
			in:    "pa1",
			frame: func(t *testing.T) []byte { return arpRequest(t, macVM1, "10.0.1.11", "10.0.1.1") },
			checks: []check{wantVerdict(Consumed, DropNone), wantTags(ObjectTag(model.PortKind, "rA")),
				func(t *testing.T, e *env, r *Result) {
					p, a := genFrame(t, r, 0)
					if !p.IsARPReply() || p.ARPSenderMAC != macRA || p.ARPSenderIP != ip("10.0.1.1") || p.EthDst != macVM1 {
						t.Errorf("reply %v", p)
					}
					if acts(a) != "output pa1/tap-vm1" {
						t.Errorf("reply goes %s", acts(a))
					}
				}},
		},
		{
			name:  "ARP suppression answers for a DHCP host",
			in:    "pa1",
			frame: func(t *testing.T) []byte { return arpRequest(t, macVM1, "10.0.1.11", "10.0.1.12") },
			checks: []check{wantVerdict(Consumed, DropNone), wantTags(ObjectTag(model.DHCPHostKind, "dhcp-vm2")),
				func(t *testing.T, e *env, r *Result) {
					if p, _ := genFrame(t, r, 0); p.ARPSenderMAC != macVM2 {
						t.Errorf("reply says %s", p.ARPSenderMAC)
					}
				}},
		},
		{
			name:   "ARP for an unknown address floods",
			in:     "pa1",
			frame:  func(t *testing.T) []byte { return arpRequest(t, macVM1, "10.0.1.11", "10.0.1.99") },
			checks: []check{wantVerdict(Forward, DropNone), noGen, wantTags(FloodTag("bridge-a"))},
		},
		{
			name:  "router answers ARP on an exterior port and learns the sender",
			in:    "rU",
			frame: func(t *testing.T) []byte { return arpRequest(t, macGW, "192.0.2.254", "192.0.2.1") },
			checks: []check{wantVerdict(Consumed, DropNone),
				func(t *testing.T, e *env, r *Result) {
					if r.Learned != (Neighbor{"r0", ip("192.0.2.254"), macGW}) {
						t.Errorf("learned %+v", r.Learned)
					}
					p, a := genFrame(t, r, 0)
					if !p.IsARPReply() || p.ARPSenderMAC != macRU || acts(a) != "output rU/uplink0" {
						t.Errorf("reply %v via %s", p, acts(a))
					}
				}},
		},
		{
			name:  "unknown next hop: NeedARP with the ARP request flooded on the next bridge",
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "10.0.2.99").bytes() },
			checks: []check{wantVerdict(NeedARP, DropNone), wantActs(""), wantTags(ARPEntryTag("r0", ip("10.0.2.99"))),
				func(t *testing.T, e *env, r *Result) {
					if r.NextHop != ip("10.0.2.99") || r.NextHopRouter != "r0" {
						t.Errorf("next hop %s on %s", r.NextHop, r.NextHopRouter)
					}
					p, a := genFrame(t, r, 0)
					if !p.IsARPRequest() || p.ARPSenderIP != ip("10.0.2.1") || p.ARPSenderMAC != macRB || p.ARPTargetIP != ip("10.0.2.99") {
						t.Errorf("request %v", p)
					}
					if got := acts(a); got != "output pb1/tap-vm4; encap pb2 h2@10.99.0.2 key 202 vxlan" {
						t.Errorf("request goes: %s", got)
					}
				}},
		},
		{
			name: "the answer to the router's ARP request is consumed and learned",
			in:   "pb1",
			frame: func(t *testing.T) []byte {
				b := make([]byte, 64)
				var req packet.Parsed
				req.Decode(arpRequest(t, macRB, "10.0.2.1", "10.0.2.99"))
				n, err := packet.BuildARPReply(b, &req, macVM4)
				if err != nil {
					t.Fatal(err)
				}
				return b[:n]
			},
			checks: []check{wantVerdict(Consumed, DropNone), func(t *testing.T, e *env, r *Result) {
				if r.Learned != (Neighbor{"r0", ip("10.0.2.99"), macVM4}) {
					t.Errorf("learned %+v", r.Learned)
				}
			}},
		},
		{
			name: "echo request to the router's port address",
			in:   "pa1",
			frame: func(*testing.T) []byte {
				p := udp(macVM1, macRA, "10.0.1.11", "10.0.1.1")
				p.proto = packet.IPProtoICMPv4
				return p.bytes()
			},
			checks: []check{wantVerdict(Consumed, DropNone), wantICMP(packet.ICMPv4EchoReply, 0, "10.0.1.1", "10.0.1.11", "pa1")},
		},
		{
			name: "echo request to another of the router's addresses",
			in:   "pa1",
			frame: func(*testing.T) []byte {
				p := udp(macVM1, macRA, "10.0.1.11", "10.0.2.1")
				p.proto = packet.IPProtoICMPv4
				return p.bytes()
			},
			checks: []check{wantVerdict(Consumed, DropNone), wantICMP(packet.ICMPv4EchoReply, 0, "10.0.2.1", "10.0.1.11", "pa1")},
		},
		{
			name:   "directed broadcast is not routed and draws no error",
			in:     "pa1",
			frame:  func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "10.0.2.255").bytes() },
			checks: []check{wantVerdict(Drop, DropUnsupported), noGen},
		},
		{
			name:   "UDP to the router's address is dropped",
			in:     "pa1",
			frame:  func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "10.0.1.1").bytes() },
			checks: []check{wantVerdict(Drop, DropRouterLocal), noGen},
		},
		{
			name: "IPv6 echo request to the router",
			in:   "pc1",
			frame: func(*testing.T) []byte {
				p := udp(macVM6, macRC, "2001:db8:c::6", "2001:db8:c::1")
				p.proto = packet.IPProtoICMPv6
				return p.bytes()
			},
			checks: []check{wantVerdict(Consumed, DropNone), wantICMP(packet.ICMPv6EchoReply, 0, "2001:db8:c::1", "2001:db8:c::6", "pc1")},
		},
		{
			name:  "TTL expiry: time exceeded from the ingress port's address",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("10.0.2.11")}] = macVM4 },
			in:    "pa1",
			frame: func(*testing.T) []byte {
				p := udp(macVM1, macRA, "10.0.1.11", "10.0.2.11")
				p.ttl = 1
				return p.bytes()
			},
			checks: []check{wantVerdict(Drop, DropTTLExpired), wantActs(""), wantICMP(packet.ICMPv4TimeExceeded, 0, "10.0.1.1", "10.0.1.11", "pa1")},
		},
		{
			name:  "no route: ICMPv6 unreachable, no-route tag",
			in:    "pc1",
			frame: func(*testing.T) []byte { return udp(macVM6, macRC, "2001:db8:c::6", "2001:db8:99::1").bytes() },
			checks: []check{wantVerdict(Drop, DropNoRoute), wantTags(NoRouteTag("r0")),
				wantICMP(packet.ICMPv6Unreachable, packet.ICMPv6NoRoute, "2001:db8:c::1", "2001:db8:c::6", "pc1")},
		},
		{
			name:   "blackhole route drops silently",
			in:     "pa1",
			frame:  func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "198.51.100.5").bytes() },
			checks: []check{wantVerdict(Drop, DropBlackhole), noGen, wantTags(ObjectTag(model.RouteKind, "route-bh"))},
		},
		{
			name:  "reject route answers admin prohibited",
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "203.0.113.5").bytes() },
			checks: []check{wantVerdict(Drop, DropRejectRoute), wantTags(ObjectTag(model.RouteKind, "route-rej")),
				wantICMP(packet.ICMPv4Unreachable, packet.ICMPv4AdminProhibited, "10.0.1.1", "10.0.1.11", "pa1")},
		},
		{
			name:  "longest prefix wins over the ECMP /16",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("192.0.2.20")}] = macGW },
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "100.64.5.7").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantTags(ObjectTag(model.RouteKind, "route-lpm"), ARPEntryTag("r0", ip("192.0.2.20"))),
				noTags(ObjectTag(model.RouteKind, "route-ecmp1"), ObjectTag(model.RouteKind, "route-default")),
				wantActs("set-eth-src 02:00:00:00:01:0f; set-eth-dst 02:00:00:00:ee:ee; dec-ttl 1; output rU/uplink0")},
		},
		{
			name:  "default route to the uplink",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("192.0.2.254")}] = macGW },
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "8.8.8.8").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantTags(ObjectTag(model.RouteKind, "route-default")),
				wantActs("set-eth-src 02:00:00:00:01:0f; set-eth-dst 02:00:00:00:ee:ee; dec-ttl 1; output rU/uplink0")},
		},
		{
			name:  "IPv6 routed to the uplink with the neighbor known",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("2001:db8:d::fe")}] = macGW6 },
			in:    "pc1",
			frame: func(*testing.T) []byte { return udp(macVM6, macRC, "2001:db8:c::6", "2001:db8:f::1").bytes() },
			checks: []check{wantVerdict(Forward, DropNone), wantTags(ObjectTag(model.RouteKind, "route-v6")),
				wantActs("set-eth-src 02:00:00:00:01:0d; set-eth-dst 02:00:00:00:ee:66; dec-ttl 1; output rD/uplink6")},
		},
		{
			name:  "IPv6 next hop unknown: neighbor solicitation out of the uplink",
			in:    "pc1",
			frame: func(*testing.T) []byte { return udp(macVM6, macRC, "2001:db8:c::6", "2001:db8:f::1").bytes() },
			checks: []check{wantVerdict(NeedARP, DropNone), func(t *testing.T, e *env, r *Result) {
				p, a := genFrame(t, r, 0)
				if !p.IsNeighborSolicit() || p.NDTarget != ip("2001:db8:d::fe") || p.SrcIP != ip("2001:db8:d::1") || acts(a) != "output rD/uplink6" {
					t.Errorf("solicitation %v via %s", p, acts(a))
				}
			}},
		},
		{
			name: "IPv6 neighbor solicitation for the router is answered on the bridge",
			in:   "pc1",
			frame: func(t *testing.T) []byte {
				b := make([]byte, 128)
				n, err := packet.BuildNeighborSolicit(b, macVM6, ip("2001:db8:c::6"), ip("2001:db8:c::1"))
				if err != nil {
					t.Fatal(err)
				}
				return b[:n]
			},
			checks: []check{wantVerdict(Consumed, DropNone), func(t *testing.T, e *env, r *Result) {
				p, a := genFrame(t, r, 0)
				if !p.IsNeighborAdvert() || p.NDTarget != ip("2001:db8:c::1") || p.NDLinkAddr != macRC || p.NDFlags&packet.NDRouter == 0 || acts(a) != "output pc1/tap-vm6" {
					t.Errorf("advertisement %v via %s", p, acts(a))
				}
			}},
		},
		{
			name: "IPv6 neighbor advertisement to the router is learned",
			in:   "rD",
			frame: func(t *testing.T) []byte {
				var ns packet.Parsed
				b := make([]byte, 128)
				n, _ := packet.BuildNeighborSolicit(b, macRD, ip("2001:db8:d::1"), ip("2001:db8:d::fe"))
				ns.Decode(b[:n])
				out := make([]byte, 128)
				n, err := packet.BuildNeighborAdvert(out, &ns, macGW6, true)
				if err != nil {
					t.Fatal(err)
				}
				return out[:n]
			},
			checks: []check{wantVerdict(Consumed, DropNone), func(t *testing.T, e *env, r *Result) {
				if r.Learned != (Neighbor{"r0", ip("2001:db8:d::fe"), macGW6}) {
					t.Errorf("learned %+v", r.Learned)
				}
			}},
		},
		{
			name:  "IPv6 larger than the egress MTU: packet too big",
			cfg:   Config{PortMTU: map[string]int{"rD": 1280}},
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("2001:db8:d::fe")}] = macGW6 },
			in:    "pc1",
			frame: func(*testing.T) []byte {
				return big(udp(macVM6, macRC, "2001:db8:c::6", "2001:db8:f::1"), 1300).bytes()
			},
			checks: []check{wantVerdict(Drop, DropFragNeeded), wantICMP(packet.ICMPv6PacketTooBig, 0, "2001:db8:c::1", "2001:db8:c::6", "pc1"),
				func(t *testing.T, e *env, r *Result) {
					p, _ := genFrame(t, r, 0)
					if mtu := binary.BigEndian.Uint32(p.Frame()[p.L4Off+4:]); mtu != 1280 {
						t.Errorf("MTU in packet too big %d", mtu)
					}
				}},
		},
		{
			name:  "IPv4 with DF larger than the egress MTU: frag needed with the MTU",
			cfg:   Config{PortMTU: map[string]int{"rU": 1400}},
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("192.0.2.254")}] = macGW },
			in:    "pa1",
			frame: func(*testing.T) []byte {
				p := big(udp(macVM1, macRA, "10.0.1.11", "8.8.8.8"), 1450)
				p.df = true
				return p.bytes()
			},
			checks: []check{wantVerdict(Drop, DropFragNeeded), wantICMP(packet.ICMPv4Unreachable, packet.ICMPv4FragNeeded, "10.0.1.1", "10.0.1.11", "pa1"),
				func(t *testing.T, e *env, r *Result) {
					p, _ := genFrame(t, r, 0)
					if mtu := binary.BigEndian.Uint16(p.Frame()[p.L4Off+6:]); mtu != 1400 {
						t.Errorf("MTU in frag-needed %d", mtu)
					}
				}},
		},
		{
			name:   "IPv4 without DF larger than the egress MTU: dropped and counted, not fragmented",
			cfg:    Config{PortMTU: map[string]int{"rU": 1400}},
			setup:  func(e *env) { e.arp[arpEntry{"r0", ip("192.0.2.254")}] = macGW },
			in:     "pa1",
			frame:  func(*testing.T) []byte { return big(udp(macVM1, macRA, "10.0.1.11", "8.8.8.8"), 1450).bytes() },
			checks: []check{wantVerdict(Drop, DropFragmentationUnsupported), noGen},
		},
		{
			name:  "routed packet too big for the overlay: frag needed from the router with the overlay MTU",
			setup: func(e *env) { e.arp[arpEntry{"r0", ip("10.0.2.12")}] = macVM5; e.learned("bridge-b", 0, macVM5, "pb2") },
			in:    "pa1",
			frame: func(*testing.T) []byte {
				p := big(udp(macVM1, macRA, "10.0.1.11", "10.0.2.12"), 1480)
				p.df = true
				return p.bytes()
			},
			checks: []check{wantVerdict(Drop, DropFragNeeded), wantActs(""), wantICMP(packet.ICMPv4Unreachable, packet.ICMPv4FragNeeded, "10.0.1.1", "10.0.1.11", "pa1"),
				func(t *testing.T, e *env, r *Result) {
					p, _ := genFrame(t, r, 0)
					if mtu := binary.BigEndian.Uint16(p.Frame()[p.L4Off+6:]); mtu != 1450 {
						t.Errorf("MTU in frag-needed %d", mtu)
					}
				}},
		},
		{
			name:  "bridged packet too big for the overlay: dropped as mtu-exceeded",
			setup: func(e *env) { e.learned("bridge-a", 0, macVM2, "pa2") },
			in:    "pa1",
			frame: func(*testing.T) []byte {
				p := big(udp(macVM1, macVM2, "10.0.1.11", "10.0.1.12"), 1480)
				p.df = true
				return p.bytes()
			},
			checks: []check{wantVerdict(Drop, DropMTUExceeded), noGen},
		},
		{
			name:  "two routers routing to each other: dropped as a loop",
			in:    "pa1",
			frame: func(*testing.T) []byte { return udp(macVM1, macRA, "10.0.1.11", "172.16.1.1").bytes() },
			checks: []check{wantVerdict(Drop, DropLoop), wantActs(""),
				wantTags(ObjectTag(model.RouteKind, "route-loop0"), ObjectTag(model.RouteKind, "route-loop1"), ObjectTag(model.RouterKind, "r1"))},
		},
		{
			name:   "malformed frame",
			in:     "pa1",
			frame:  func(*testing.T) []byte { return []byte{1, 2, 3} },
			checks: []check{wantVerdict(Drop, DropMalformed)},
		},
		{
			name:   "unknown in-port",
			in:     "nope",
			frame:  func(*testing.T) []byte { return udp(macVM1, macVM3, "10.0.1.11", "10.0.1.13").bytes() },
			checks: []check{wantVerdict(Drop, DropUnknownPort)},
		},
		{
			name:  "frame to a router port MAC from the wrong bridge port is not learned as the router's",
			in:    "pa2",
			frame: func(*testing.T) []byte { return udp(macRA, macVM1, "10.0.1.1", "10.0.1.11").bytes() },
			checks: []check{func(t *testing.T, e *env, r *Result) {
				if _, ok := e.macs.Lookup("bridge-a", 0, macRA); ok {
					t.Error("a router port's MAC was learned on a VM port")
				}
			}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, baseObjects(), c.cfg)
			if c.setup != nil {
				c.setup(e)
			}
			r, tr := e.trace(c.in, c.frame(t))
			for _, ch := range c.checks {
				ch(t, e, r)
			}
			if t.Failed() {
				t.Logf("trace:\n%s", tr)
			}
			// The fast path must reach the same result as the traced one.
			r2 := NewResult()
			var p packet.Parsed
			p.Decode(c.frame(t))
			e2 := newEnv(t, baseObjects(), c.cfg)
			if c.setup != nil {
				c.setup(e2)
			}
			e2.sim.Simulate(&Input{InPortID: c.in, Pkt: &p}, r2)
			if r2.Verdict != r.Verdict || r2.Reason != r.Reason || acts(r2.Actions()) != acts(r.Actions()) {
				t.Errorf("untraced walk differs: %v/%v %s", r2.Verdict, r2.Reason, acts(r2.Actions()))
			}
		})
	}
}

// A host with no tunnel-zone membership (the agent's mirror leaves out
// those of dead and revoked hosts) is not tunnelled to: the walk drops,
// and the drop carries the host's tag, so that it is simulated again when
// the host comes back.
func TestUnreachableHost(t *testing.T) {
	var objs []model.Object
	for _, o := range baseObjects() {
		if m, ok := o.(*model.TunnelZoneMember); !ok || m.HostID != "h2" {
			objs = append(objs, o)
		}
	}
	e := newEnv(t, objs, Config{})
	e.learned("bridge-a", 0, macVM2, "pa2")
	r := e.run("pa1", udp(macVM1, macVM2, "10.0.1.11", "10.0.1.12").bytes())
	if r.Verdict != Drop || r.Reason != DropNoTunnel {
		t.Fatalf("to a port on an unreachable host: %v/%v, want a drop for no tunnel", r.Verdict, r.Reason)
	}
	if !r.HasTag(ObjectTag(model.HostKind, "h2")) {
		t.Error("the drop does not carry the host's tag")
	}
	if len(r.Actions()) != 0 {
		t.Errorf("actions %s, want none", acts(r.Actions()))
	}
}
