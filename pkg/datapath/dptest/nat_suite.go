//go:build linux

package dptest

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// NATCase is a NAT rewrite: a frame, the actions a NAT walk emits before
// its output (translations, then MAC rewrite and dec-ttl), and the frame
// that must come out, built from scratch.
type NATCase struct {
	Name     string
	In, Want []byte
	Acts     []flow.Action
	// SlowPath cases (the quote of an ICMP error) are executed only,
	// never installed: the quote is not in the flow key.
	SlowPath bool
}

// NATCases returns the rewrites every datapath must apply with
// incremental checksums that equal recomputed ones: SNAT and reverse SNAT
// of TCP, UDP and ICMP echo over IPv4 and IPv6, DNAT with a port, and the
// reverse translation of an ICMP error with its quote. src and dst are the
// MACs the frames carry; the actions rewrite them to rsrc and rdst.
func NATCases(src, dst, rsrc, rdst packet.MAC) []NATCase {
	a := netip.MustParseAddr
	priv4, pub4, srv4 := a("10.0.0.5"), a("203.0.113.1"), a("192.0.2.9")
	priv6, pub6, srv6 := a("fd00::5"), a("2001:db8:1::1"), a("2001:db8:2::9")
	l2 := func(acts ...flow.Action) []flow.Action {
		return append(acts, flow.Action{Type: flow.ActSetEthSrc, MAC: rsrc}, flow.Action{Type: flow.ActSetEthDst, MAC: rdst}, flow.Action{Type: flow.ActDecTTL, Count: 1})
	}
	ipSrc := func(x netip.Addr) flow.Action { return flow.Action{Type: flow.ActSetIPSrc, Addr: x} }
	ipDst := func(x netip.Addr) flow.Action { return flow.Action{Type: flow.ActSetIPDst, Addr: x} }
	l4Src := func(p uint16) flow.Action { return flow.Action{Type: flow.ActSetL4Src, L4Port: p} }
	l4Dst := func(p uint16) flow.Action { return flow.Action{Type: flow.ActSetL4Dst, L4Port: p} }
	echoID := func(p uint16) flow.Action { return flow.Action{Type: flow.ActSetICMPID, L4Port: p} }
	var cs []NATCase
	for _, fam := range []struct {
		v             string
		priv, pub, sv netip.Addr
		icmp          uint8
	}{{"4", priv4, pub4, srv4, packet.IPProtoICMPv4}, {"6", priv6, pub6, srv6, packet.IPProtoICMPv6}} {
		for _, proto := range []uint8{packet.IPProtoTCP, packet.IPProtoUDP} {
			name := map[uint8]string{packet.IPProtoTCP: "tcp", packet.IPProtoUDP: "udp"}[proto] + fam.v
			out := L4{SrcMAC: src, DstMAC: dst, Src: fam.priv, Dst: fam.sv, Proto: proto, SrcPort: 40000, DstPort: 443, TCPFlags: packet.TCPSyn | packet.TCPAck, Len: 200}
			xout := out
			xout.SrcMAC, xout.DstMAC, xout.Src, xout.SrcPort, xout.TTL = rsrc, rdst, fam.pub, 1077, 63
			back := L4{SrcMAC: src, DstMAC: dst, Src: fam.sv, Dst: fam.pub, Proto: proto, SrcPort: 443, DstPort: 1077, TCPFlags: packet.TCPAck, Len: 100}
			xback := back
			xback.SrcMAC, xback.DstMAC, xback.Dst, xback.DstPort, xback.TTL = rsrc, rdst, fam.priv, 40000, 63
			cs = append(cs,
				NATCase{Name: "snat-" + name, In: out.Frame(), Want: xout.Frame(), Acts: l2(ipSrc(fam.pub), l4Src(1077))},
				NATCase{Name: "rev-snat-" + name, In: back.Frame(), Want: xback.Frame(), Acts: l2(ipDst(fam.priv), l4Dst(40000))})
		}
		// Port forwarding: the destination and its port.
		in := L4{SrcMAC: src, DstMAC: dst, Src: fam.sv, Dst: fam.pub, Proto: packet.IPProtoTCP, SrcPort: 50000, DstPort: 80, TCPFlags: packet.TCPSyn}
		xin := in
		xin.SrcMAC, xin.DstMAC, xin.Dst, xin.DstPort, xin.TTL = rsrc, rdst, fam.priv, 8080, 63
		// Ping through a masquerade: address and identifier.
		ping := L4{SrcMAC: src, DstMAC: dst, Src: fam.priv, Dst: fam.sv, Proto: fam.icmp, SrcPort: 0x1234, Len: 84}
		xping := ping
		xping.SrcMAC, xping.DstMAC, xping.Src, xping.SrcPort, xping.TTL = rsrc, rdst, fam.pub, 2049, 63
		cs = append(cs,
			NATCase{Name: "dnat-port-tcp" + fam.v, In: in.Frame(), Want: xin.Frame(), Acts: l2(ipDst(fam.priv), l4Dst(8080))},
			NATCase{Name: "snat-echo" + fam.v, In: ping.Frame(), Want: xping.Frame(), Acts: l2(ipSrc(fam.pub), echoID(2049))})
		// An ICMP error about a translated UDP packet, translated back: the
		// outer destination and the quoted source (address and port).
		sent := WithTTL(L4{SrcMAC: rsrc, DstMAC: rdst, Src: fam.pub, Dst: fam.sv, Proto: packet.IPProtoUDP, SrcPort: 1077, DstPort: 53, Len: 120}.Frame(), 60)
		orig := WithTTL(L4{SrcMAC: rdst, DstMAC: rsrc, Src: fam.priv, Dst: fam.sv, Proto: packet.IPProtoUDP, SrcPort: 40000, DstPort: 53, Len: 120}.Frame(), 60)
		errIn := ICMPErrorAbout(sent, fam.sv, 64)
		copy(errIn[0:6], dst[:]) // as it reaches the datapath
		copy(errIn[6:12], src[:])
		want := ICMPErrorAbout(orig, fam.sv, 63)
		copy(want[0:6], rdst[:])
		copy(want[6:12], rsrc[:])
		cs = append(cs, NATCase{Name: "icmp-error-rev-snat" + fam.v, In: errIn, Want: want, SlowPath: true,
			Acts: l2(ipDst(fam.priv), flow.Action{Type: flow.ActInnerSrc, Addr: fam.priv, L4Port: 40000})})
	}
	return cs
}

// testNATRewrites: NAT rewrites applied in place, on the miss (Execute)
// and on the hit path, give frames identical to ones built with their
// checksums computed from scratch; quote rewrites are executed only.
func testNATRewrites(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "nat", datapath.FlowConfig{})
	vm1, vm2 := h.addVM("1", 1, 1), h.addVM("2", 2, 2)
	for _, c := range NATCases(macVM1, macRtr, macRtr2, macVM2) {
		acts := append(append([]flow.Action(nil), c.Acts...), output(vm2))
		if c.SlowPath {
			h.miss.setScript(func(u *datapath.Upcall) {
				if err := h.dp.Execute(u.InPort, u.Frame, acts); err != nil {
					t.Errorf("Execute: %v", err)
				}
			})
		} else {
			h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil, acts...))
		}
		vm1.send(c.In)
		h.miss.next(t, c.Name)
		vm2.expect(c.Name+" (miss)", c.Want)
		if c.SlowPath {
			continue
		}
		for i := range 3 {
			vm1.send(c.In)
			vm2.expect(fmt.Sprintf("%s (hit %d)", c.Name, i), c.Want)
		}
		h.miss.none(t, c.Name+" hits")
	}
	// A flow whose rewrite does not fit the frame (a port on ICMP) drops
	// and counts it rather than corrupt it.
	ping := L4{SrcMAC: macVM1, DstMAC: macRtr, Src: netip.MustParseAddr("10.9.0.1"), Dst: netip.MustParseAddr("10.9.0.2"), Proto: packet.IPProtoICMPv4, SrcPort: 9}.Frame()
	h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil, flow.Action{Type: flow.ActSetL4Src, L4Port: 1}, output(vm2)))
	vm1.send(ping)
	h.miss.next(t, "refused rewrite")
	vm2.expectNone("refused rewrite")
	eventually(t, "refused rewrite counted", func() (bool, string) {
		s := h.dp.Stats()
		return s.Drops[datapath.DropRewriteRefused] >= 1, dropsString(s)
	})
}
