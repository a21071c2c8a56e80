package sim

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The NAT test topology, a small office behind one edge router:
//
//	web 10.0.0.5 (pw)  --+
//	cli 10.0.0.6 (pc)  --+-- lan --(pR|rI 10.0.0.1)-- edge --(rU 198.51.100.2, uplink on h1)-- gw 198.51.100.1
//	v6a 2001:db8:a::5 (pv6a) --+-- lan6 (a plain bridge, for IPv6 conntrack)
//	v6b 2001:db8:a::6 (pv6b) --+
//
// Routes are explicit (no implicit connected route). The tests attach
// chains to the router (pre- and post-routing) and to the VMs' ports.
var (
	macUp   = packet.MAC{2, 0, 0, 0, 0x0e, 0x01}
	macIn   = packet.MAC{2, 0, 0, 0, 0x0e, 0x02}
	macGWUp = packet.MAC{2, 0, 0, 0, 0x0f, 0x01}
	macWeb  = packet.MAC{2, 0, 0, 0, 0x0d, 0x05}
	macCli  = packet.MAC{2, 0, 0, 0, 0x0d, 0x06}
	macV6a  = packet.MAC{2, 0, 0, 0, 0x0d, 0x6a}
	macV6b  = packet.MAC{2, 0, 0, 0, 0x0d, 0x6b}
)

func edgeObjects() []model.Object {
	pR := bport("pR", "lan")
	pR.PeerID = "rI"
	rU := rport("rU", "edge", "198.51.100.2", "198.51.100.0/24", macUp, "")
	rU.HostID, rU.InterfaceName, rU.TunnelKey = "h1", "uplink0", 900
	return []model.Object{
		&model.Host{Meta: meta("h1")}, &model.Host{Meta: meta("h2")},
		&model.TunnelZone{Meta: meta("tz"), Type: model.TunnelVXLAN},
		&model.TunnelZoneMember{Meta: meta("tzm1"), TunnelZoneID: "tz", HostID: "h1", Address: ip("10.99.0.1")},
		&model.TunnelZoneMember{Meta: meta("tzm2"), TunnelZoneID: "tz", HostID: "h2", Address: ip("10.99.0.2")},
		&model.Bridge{Meta: meta("lan"), Name: "lan", State: model.StateUp},
		&model.Bridge{Meta: meta("lan6"), Name: "lan6", State: model.StateUp},
		&model.Router{Meta: meta("edge"), Name: "edge", State: model.StateUp},
		vmPort("pw", "lan", "h1", "tap-web", 11), vmPort("pc", "lan", "h1", "tap-cli", 12), pR,
		vmPort("pv6a", "lan6", "h1", "tap-v6a", 21), vmPort("pv6b", "lan6", "h2", "tap-v6b", 22),
		rport("rI", "edge", "10.0.0.1", "10.0.0.0/24", macIn, "pR"), rU,
		route("rt-lan", "edge", "10.0.0.0/24", "", "rI", 100),
		route("rt-up", "edge", "198.51.100.0/24", "", "rU", 100),
		route("rt-default", "edge", "0.0.0.0/0", "198.51.100.1", "rU", 100),
	}
}

// withChains attaches chains: pre/post to the edge router, port chains by
// "port:in" / "port:out" keys.
func withChains(objs []model.Object, attach map[string]string, chains ...[]model.Object) []model.Object {
	for _, o := range objs {
		switch x := o.(type) {
		case *model.Router:
			if x.ID == "edge" {
				x.InboundFilterID, x.OutboundFilterID = attach["pre"], attach["post"]
			}
		case *model.Port:
			x.InboundFilterID, x.OutboundFilterID = attach[x.ID+":in"], attach[x.ID+":out"]
		}
	}
	for _, c := range chains {
		objs = append(objs, c...)
	}
	return objs
}

// chainOf returns a chain and its rules, ids chain-1, chain-2, ...
func chainOf(id string, rules ...*model.Rule) []model.Object {
	c := &model.Chain{Meta: meta(id), Name: id}
	out := []model.Object{c}
	for i, r := range rules {
		r.ID, r.ChainID = fmt.Sprintf("%s-%d", id, i+1), id
		c.RuleIDs = append(c.RuleIDs, r.ID)
		out = append(out, r)
	}
	return out
}

func mkNAT(typ model.RuleType, cond model.Condition, targets ...string) *model.Rule {
	r := &model.Rule{Type: typ, Condition: cond, FlowAction: "accept"}
	for _, s := range targets {
		t, err := model.ParseNATTarget(s)
		if err != nil {
			panic(err)
		}
		r.Targets = append(r.Targets, t)
	}
	return r
}

func plain(typ model.RuleType, cond model.Condition) *model.Rule {
	return &model.Rule{Type: typ, Condition: cond}
}

// natEnv is the edge topology with a flow-state table and the neighbors
// learned, as after the first ARP exchanges.
func natEnv(t testing.TB, objs []model.Object) (*env, *flowstate.Table) {
	tb := flowstate.New(flowstate.Config{})
	e := newEnv(t, objs, Config{FlowState: tb})
	e.arp[arpEntry{"edge", ip("198.51.100.1")}] = macGWUp
	e.arp[arpEntry{"edge", ip("10.0.0.5")}] = macWeb
	e.arp[arpEntry{"edge", ip("10.0.0.6")}] = macCli
	e.learned("lan", 0, macWeb, "pw")
	e.learned("lan", 0, macCli, "pc")
	e.learned("lan6", 0, macV6a, "pv6a")
	e.learned("lan6", 0, macV6b, "pv6b")
	return e, tb
}

// frame builds a frame with correct checksums. proto 1/58 is an echo
// request with identifier sp; echo replies come from echoReply.
func frame(t testing.TB, src, dst packet.MAC, from, to string, proto uint8, sp, dp uint16, flags uint8) []byte {
	t.Helper()
	b := make([]byte, 256)
	n, err := packet.BuildProbe(b, &packet.Probe{EthSrc: src, EthDst: dst, Src: ip(from), Dst: ip(to), Proto: proto,
		SrcPort: sp, DstPort: dp, TCPFlags: flags, Length: 60})
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func echoReply(t testing.TB, src, dst packet.MAC, from, to string, id uint16) []byte {
	t.Helper()
	req := frame(t, dst, src, to, from, packet.IPProtoICMPv4, id, 0, 0)
	var p packet.Parsed
	p.Decode(req)
	b := make([]byte, 256)
	n, err := packet.BuildICMPv4EchoReply(b, &p)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// icmpErrorAbout builds the ICMPv4 port unreachable that router (from
// MAC rmac) sends about the frame sent, which it received.
func icmpErrorAbout(t testing.TB, sent []byte, router string) []byte {
	t.Helper()
	var p packet.Parsed
	p.Decode(sent)
	b := make([]byte, 1024)
	n, err := packet.BuildICMPv4Unreachable(b, &p, ip(router), packet.ICMPv4PortUnreachable)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// nact renders actions like acts does, with the NAT actions' arguments.
func nact(l []flow.Action) string {
	var s []string
	for _, a := range l {
		switch a.Type {
		case flow.ActSetIPSrc, flow.ActSetIPDst:
			s = append(s, fmt.Sprintf("%s %s", a.Type, a.Addr))
		case flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID:
			s = append(s, fmt.Sprintf("%s %d", a.Type, a.L4Port))
		case flow.ActInnerSrc, flow.ActInnerDst:
			s = append(s, fmt.Sprintf("%s %s", a.Type, netip.AddrPortFrom(a.Addr, a.L4Port)))
		default:
			s = append(s, act(a))
		}
	}
	return strings.Join(s, "; ")
}

// applyActs applies the actions to a copy of frame with the packet
// package's rewrites, the ones the userspace datapath uses, and returns
// the frame as it leaves by the first output.
func applyActs(t testing.TB, frame []byte, acts []flow.Action) []byte {
	t.Helper()
	b := append([]byte(nil), frame...)
	var p packet.Parsed
	p.Decode(b)
	for _, a := range acts {
		ok := true
		switch a.Type {
		case flow.ActSetEthSrc:
			ok = p.SetEthSrc(a.MAC)
		case flow.ActSetEthDst:
			ok = p.SetEthDst(a.MAC)
		case flow.ActDecTTL:
			for range a.Count {
				ok = ok && p.DecTTL()
			}
		case flow.ActSetIPSrc:
			ok = p.SetSrcIP(a.Addr)
		case flow.ActSetIPDst:
			ok = p.SetDstIP(a.Addr)
		case flow.ActSetL4Src:
			ok = p.SetSrcPort(a.L4Port)
		case flow.ActSetL4Dst:
			ok = p.SetDstPort(a.L4Port)
		case flow.ActSetICMPID:
			ok = p.SetICMPEchoID(a.L4Port)
		case flow.ActInnerSrc:
			ok = p.SetInnerSrc(a.Addr, a.L4Port)
		case flow.ActInnerDst:
			ok = p.SetInnerDst(a.Addr, a.L4Port)
		case flow.ActOutput, flow.ActEncap:
			return b
		default:
			t.Fatalf("applyActs: %s not handled", a.Type)
		}
		if !ok {
			t.Fatalf("applyActs: %s refused on %s", a.Type, p.String())
		}
	}
	t.Fatal("applyActs: no output")
	return nil
}

// checksumsOK verifies every checksum of an IPv4/IPv6 frame from scratch,
// and those of the packet an ICMP error quotes when the quote holds them.
func checksumsOK(t testing.TB, b []byte) {
	t.Helper()
	var p packet.Parsed
	p.Decode(b)
	if p.Drop != packet.DropNone {
		t.Fatalf("frame does not decode: %v", p.Drop)
	}
	ipb := b[p.L3Off:p.L3End]
	l4 := b[p.L4Off:p.L3End]
	if p.L3 == packet.L3IPv4 && packet.IPv4HeaderChecksum(ipb[:p.L4Off-p.L3Off]) != 0 {
		t.Errorf("IPv4 header checksum wrong")
	}
	switch {
	case p.L4 == packet.L4ICMPv4 && packet.Checksum(l4, 0) != 0:
		t.Errorf("ICMPv4 checksum wrong")
	case (p.L4 == packet.L4TCP || p.L4 == packet.L4UDP || p.L4 == packet.L4ICMPv6) && packet.L4Checksum(p.SrcIP, p.DstIP, p.IPProto, l4) != 0:
		t.Errorf("%v checksum wrong", p.L4)
	}
	if p.IsICMPError() && p.L3 == packet.L3IPv4 {
		q := b[p.ICMPInnerOff:p.L3End]
		ihl := int(q[0]&0xf) * 4
		if packet.IPv4HeaderChecksum(q[:ihl]) != 0 {
			t.Errorf("quoted IPv4 header checksum wrong")
		}
		tot := int(binary.BigEndian.Uint16(q[2:]))
		if q[9] == packet.IPProtoUDP && tot <= len(q) {
			src, dst := netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
			if packet.L4Checksum(src, dst, packet.IPProtoUDP, q[ihl:tot]) != 0 {
				t.Errorf("quoted UDP checksum wrong")
			}
		}
	}
}

func decode(b []byte) *packet.Parsed {
	var p packet.Parsed
	p.Decode(b)
	return &p
}

// nenv runs walks with a trace and checks the invariants of every result.
type nenv struct {
	*env
	tb *flowstate.Table
	t  *testing.T
}

func (n *nenv) walk(in string, fr []byte) *Result {
	n.t.Helper()
	r, tr := n.trace(in, fr)
	checkInvariants(n.t, r)
	if n.t.Failed() {
		n.t.Log(tr.String())
	}
	return r
}

func (n *nenv) expect(r *Result, v Verdict, reason DropReason, actions string) {
	n.t.Helper()
	if r.Verdict != v || r.Reason != reason {
		n.t.Errorf("verdict %v/%v, want %v/%v", r.Verdict, r.Reason, v, reason)
	}
	if actions != "" && nact(r.Actions()) != actions {
		n.t.Errorf("actions\n got %s\nwant %s", nact(r.Actions()), actions)
	}
}
