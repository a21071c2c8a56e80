package packet

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built frames for the tests. Deliberately written the slow, obvious
// way, with a checksum of their own, so that the package is never tested
// only against itself.

var (
	macA = MAC{0x02, 0, 0, 0, 0, 0xaa}
	macB = MAC{0x02, 0, 0, 0, 0, 0xbb}
	macR = MAC{0x02, 0, 0, 0, 0, 0x01} // a virtual router port
)

// refChecksum is RFC 1071 done 16 bits at a time.
func refChecksum(chunks ...[]byte) uint16 {
	var all []byte
	for _, c := range chunks {
		all = append(all, c...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func refPseudo(src, dst netip.Addr, proto uint8, n int) []byte {
	var b []byte
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	if src.Is4() {
		b = append(b, 0, proto, byte(n>>8), byte(n))
	} else {
		b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
	}
	return b
}

func ap(s string) netip.Addr { return netip.MustParseAddr(s) }

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// ethH is an Ethernet header; tags are TPID<<16|TCI.
func ethH(dst, src MAC, et uint16, tags ...uint32) []byte {
	b := cat(dst[:], src[:])
	for _, t := range tags {
		b = append(b, u32(t)...)
	}
	return append(b, u16(et)...)
}

// ip4H builds an IPv4 header (no options) with a correct checksum.
func ip4H(src, dst string, proto uint8, payloadLen int) []byte {
	h := []byte{0x45, 0x10, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0}
	binary.BigEndian.PutUint16(h[2:], uint16(20+payloadLen))
	h = append(h, ap(src).AsSlice()...)
	h = append(h, ap(dst).AsSlice()...)
	binary.BigEndian.PutUint16(h[10:], refChecksum(h))
	return h
}

// ip4Fix recomputes the IPv4 header checksum of h.
func ip4Fix(h []byte) []byte {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], refChecksum(h[:int(h[0]&15)*4]))
	return h
}

// ip6H builds an IPv6 header.
func ip6H(src, dst string, nh uint8, payloadLen int) []byte {
	h := []byte{0x6a, 0xb1, 0x23, 0x45, byte(payloadLen >> 8), byte(payloadLen), nh, 64}
	h = append(h, ap(src).AsSlice()...)
	return append(h, ap(dst).AsSlice()...)
}

// l4Csum fills the checksum at off of segment l4 under the pseudo header.
func l4Csum(src, dst string, proto uint8, l4 []byte, off int) []byte {
	l4[off], l4[off+1] = 0, 0
	c := refChecksum(refPseudo(ap(src), ap(dst), proto, len(l4)), l4)
	if c == 0 && proto == IPProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
	return l4
}

func tcpH(src, dst string, sport, dport uint16, seq, ack uint32, flags uint8, payload []byte) []byte {
	t := cat(u16(sport), u16(dport), u32(seq), u32(ack), []byte{5 << 4, flags}, u16(8192), u16(0), u16(0), payload)
	return l4Csum(src, dst, IPProtoTCP, t, 16)
}

func udpH(src, dst string, sport, dport uint16, payload []byte) []byte {
	u := cat(u16(sport), u16(dport), u16(uint16(8+len(payload))), u16(0), payload)
	return l4Csum(src, dst, IPProtoUDP, u, 6)
}

func icmp4H(typ, code uint8, rest uint32, body []byte) []byte {
	m := cat([]byte{typ, code, 0, 0}, u32(rest), body)
	binary.BigEndian.PutUint16(m[2:], refChecksum(m))
	return m
}

func icmp6H(src, dst string, typ, code uint8, rest uint32, body []byte) []byte {
	m := cat([]byte{typ, code, 0, 0}, u32(rest), body)
	return l4Csum(src, dst, IPProtoICMPv6, m, 2)
}

const (
	c4 = "10.0.0.1"
	s4 = "10.0.0.2"
	c6 = "2001:db8::1"
	s6 = "2001:db8::2"
)

func tcp4Frame() []byte {
	t := tcpH(c4, s4, 40000, 80, 1000, 0, TCPSyn, []byte("hello"))
	return cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoTCP, len(t)), t)
}

func udp4Frame() []byte {
	u := udpH(c4, s4, 5353, 53, []byte("query"))
	return cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoUDP, len(u)), u)
}

func tcp6Frame() []byte {
	t := tcpH(c6, s6, 40000, 443, 7, 9, TCPAck|TCPPsh, []byte("data"))
	return cat(ethH(macR, macA, EtherTypeIPv6), ip6H(c6, s6, IPProtoTCP, len(t)), t)
}

func udp6Frame() []byte {
	u := udpH(c6, s6, 1000, 2000, []byte("x"))
	return cat(ethH(macR, macA, EtherTypeIPv6), ip6H(c6, s6, IPProtoUDP, len(u)), u)
}

func echo4Frame() []byte {
	m := icmp4H(ICMPv4EchoRequest, 0, 0x1234<<16|7, []byte("ping-data"))
	return cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoICMPv4, len(m)), m)
}

func echo6Frame() []byte {
	m := icmp6H(c6, s6, ICMPv6EchoRequest, 0, 0x4321<<16|9, []byte("ping6"))
	return cat(ethH(macR, macA, EtherTypeIPv6), ip6H(c6, s6, IPProtoICMPv6, len(m)), m)
}

func arpReqFrame() []byte {
	a := cat(u16(1), u16(EtherTypeIPv4), []byte{6, 4}, u16(ARPRequest), macA[:], ap(c4).AsSlice(), make([]byte, 6), ap(s4).AsSlice())
	return cat(ethH(BroadcastMAC, macA, EtherTypeARP), a)
}

// nsFrame is a Neighbor Solicitation from c6 for s6 with a source
// link-layer address option.
func nsFrame() []byte {
	grp := solicitedNodeRef(s6)
	body := cat(ap(s6).AsSlice(), []byte{1, 1}, macA[:])
	m := icmp6H(c6, grp, ICMPv6NeighborSolicit, 0, 0, body)
	ip := ip6H(c6, grp, IPProtoICMPv6, len(m))
	ip[7] = 255
	return cat(ethH(MAC{0x33, 0x33, 0xff, 0, 0, 2}, macA, EtherTypeIPv6), ip, m)
}

func solicitedNodeRef(a string) string {
	b := ap(a).As16()
	return netip.AddrFrom16([16]byte{0xff, 2, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}).String()
}

// vxlanFrame is an outer IPv4/UDP VXLAN packet around inner.
func vxlanFrame(vni uint32, inner []byte) []byte {
	u := udpH("192.0.2.1", "192.0.2.2", 49152, DefaultVXLANPort, cat([]byte{0x08, 0, 0, 0}, u32(vni<<8), inner))
	return cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoUDP, len(u)), u)
}

// greFrame is an outer IPv4/GRE packet with key around inner.
func greFrame(key uint32, inner []byte) []byte {
	g := cat(u16(0x2000), u16(EtherTypeTEB), u32(key), inner)
	return cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoGRE, len(g)), g)
}
