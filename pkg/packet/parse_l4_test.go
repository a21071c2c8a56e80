package packet

import (
	"bytes"
	"testing"
)

func TestDecodeICMP(t *testing.T) {
	p := decode(echo4Frame())
	wantLayers(t, p, DropNone, L3IPv4, L4ICMPv4)
	eq(t, "type", p.ICMPType, ICMPv4EchoRequest)
	eq(t, "id", p.ICMPEchoID, 0x1234)
	eq(t, "seq", p.ICMPEchoSeq, 7)
	eq(t, "IsEchoRequest", p.IsEchoRequest(), true)
	eq(t, "IsICMPError", p.IsICMPError(), false)

	orig := tcp4Frame()[14:]
	quoted := orig[:28]
	m := icmp4H(ICMPv4Unreachable, ICMPv4PortUnreachable, 0, quoted)
	f := cat(ethH(macA, macR, EtherTypeIPv4), ip4H("10.0.0.254", c4, IPProtoICMPv4, len(m)), m)
	p = decode(f)
	wantLayers(t, p, DropNone, L3IPv4, L4ICMPv4)
	eq(t, "IsICMPError", p.IsICMPError(), true)
	eq(t, "ICMPInnerOff", p.ICMPInnerOff, 14+20+8)
	eq(t, "inner", string(f[p.ICMPInnerOff:p.ICMPInnerOff+20]), string(orig[:20]))

	m = icmp4H(ICMPv4TimeExceeded, 0, 0, quoted[:12])
	p = decode(cat(ethH(macA, macR, EtherTypeIPv4), ip4H("10.0.0.254", c4, IPProtoICMPv4, len(m)), m))
	wantLayers(t, p, DropBadICMP, L3IPv4, L4None)
	m = icmp4H(ICMPv4Unreachable, 0, 0, tcp6Frame()[14:60])
	p = decode(cat(ethH(macA, macR, EtherTypeIPv4), ip4H("10.0.0.254", c4, IPProtoICMPv4, len(m)), m))
	wantLayers(t, p, DropBadICMP, L3IPv4, L4None)
	p = decode(cat(ethH(macA, macR, EtherTypeIPv4), ip4H("10.0.0.254", c4, IPProtoICMPv4, 4), []byte{8, 0, 0, 0}))
	wantLayers(t, p, DropBadL4Header, L3IPv4, L4None)

	p = decode(echo6Frame())
	wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
	eq(t, "id", p.ICMPEchoID, 0x4321)
	eq(t, "seq", p.ICMPEchoSeq, 9)

	orig6 := tcp6Frame()[14:]
	m = icmp6H(s6, c6, ICMPv6PacketTooBig, 0, 1400, orig6)
	f = cat(ethH(macA, macR, EtherTypeIPv6), ip6H(s6, c6, IPProtoICMPv6, len(m)), m)
	p = decode(f)
	wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
	eq(t, "IsICMPError", p.IsICMPError(), true)
	eq(t, "ICMPInnerOff", p.ICMPInnerOff, 14+40+8)
	m = icmp6H(s6, c6, ICMPv6TimeExceeded, 0, 0, orig6[:39])
	p = decode(cat(ethH(macA, macR, EtherTypeIPv6), ip6H(s6, c6, IPProtoICMPv6, len(m)), m))
	wantLayers(t, p, DropBadICMP, L3IPv6, L4None)
}

// ndFrame builds an ND message with hop limit hl.
func ndFrame(src, dst string, typ uint8, rest uint32, body []byte, hl uint8) []byte {
	m := icmp6H(src, dst, typ, 0, rest, body)
	ip := ip6H(src, dst, IPProtoICMPv6, len(m))
	ip[7] = hl
	return cat(ethH(MAC{0x33, 0x33, 0, 0, 0, 1}, macA, EtherTypeIPv6), ip, m)
}

func TestDecodeND(t *testing.T) {
	p := decode(nsFrame())
	wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
	eq(t, "IsNeighborSolicit", p.IsNeighborSolicit(), true)
	eq(t, "NDTarget", p.NDTarget, ap(s6))
	eq(t, "NDHasLinkAddr", p.NDHasLinkAddr, true)
	eq(t, "NDLinkAddr", p.NDLinkAddr, macA)
	eq(t, "IsDAD", p.IsDAD(), false)

	tgt := ap(s6).AsSlice()
	sn := solicitedNodeRef(s6)
	tests := []struct {
		name  string
		frame []byte
		drop  Drop
		check func(t *testing.T, p *Parsed)
	}{
		{"na with tlla", ndFrame(s6, c6, ICMPv6NeighborAdvert, uint32(NDSolicited|NDOverride)<<24, cat(tgt, []byte{2, 1}, macB[:]), 255), DropNone, func(t *testing.T, p *Parsed) {
			eq(t, "IsNeighborAdvert", p.IsNeighborAdvert(), true)
			eq(t, "NDFlags", p.NDFlags, NDSolicited|NDOverride)
			eq(t, "NDLinkAddr", p.NDLinkAddr, macB)
		}},
		{"link-layer option not 6 bytes is not Ethernet's", ndFrame(s6, c6, ICMPv6NeighborAdvert, 0, cat(tgt, []byte{2, 2}, make([]byte, 14)), 255), DropNone, func(t *testing.T, p *Parsed) {
			eq(t, "NDHasLinkAddr", p.NDHasLinkAddr, false)
		}},
		{"na ignores unknown options", ndFrame(s6, c6, ICMPv6NeighborAdvert, 0, cat(tgt, []byte{9, 2}, make([]byte, 14), []byte{2, 1}, macB[:]), 255), DropNone, func(t *testing.T, p *Parsed) {
			eq(t, "NDLinkAddr", p.NDLinkAddr, macB)
		}},
		{"rs", ndFrame(c6, "ff02::2", ICMPv6RouterSolicit, 0, cat([]byte{1, 1}, macA[:]), 255), DropNone, func(t *testing.T, p *Parsed) {
			eq(t, "IsRouterSolicit", p.IsRouterSolicit(), true)
			eq(t, "NDLinkAddr", p.NDLinkAddr, macA)
		}},
		{"dad", ndFrame("::", sn, ICMPv6NeighborSolicit, 0, tgt, 255), DropNone, func(t *testing.T, p *Parsed) {
			eq(t, "IsDAD", p.IsDAD(), true)
			eq(t, "NDHasLinkAddr", p.NDHasLinkAddr, false)
		}},
		{"ns hop limit 64", ndFrame(c6, sn, ICMPv6NeighborSolicit, 0, tgt, 64), DropBadND, nil},
		{"ns option length 0", ndFrame(c6, sn, ICMPv6NeighborSolicit, 0, cat(tgt, []byte{1, 0}, macA[:]), 255), DropBadND, nil},
		{"ns option beyond message", ndFrame(c6, sn, ICMPv6NeighborSolicit, 0, cat(tgt, []byte{1, 2}, macA[:]), 255), DropBadND, nil},
		{"ns short", ndFrame(c6, sn, ICMPv6NeighborSolicit, 0, tgt[:8], 255), DropBadND, nil},
		{"ns multicast target", ndFrame(c6, sn, ICMPv6NeighborSolicit, 0, ap("ff02::1").AsSlice(), 255), DropBadND, nil},
		{"dad with sllao", ndFrame("::", sn, ICMPv6NeighborSolicit, 0, cat(tgt, []byte{1, 1}, macA[:]), 255), DropBadND, nil},
		{"dad not to solicited-node", ndFrame("::", "ff02::1", ICMPv6NeighborSolicit, 0, tgt, 255), DropBadND, nil},
		{"solicited na to multicast", ndFrame(s6, "ff02::1", ICMPv6NeighborAdvert, uint32(NDSolicited)<<24, tgt, 255), DropBadND, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := decode(tc.frame)
			if tc.drop != DropNone {
				wantLayers(t, p, tc.drop, L3IPv6, L4None)
				return
			}
			wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
			tc.check(t, p)
		})
	}
}

func TestDecodeVXLAN(t *testing.T) {
	inner := tcp4Frame()
	f := vxlanFrame(0xabcdef, inner)
	p := decode(f)
	wantLayers(t, p, DropNone, L3IPv4, L4UDP)
	eq(t, "Tunnel", p.Tunnel, TunnelVXLAN)
	eq(t, "TunnelID", p.TunnelID, 0xabcdef)
	eq(t, "InnerOff", p.InnerOff, 14+20+8+8)
	if !bytes.Equal(p.Inner(), inner) {
		t.Fatalf("Inner() = %x, want %x", p.Inner(), inner)
	}
	var in Parsed
	in.Decode(p.Inner())
	wantLayers(t, &in, DropNone, L3IPv4, L4TCP)
	eq(t, "inner DstPort", in.DstPort, 80)

	f[14+20+8] = 0 // I flag clear
	wantLayers(t, decode(f), DropBadVXLAN, L3IPv4, L4UDP)

	short := udpH("192.0.2.1", "192.0.2.2", 1, DefaultVXLANPort, []byte{8, 0, 0, 0})
	wantLayers(t, decode(cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoUDP, len(short)), short)), DropBadVXLAN, L3IPv4, L4UDP)

	// The port is an option of the Decoder.
	u := udpH("192.0.2.1", "192.0.2.2", 1, 8472, cat([]byte{8, 0, 0, 0}, u32(7<<8), inner))
	f = cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoUDP, len(u)), u)
	p = decode(f)
	eq(t, "Tunnel on default port decoder", p.Tunnel, TunnelNone)
	d := Decoder{VXLANPort: 8472}
	d.Decode(p, f)
	eq(t, "Tunnel", p.Tunnel, TunnelVXLAN)
	eq(t, "TunnelID", p.TunnelID, 7)
	var off Decoder
	off.Decode(p, vxlanFrame(1, inner))
	eq(t, "Tunnel with VXLAN off", p.Tunnel, TunnelNone)
}

func TestDecodeGRE(t *testing.T) {
	inner := tcp6Frame()
	p := decode(greFrame(0xdeadbeef, inner))
	wantLayers(t, p, DropNone, L3IPv4, L4GRE)
	eq(t, "Tunnel", p.Tunnel, TunnelGRE)
	eq(t, "TunnelID", p.TunnelID, 0xdeadbeef)
	eq(t, "GREKeyPresent", p.GREKeyPresent, true)
	eq(t, "GREProto", p.GREProto, EtherTypeTEB)
	eq(t, "InnerOff", p.InnerOff, 14+20+8)
	if !bytes.Equal(p.Inner(), inner) {
		t.Fatalf("Inner() = %x", p.Inner())
	}

	gre := func(flags uint16, proto uint16, words ...uint32) []byte {
		g := cat(u16(flags), u16(proto))
		for _, w := range words {
			g = append(g, u32(w)...)
		}
		g = append(g, inner...)
		return cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoGRE, len(g)), g)
	}
	p = decode(gre(greC|greK|greS, EtherTypeTEB, 0xffff0000, 42, 99))
	wantLayers(t, p, DropNone, L3IPv4, L4GRE)
	eq(t, "TunnelID", p.TunnelID, 42)
	eq(t, "GRESeq", p.GRESeq, 99)
	eq(t, "GRECsumPresent", p.GRECsumPresent, true)
	eq(t, "InnerOff", p.InnerOff, 14+20+16)

	p = decode(gre(greS, EtherTypeTEB, 99))
	eq(t, "GRESeq without key", p.GRESeq, 99)
	eq(t, "GREKeyPresent", p.GREKeyPresent, false)

	p = decode(gre(0, EtherTypeIPv4))
	wantLayers(t, p, DropNone, L3IPv4, L4GRE)
	eq(t, "GREProto", p.GREProto, EtherTypeIPv4)
	eq(t, "bits 6-12 ignored", decode(gre(0x0100|greK, EtherTypeTEB, 1)).Drop, DropNone)

	for _, flags := range []uint16{1, 7, 0x4000 | greK, 0x0800, 0x0400} {
		if got := decode(gre(flags, EtherTypeTEB, 1)).Drop; got != DropBadGRE {
			t.Errorf("GRE flags %#04x: drop %v, want bad_gre", flags, got)
		}
	}
	short := cat(u16(greK), u16(EtherTypeTEB), []byte{1, 2})
	wantLayers(t, decode(cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoGRE, len(short)), short)), DropBadGRE, L3IPv4, L4None)
}
