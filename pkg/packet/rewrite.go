package packet

import (
	"encoding/binary"
	"net/netip"
)

// In-place rewrites of the frame given to Decode. Each keeps Parsed in step
// with the frame and fixes checksums incrementally (RFC 1624): the cost is
// independent of the payload size. They refuse (return false, change
// nothing) on a frame that was dropped or lacks the field, so a caller
// cannot corrupt a frame it did not check.
//
// An incremental update carries a wrong checksum over as wrong: a rewrite
// never makes a corrupted packet look valid.

// SetEthSrc sets the Ethernet source address.
func (p *Parsed) SetEthSrc(m MAC) bool {
	if p.L3Off == 0 {
		return false
	}
	copy(p.b[6:12], m[:])
	p.EthSrc = m
	return true
}

// SetEthDst sets the Ethernet destination address.
func (p *Parsed) SetEthDst(m MAC) bool {
	if p.L3Off == 0 {
		return false
	}
	copy(p.b[0:6], m[:])
	p.EthDst = m
	return true
}

// DecTTL decrements the IPv4 TTL or IPv6 hop limit, fixing the IPv4 header
// checksum. It returns false, leaving the frame alone, if the packet must
// not be forwarded: TTL <= 1 (the caller answers with time exceeded,
// RFC 1812 §5.3.1, RFC 4443 §3.3) or not a decoded IP packet.
func (p *Parsed) DecTTL() bool {
	if p.Drop != DropNone || !p.isIP() || p.TTL <= 1 {
		return false
	}
	ip := p.b[p.L3Off:]
	if p.L3 == L3IPv6 {
		ip[7]--
		p.TTL--
		return true
	}
	// TTL shares a 16-bit word with the protocol.
	old := binary.BigEndian.Uint16(ip[8:])
	ip[8]--
	put16(ip[10:], UpdateChecksum16(be16(ip[10:]), old, old-0x100))
	p.TTL--
	return true
}

// SetDSCP rewrites the DSCP of an IPv4 or IPv6 packet (the top six bits
// of the TOS byte or traffic class, ECN kept), fixing the IPv4 header
// checksum. It reports false for other frames.
func (p *Parsed) SetDSCP(dscp uint8) bool {
	if p.Drop != DropNone || !p.isIP() || dscp > 63 {
		return false
	}
	ip := p.b[p.L3Off:]
	tos := dscp<<2 | p.TOS&3
	if p.L3 == L3IPv6 {
		// Traffic class straddles the first two bytes: 4 bits each.
		ip[0] = ip[0]&0xf0 | tos>>4
		ip[1] = ip[1]&0x0f | tos<<4
		p.TOS = tos
		return true
	}
	old := binary.BigEndian.Uint16(ip[0:])
	ip[1] = tos
	put16(ip[10:], UpdateChecksum16(be16(ip[10:]), old, binary.BigEndian.Uint16(ip[0:])))
	p.TOS = tos
	return true
}

// SetSrcIP rewrites the IP source address, fixing the IPv4 header checksum
// and the TCP, UDP or ICMPv6 checksum (their pseudo header covers it). The
// address family must match the packet's. A later fragment has no L4
// checksum to fix: the checksum lives in the first fragment, which the
// same rewrite fixes, so the reassembled datagram still verifies.
func (p *Parsed) SetSrcIP(a netip.Addr) bool {
	if !p.canSetIP(a) {
		return false
	}
	p.setIP(p.SrcIP, a, 12, 8)
	p.SrcIP = a
	return true
}

// SetDstIP rewrites the IP destination address like SetSrcIP.
func (p *Parsed) SetDstIP(a netip.Addr) bool {
	if !p.canSetIP(a) {
		return false
	}
	p.setIP(p.DstIP, a, 16, 24)
	p.DstIP = a
	return true
}

func (p *Parsed) canSetIP(a netip.Addr) bool {
	if p.Drop != DropNone {
		return false
	}
	switch p.L3 {
	case L3IPv4:
		return a.Is4()
	case L3IPv6:
		return a.Is6() && !a.Is4In6() && a.Zone() == ""
	}
	return false
}

// setIP writes a at offset off4 (IPv4) or off6 (IPv6) of the IP header.
func (p *Parsed) setIP(old, a netip.Addr, off4, off6 int) {
	ip := p.b[p.L3Off:]
	if p.L3 == L3IPv4 {
		n := a.As4()
		copy(ip[off4:off4+4], n[:])
		put16(ip[10:], UpdateChecksumAddr(be16(ip[10:]), old, a))
	} else {
		n := a.As16()
		copy(ip[off6:off6+16], n[:])
	}
	off := p.l4CsumOff(true)
	switch {
	case off == 0:
	case p.partial():
		// The field is a sum, not its complement: add the change rather
		// than subtract it (RFC 1624 run on the complemented value).
		put16(p.b[off:], ^UpdateChecksumAddr(^be16(p.b[off:]), old, a))
	default:
		p.fixL4Csum(off, UpdateChecksumAddr(be16(p.b[off:]), old, a))
	}
}

// partial reports a TCP or UDP checksum left for the device to complete.
func (p *Parsed) partial() bool { return p.L4CsumPartial && (p.L4 == L4TCP || p.L4 == L4UDP) }

// l4CsumOff returns the frame offset of the L4 checksum, or 0 if there is
// none to fix. pseudo asks for a checksum covering the IP addresses, which
// excludes ICMPv4. A partial checksum covers only the pseudo header so
// far: a change elsewhere is the device's to sum.
func (p *Parsed) l4CsumOff(pseudo bool) int {
	if p.partial() && !pseudo {
		return 0
	}
	switch p.L4 {
	case L4TCP:
		return p.L4Off + 16
	case L4UDP:
		// RFC 768: an IPv4 UDP checksum of 0 means none was sent;
		// updating it would invent a wrong one.
		if p.L3 == L3IPv4 && !p.L4CsumPartial && be16(p.b[p.L4Off+6:]) == 0 {
			return 0
		}
		return p.L4Off + 6
	case L4ICMPv6:
		return p.L4Off + 2
	case L4ICMPv4:
		if !pseudo {
			return p.L4Off + 2
		}
	}
	return 0
}

// fixL4Csum stores an updated L4 checksum. UDP cannot carry +0 (it means
// "no checksum"), so it sends -0 instead (RFC 768).
func (p *Parsed) fixL4Csum(off int, sum uint16) {
	if sum == 0 && p.L4 == L4UDP {
		sum = 0xffff
	}
	put16(p.b[off:], sum)
}

// SetSrcPort rewrites the TCP/UDP source port, fixing the L4 checksum.
func (p *Parsed) SetSrcPort(port uint16) bool {
	if p.Drop != DropNone || !p.HasPorts() {
		return false
	}
	p.setPort(p.L4Off, port)
	p.SrcPort = port
	return true
}

// SetDstPort rewrites the TCP/UDP destination port, fixing the L4 checksum.
func (p *Parsed) SetDstPort(port uint16) bool {
	if p.Drop != DropNone || !p.HasPorts() {
		return false
	}
	p.setPort(p.L4Off+2, port)
	p.DstPort = port
	return true
}

// SetICMPEchoID rewrites the identifier of an ICMP echo request or reply,
// the "port" ICMP NAT translates (RFC 5508 §3.1), fixing the checksum.
func (p *Parsed) SetICMPEchoID(id uint16) bool {
	if p.Drop != DropNone || !p.IsEchoRequest() && !p.IsEchoReply() {
		return false
	}
	p.setPort(p.L4Off+4, id)
	p.ICMPEchoID = id
	return true
}

func (p *Parsed) setPort(off int, v uint16) {
	old := be16(p.b[off:])
	put16(p.b[off:], v)
	if c := p.l4CsumOff(false); c != 0 {
		p.fixL4Csum(c, UpdateChecksum16(be16(p.b[c:]), old, v))
	}
}

func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
func put32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
