package packet

import "net/netip"

// decodeL4 decodes the upper-layer header at p.L4Off. The caller has set
// L3, IPProto, Frag (never FragLater here), L4Off and L3End.
//
// Fragments: a first fragment must carry the whole L4 header, or the
// fields a filter matches on (ports, TCP flags) arrive in a later fragment
// that carries no header to match: the "tiny fragment" attack of RFC 1858
// §3.1, forbidden for IPv6 by RFC 7112. No honest stack splits a header
// across fragments, so such a first fragment is dropped as
// DropShortFragment rather than classified on missing ports.
func (d *Decoder) decodeL4(p *Parsed) {
	l4 := p.b[p.L4Off:p.L3End]
	p.end = p.L3End
	switch p.IPProto {
	case IPProtoTCP:
		if len(l4) < tcpMinLen {
			p.Drop = p.shortHeaderDrop(DropBadL4Header)
			return
		}
		doff := int(l4[12]>>4) * 4
		if doff < tcpMinLen {
			p.Drop = DropBadL4Header
			return
		}
		if doff > len(l4) {
			p.Drop = p.shortHeaderDrop(DropBadL4Header)
			return
		}
		p.SrcPort = be16(l4[0:])
		p.DstPort = be16(l4[2:])
		p.TCPSeq = be32(l4[4:])
		p.TCPAck = be32(l4[8:])
		p.TCPFlags = l4[13]
		p.PayloadOff = p.L4Off + doff
		p.L4 = L4TCP
	case IPProtoUDP:
		if len(l4) < UDPHeaderLen {
			p.Drop = p.shortHeaderDrop(DropBadL4Header)
			return
		}
		ulen := int(be16(l4[4:]))
		// A first fragment holds only part of the datagram the UDP
		// length describes, so the upper bound applies only to whole
		// datagrams. A UDP length below the IP payload is legal; the
		// rest is ignored, as Linux does.
		if ulen < UDPHeaderLen || p.Frag == FragNone && ulen > len(l4) {
			p.Drop = DropBadL4Header
			return
		}
		p.SrcPort = be16(l4[0:])
		p.DstPort = be16(l4[2:])
		p.PayloadOff = p.L4Off + UDPHeaderLen
		if p.Frag == FragNone {
			p.end = p.L4Off + ulen
		}
		p.L4 = L4UDP
		if d.VXLANPort != 0 && p.DstPort == d.VXLANPort && p.Frag == FragNone {
			p.decodeVXLAN()
		}
	case IPProtoICMPv4:
		if p.L3 != L3IPv4 {
			p.L4 = L4Other // ICMPv4 inside IPv6 means nothing
			return
		}
		if len(l4) < icmpHdrLen {
			p.Drop = p.shortHeaderDrop(DropBadL4Header)
			return
		}
		p.decodeICMPv4(l4)
	case IPProtoICMPv6:
		if p.L3 != L3IPv6 {
			p.L4 = L4Other
			return
		}
		if len(l4) < icmpHdrLen {
			p.Drop = p.shortHeaderDrop(DropBadL4Header)
			return
		}
		p.decodeICMPv6(l4)
	case IPProtoGRE:
		p.decodeGRE(l4)
	case IPProtoNoNext:
		// Nothing follows (RFC 8200 §4.7): a valid packet without L4.
	default:
		p.L4 = L4Other
	}
}

func (p *Parsed) decodeICMPv4(l4 []byte) {
	p.ICMPType = l4[0]
	p.ICMPCode = l4[1]
	p.PayloadOff = p.L4Off + icmpHdrLen
	switch p.ICMPType {
	case ICMPv4EchoRequest, ICMPv4EchoReply, ICMPv4Timestamp, ICMPv4TimestampReply:
		p.ICMPEchoID = be16(l4[4:])
		p.ICMPEchoSeq = be16(l4[6:])
	case ICMPv4Unreachable, ICMPv4SourceQuench, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		// RFC 792 errors quote the IP header + 8 bytes. NAT must find
		// and rewrite that header, so an error without one is useless
		// and possibly crafted to desynchronise NAT state: drop it.
		// Only complete datagrams: a fragmented ICMP error is bogus
		// (RFC 1812 §4.3.2.3 caps them at 576 bytes).
		in := l4[icmpHdrLen:]
		if p.Frag != FragNone || len(in) < IPv4MinHeaderLen || in[0]>>4 != 4 || int(in[0]&0x0f)*4 < IPv4MinHeaderLen || int(in[0]&0x0f)*4 > len(in) {
			p.Drop = DropBadICMP
			return
		}
		p.ICMPInnerOff = p.L4Off + icmpHdrLen
	}
	p.L4 = L4ICMPv4
}

func (p *Parsed) decodeICMPv6(l4 []byte) {
	p.ICMPType = l4[0]
	p.ICMPCode = l4[1]
	p.PayloadOff = p.L4Off + icmpHdrLen
	switch p.ICMPType {
	case ICMPv6EchoRequest, ICMPv6EchoReply:
		p.ICMPEchoID = be16(l4[4:])
		p.ICMPEchoSeq = be16(l4[6:])
	case ICMPv6Unreachable, ICMPv6PacketTooBig, ICMPv6TimeExceeded, ICMPv6ParamProblem:
		in := l4[icmpHdrLen:]
		if p.Frag != FragNone || len(in) < ipv6HdrLen || in[0]>>4 != 6 {
			p.Drop = DropBadICMP
			return
		}
		p.ICMPInnerOff = p.L4Off + icmpHdrLen
	case ICMPv6RouterSolicit, ICMPv6NeighborSolicit, ICMPv6NeighborAdvert:
		if !p.decodeND(l4) {
			p.Drop = DropBadND
			return
		}
	}
	p.L4 = L4ICMPv6
}

// decodeND applies the validity checks of RFC 4861 §6.1.1 and §7.1 that a
// receiver MUST apply, and extracts target and link-layer address. The hop
// limit check is what keeps ND on-link: a router decrements it, so 255
// proves the sender is a neighbour and not someone spoofing a neighbour
// cache entry from afar.
func (p *Parsed) decodeND(l4 []byte) bool {
	// A multicast source is never valid (RFC 4291 §2.7), and an answer to
	// one would go to a whole group.
	if p.TTL != 255 || p.ICMPCode != 0 || p.Frag != FragNone || p.SrcIP.IsMulticast() {
		return false
	}
	optOff := icmpHdrLen
	wantOpt := uint8(1) // source link-layer address
	if p.ICMPType != ICMPv6RouterSolicit {
		if len(l4) < ndFixedLen {
			return false
		}
		p.NDTarget = netip.AddrFrom16([16]byte(l4[8:24]))
		if p.NDTarget.IsMulticast() {
			return false
		}
		optOff = ndFixedLen
	}
	switch p.ICMPType {
	case ICMPv6NeighborAdvert:
		p.NDFlags = l4[4] & (NDRouter | NDSolicited | NDOverride)
		wantOpt = 2 // target link-layer address
		// A solicited advertisement answers one node, never a group.
		if p.DstIP.IsMulticast() && p.NDFlags&NDSolicited != 0 {
			return false
		}
	case ICMPv6NeighborSolicit:
		// Duplicate address detection comes from :: and goes to the
		// target's solicited-node group.
		if p.SrcIP.IsUnspecified() && !isSolicitedNode(p.DstIP) {
			return false
		}
	}
	// Every option has a non-zero length (RFC 4861 §4.6); zero would loop
	// forever in a naive parser, so it is a MUST-discard. Each option is at
	// least 8 bytes, so the walk is bounded by the packet length.
	for o := optOff; o < len(l4); {
		if len(l4)-o < 2 || l4[o+1] == 0 {
			return false
		}
		olen := int(l4[o+1]) * 8
		if olen > len(l4)-o {
			return false
		}
		if l4[o] == wantOpt && olen == 8 {
			copy(p.NDLinkAddr[:], l4[o+2:o+8])
			p.NDHasLinkAddr = true
		}
		o += olen
	}
	// From the unspecified address there is no link-layer address to
	// announce; one present would poison caches (RFC 4861 §7.1.1, §6.1.1).
	if p.SrcIP.IsUnspecified() && p.NDHasLinkAddr && p.ICMPType != ICMPv6NeighborAdvert {
		return false
	}
	return true
}

// isSolicitedNode reports whether a is in ff02::1:ff00:0/104.
func isSolicitedNode(a netip.Addr) bool {
	b := a.As16()
	return a.Is6() && b[0] == 0xff && b[1] == 0x02 && b[11] == 0x01 && b[12] == 0xff &&
		b[2]|b[3]|b[4]|b[5]|b[6]|b[7]|b[8]|b[9]|b[10] == 0
}

// decodeVXLAN decodes the VXLAN header at the UDP payload (RFC 7348).
func (p *Parsed) decodeVXLAN() {
	v := p.b[p.PayloadOff:p.end]
	if len(v) < vxlanHdrLen {
		p.Drop = DropBadVXLAN
		return
	}
	// Only the I flag is checked: RFC 7348 says the reserved bits are
	// ignored on receipt. Without I the VNI is meaningless, and guessing
	// one would leak the frame into some tenant's network.
	if v[0]&0x08 == 0 {
		p.Drop = DropBadVXLAN
		return
	}
	p.TunnelID = be32(v[4:]) >> 8
	p.InnerOff = p.PayloadOff + vxlanHdrLen
	p.Tunnel = TunnelVXLAN
}

// greHeader is a decoded GRE header (RFC 2784, RFC 2890).
type greHeader struct {
	proto                uint16
	csum, hasKey, hasSeq bool
	key, seq             uint32
	hdrLen               int
}

const (
	greC    = 0x8000
	greK    = 0x2000
	greS    = 0x1000
	greMust = 0x4000 | 0x0800 | 0x0400 // bits 1, 4, 5: RFC 1701 routing/strict/recursion
)

// parseGRE decodes the GRE header at the start of b. It returns
// DropTruncated if b is too short for the header its flags announce, and
// DropBadGRE if the flags are not ours. RFC 2784 §2.3: a receiver MUST
// discard a packet with any of bits 1-5 set unless it implements RFC 1701;
// bits 2 and 3 are RFC 2890's key and sequence number. Bits 6-12 MUST be
// ignored. Version 1 is PPTP's enhanced GRE, which an Ethernet overlay does
// not speak.
func parseGRE(b []byte) (greHeader, Drop) {
	var h greHeader
	if len(b) < greMinLen {
		return h, DropTruncated
	}
	f := be16(b)
	if f&0x7 != 0 || f&greMust != 0 {
		return h, DropBadGRE
	}
	h.proto = be16(b[2:])
	h.csum, h.hasKey, h.hasSeq = f&greC != 0, f&greK != 0, f&greS != 0
	off := greMinLen
	if h.csum {
		off += 4 // checksum and reserved1
	}
	keyOff := off
	if h.hasKey {
		off += 4
	}
	seqOff := off
	if h.hasSeq {
		off += 4
	}
	if len(b) < off {
		return h, DropTruncated
	}
	if h.hasKey {
		h.key = be32(b[keyOff:])
	}
	if h.hasSeq {
		h.seq = be32(b[seqOff:])
	}
	h.hdrLen = off
	return h, DropNone
}

func (p *Parsed) decodeGRE(l4 []byte) {
	h, drop := parseGRE(l4)
	switch drop {
	case DropNone:
	case DropTruncated:
		p.Drop = p.shortHeaderDrop(DropBadGRE)
		return
	default:
		p.Drop = drop
		return
	}
	p.L4 = L4GRE
	if p.Frag != FragNone {
		return // the inner frame is incomplete until reassembled
	}
	p.GREProto = h.proto
	p.GRECsumPresent = h.csum
	p.GREKeyPresent = h.hasKey
	p.GRESeqPresent = h.hasSeq
	p.TunnelID = h.key
	p.GRESeq = h.seq
	p.InnerOff = p.L4Off + h.hdrLen
	p.Tunnel = TunnelGRE
}
