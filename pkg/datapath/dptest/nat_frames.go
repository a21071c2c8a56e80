package dptest

import (
	"encoding/binary"
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// L4 describes a test frame for NAT cases: Ethernet, IPv4 or IPv6, and
// TCP, UDP or an ICMP echo request (whose identifier is SrcPort). Frame
// computes every checksum from scratch, so a frame rewritten in place by a
// datapath can be compared byte for byte with the L4 of its translated
// values.
type L4 struct {
	SrcMAC, DstMAC   packet.MAC
	Src, Dst         netip.Addr
	Proto            uint8 // packet.IPProtoTCP, IPProtoUDP, IPProtoICMPv4/v6
	SrcPort, DstPort uint16
	TCPFlags         uint8
	TTL              uint8 // 0 means 64
	Len              int   // IP datagram length to pad to (0: 64 bytes)
}

// Frame builds the frame.
func (f L4) Frame() []byte {
	b := make([]byte, 2048)
	n := f.Len
	if n == 0 {
		n = 64
	}
	l, err := packet.BuildProbe(b, &packet.Probe{EthSrc: f.SrcMAC, EthDst: f.DstMAC, Src: f.Src, Dst: f.Dst, Proto: f.Proto,
		SrcPort: f.SrcPort, DstPort: f.DstPort, TCPFlags: f.TCPFlags, TTL: f.TTL, Length: n})
	if err != nil {
		panic(err)
	}
	// A payload pattern, so that the checksums cover more than zeros; it
	// depends on nothing NAT changes.
	var p packet.Parsed
	p.Decode(b[:l])
	pay := b[p.PayloadOff:p.L3End]
	for i := range pay {
		pay[i] = byte(i*7 + 3) // the same before and after translation
	}
	if len(pay) > 0 {
		l4 := b[p.L4Off:p.L3End]
		off := map[uint8]int{packet.IPProtoTCP: 16, packet.IPProtoUDP: 6, packet.IPProtoICMPv4: 2, packet.IPProtoICMPv6: 2}[f.Proto]
		binary.BigEndian.PutUint16(l4[off:], 0)
		var sum uint16
		if f.Proto == packet.IPProtoICMPv4 {
			sum = packet.Checksum(l4, 0)
		} else {
			sum = packet.L4Checksum(f.Src, f.Dst, f.Proto, l4)
			if sum == 0 && f.Proto == packet.IPProtoUDP {
				sum = 0xffff
			}
		}
		binary.BigEndian.PutUint16(l4[off:], sum)
	}
	return b[:l]
}

// ICMPErrorAbout returns the ICMP port unreachable that router sends
// about frame (which it received), with the outer TTL set to ttl and every
// checksum computed from scratch. The error goes back to frame's source
// MAC from its destination MAC.
func ICMPErrorAbout(frame []byte, router netip.Addr, ttl uint8) []byte {
	var p packet.Parsed
	p.Decode(frame)
	b := make([]byte, 2048)
	var n int
	var err error
	if router.Is4() {
		n, err = packet.BuildICMPv4Unreachable(b, &p, router, packet.ICMPv4PortUnreachable)
	} else {
		n, err = packet.BuildICMPv6Unreachable(b, &p, router, packet.ICMPv6PortUnreachable)
	}
	if err != nil {
		panic(err)
	}
	return WithTTL(b[:n], ttl)
}

// WithTTL returns a copy of an untagged IP frame with TTL (hop limit)
// ttl, the IPv4 header checksum recomputed from scratch.
func WithTTL(frame []byte, ttl uint8) []byte {
	b := append([]byte(nil), frame...)
	ip := b[14:]
	if ip[0]>>4 == 6 {
		ip[7] = ttl
		return b
	}
	ip[8] = ttl
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip[:int(ip[0]&0xf)*4]))
	return b
}
