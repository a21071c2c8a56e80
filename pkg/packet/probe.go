package packet

import (
	"encoding/binary"
	"net/netip"
)

// Probe describes a synthetic packet: what `nagare trace` simulates and
// what benchmarks send. Zero fields take sensible defaults.
type Probe struct {
	EthSrc, EthDst MAC
	VLAN           uint16 // 0: untagged
	// ARP, when set, makes an ARP request for Dst from Src; the IP fields
	// below are ignored.
	ARP      bool
	Src, Dst netip.Addr // IPv4 or IPv6, same family
	Proto    uint8      // IPProtoTCP, IPProtoUDP, IPProtoICMPv4/ICMPv6 (echo request); default ICMP
	SrcPort  uint16
	DstPort  uint16
	TTL      uint8 // default 64
	DF       bool
	TCPFlags uint8 // default SYN
	Length   int   // IP datagram length to pad to (0: minimal)
}

// BuildProbe writes the probe's frame into dst and returns its length.
func BuildProbe(dst []byte, p *Probe) (int, error) {
	if p.ARP {
		return buildProbeARP(dst, p)
	}
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
		return 0, ErrBadArgument
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = 64
	}
	proto := p.Proto
	v6 := !p.Src.Is4()
	if proto == 0 || (proto == IPProtoICMPv4 && v6) {
		proto = IPProtoICMPv4
		if v6 {
			proto = IPProtoICMPv6
		}
	}
	l4len := 8 // ICMP echo, UDP
	if proto == IPProtoTCP {
		l4len = 20
	}
	iphdr := 20
	if v6 {
		iphdr = 40
	}
	l2 := 14
	if p.VLAN != 0 {
		l2 = 18
	}
	iplen := max(iphdr+l4len, p.Length)
	if iplen > 0xffff || l2+iplen > len(dst) {
		return 0, ErrShortBuffer
	}
	b := dst[:l2+iplen]
	clear(b)
	copy(b[0:6], p.EthDst[:])
	copy(b[6:12], p.EthSrc[:])
	et := EtherTypeIPv4
	if v6 {
		et = EtherTypeIPv6
	}
	off := 12
	if p.VLAN != 0 {
		binary.BigEndian.PutUint16(b[12:], 0x8100)
		binary.BigEndian.PutUint16(b[14:], p.VLAN&0x0fff)
		off = 16
	}
	binary.BigEndian.PutUint16(b[off:], et)
	ip := b[l2:]
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(iplen-40))
		ip[6], ip[7] = proto, ttl
		s, d := p.Src.As16(), p.Dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(iplen))
		if p.DF {
			ip[6] = 0x40
		}
		ip[8], ip[9] = ttl, proto
		s, d := p.Src.As4(), p.Dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], IPv4HeaderChecksum(ip[:20]))
	}
	l4 := ip[iphdr:]
	var csumOff int
	switch proto {
	case IPProtoTCP:
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		l4[12] = 5 << 4
		flags := p.TCPFlags
		if flags == 0 {
			flags = TCPSyn
		}
		l4[13] = flags
		binary.BigEndian.PutUint16(l4[14:], 65535)
		csumOff = 16
	case IPProtoUDP:
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		csumOff = 6
	case IPProtoICMPv4, IPProtoICMPv6:
		l4[0] = ICMPv4EchoRequest
		if v6 {
			l4[0] = ICMPv6EchoRequest
		}
		binary.BigEndian.PutUint16(l4[4:], p.SrcPort) // echo id
		binary.BigEndian.PutUint16(l4[6:], 1)         // sequence
		csumOff = 2
	default:
		return len(b), nil
	}
	if proto == IPProtoICMPv4 {
		binary.BigEndian.PutUint16(l4[csumOff:], Checksum(l4, 0))
	} else {
		c := L4Checksum(p.Src, p.Dst, proto, l4)
		if c == 0 && proto == IPProtoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[csumOff:], c)
	}
	return len(b), nil
}

func buildProbeARP(dst []byte, p *Probe) (int, error) {
	if !p.Src.Is4() || !p.Dst.Is4() {
		return 0, ErrBadArgument
	}
	if len(dst) < 42 {
		return 0, ErrShortBuffer
	}
	b := dst[:42]
	clear(b)
	copy(b[0:6], BroadcastMAC[:])
	copy(b[6:12], p.EthSrc[:])
	binary.BigEndian.PutUint16(b[12:], EtherTypeARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1)
	copy(a[8:14], p.EthSrc[:])
	s, d := p.Src.As4(), p.Dst.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], d[:])
	return len(b), nil
}
