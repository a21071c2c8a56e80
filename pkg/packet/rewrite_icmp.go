package packet

import "net/netip"

// NAT of ICMP errors (RFC 5508 §4.2, RFC 3022 §4.3): an error about a
// translated packet quotes it as the translator sent it, so reversing the
// translation means rewriting the quote as well as the outer header, or
// the sender cannot match the error to its socket. The quote is not in the
// flow key, so these rewrites are per packet: the agent applies them to
// the packet it simulated and installs no flow for it.

// SetInnerSrc rewrites the source address and port of the packet an ICMP
// error quotes: the TCP or UDP source port, or for a quoted ICMP echo the
// identifier. To change only the address, pass the quoted port unchanged.
// It fixes, incrementally, the quoted IPv4 header checksum, the quoted L4
// checksum where the quote holds it (ICMP quotes are often 8 bytes of L4,
// which for TCP leaves the checksum out), and the error's own checksum.
// The address family must be the packet's. It returns false, changing
// nothing, if p is not a decoded ICMP error.
func (p *Parsed) SetInnerSrc(a netip.Addr, port uint16) bool { return p.setInner(a, port, true) }

// SetInnerDst is SetInnerSrc for the quoted destination.
func (p *Parsed) SetInnerDst(a netip.Addr, port uint16) bool { return p.setInner(a, port, false) }

func (p *Parsed) setInner(a netip.Addr, port uint16, src bool) bool {
	if p.Drop != DropNone || !p.IsICMPError() || !p.canSetIP(a) {
		return false
	}
	q := p.b[p.ICMPInnerOff:p.L3End]
	outer := p.L4Off + 2 // the error's checksum, covering the whole quote
	fix := func(old, new uint16) {
		put16(p.b[outer:], UpdateChecksum16(be16(p.b[outer:]), old, new))
	}
	var hl, addrOff int
	var proto uint8
	if p.L3 == L3IPv4 {
		hl, proto, addrOff = int(q[0]&0x0f)*4, q[9], 16
		if src {
			addrOff = 12
		}
	} else {
		hl, proto, addrOff = ipv6HdrLen, q[6], 24
		if src {
			addrOff = 8
		}
	}
	var old netip.Addr
	if p.L3 == L3IPv4 {
		old = netip.AddrFrom4([4]byte(q[addrOff : addrOff+4]))
		n := a.As4()
		copy(q[addrOff:], n[:])
		oldSum := be16(q[10:])
		put16(q[10:], UpdateChecksumAddr(oldSum, old, a))
		fix(oldSum, be16(q[10:]))
	} else {
		old = netip.AddrFrom16([16]byte(q[addrOff : addrOff+16]))
		n := a.As16()
		copy(q[addrOff:], n[:])
	}
	put16(p.b[outer:], UpdateChecksumAddr(be16(p.b[outer:]), old, a))

	l4 := q[hl:]
	var portOff, csumOff int
	pseudo := true
	switch {
	case proto == IPProtoTCP:
		portOff, csumOff = 2, 16
	case proto == IPProtoUDP:
		portOff, csumOff = 2, 6
		if p.L3 == L3IPv4 && len(l4) >= 8 && be16(l4[6:]) == 0 {
			csumOff = -1 // no checksum was sent (RFC 768)
		}
	case proto == IPProtoICMPv4 && p.L3 == L3IPv4 && len(l4) >= 1 && (l4[0] == ICMPv4EchoRequest || l4[0] == ICMPv4EchoReply),
		proto == IPProtoICMPv6 && p.L3 == L3IPv6 && len(l4) >= 1 && (l4[0] == ICMPv6EchoRequest || l4[0] == ICMPv6EchoReply):
		portOff, csumOff = 4, 2 // the identifier is the echo's "port" on both sides
		pseudo = proto == IPProtoICMPv6
	default:
		return true // no ports: the address was all
	}
	if src && portOff == 2 {
		portOff = 0
	}
	oldPort := port
	if len(l4) >= portOff+2 {
		oldPort = be16(l4[portOff:])
		put16(l4[portOff:], port)
		fix(oldPort, port)
	}
	if csumOff < 0 || len(l4) < csumOff+2 {
		return true // the quote stops before the L4 checksum
	}
	oldSum := be16(l4[csumOff:])
	sum := UpdateChecksum16(oldSum, oldPort, port)
	if pseudo {
		sum = UpdateChecksumAddr(sum, old, a)
	}
	if sum == 0 && proto == IPProtoUDP {
		sum = 0xffff
	}
	put16(l4[csumOff:], sum)
	fix(oldSum, sum)
	return true
}
