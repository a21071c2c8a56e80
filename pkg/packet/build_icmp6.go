package packet

import "net/netip"

// icmp6MaxLen caps a generated ICMPv6 error's IPv6 packet (RFC 4443
// §2.4(c): as much of the invoking packet as fits in the minimum MTU,
// 1280 bytes).
const icmp6MaxLen = 1280

// ndHopLimit is the hop limit of every ND message (RFC 4861): receivers
// check it to know the sender is on-link.
const ndHopLimit = 255

// BuildICMPv6EchoReply writes the reply to the ICMPv6 echo request decoded
// into req: addresses and MACs swapped, the same VLANs, identifier,
// sequence and data. Extension headers are not echoed. A request to a
// multicast address is refused: the reply would have to come from a unicast
// address the builder does not know.
func BuildICMPv6EchoReply(dst []byte, req *Parsed) (int, error) {
	if req.Drop != DropNone || req.L4 != L4ICMPv6 || req.ICMPType != ICMPv6EchoRequest || req.Frag != FragNone {
		return 0, ErrNotAnswerable
	}
	if req.DstIP.IsMulticast() {
		return 0, ErrNotAnswerable
	}
	msg := req.b[req.L4Off:req.L3End]
	n := l2Len(req) + ipv6HdrLen + len(msg)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	o := replyL2(dst, req, req.EthDst, EtherTypeIPv6)
	putIPv6(dst[o:], req.TOS, len(msg), IPProtoICMPv6, defaultTTL, req.DstIP, req.SrcIP)
	o += ipv6HdrLen
	m := dst[o:n]
	copy(m, msg)
	m[0], m[1] = ICMPv6EchoReply, 0
	put16(m[2:], 0)
	put16(m[2:], L4Checksum(req.DstIP, req.SrcIP, IPProtoICMPv6, m))
	return n, nil
}

// BuildICMPv6TimeExceeded writes a hop limit exceeded in transit (type 3
// code 0) about the packet decoded into orig, from the router address src.
func BuildICMPv6TimeExceeded(dst []byte, orig *Parsed, src netip.Addr) (int, error) {
	return buildICMPv6Error(dst, orig, src, ICMPv6TimeExceeded, 0, 0)
}

// BuildICMPv6Unreachable writes a destination unreachable (type 1) with
// code about the packet decoded into orig, from src.
func BuildICMPv6Unreachable(dst []byte, orig *Parsed, src netip.Addr, code uint8) (int, error) {
	if code > 8 {
		return 0, ErrBadArgument
	}
	return buildICMPv6Error(dst, orig, src, ICMPv6Unreachable, code, 0)
}

// BuildICMPv6PacketTooBig writes a packet too big (type 2) with the
// next-hop MTU about the packet decoded into orig, from src. IPv6 routers
// never fragment, so this is the only way a sender learns the path MTU.
func BuildICMPv6PacketTooBig(dst []byte, orig *Parsed, src netip.Addr, mtu uint32) (int, error) {
	if mtu < icmp6MaxLen { // RFC 8200 §5: every IPv6 link carries 1280 bytes
		return 0, ErrBadArgument
	}
	return buildICMPv6Error(dst, orig, src, ICMPv6PacketTooBig, 0, mtu)
}

func buildICMPv6Error(dst []byte, orig *Parsed, src netip.Addr, typ, code uint8, rest uint32) (int, error) {
	if !src.Is6() || src.Is4In6() || src.IsMulticast() || src.IsUnspecified() {
		return 0, ErrBadArgument
	}
	if orig.L3 != L3IPv6 || orig.Drop != DropNone {
		return 0, ErrNotAnswerable
	}
	// RFC 4443 §2.4(e): no error about an error or a redirect (errors
	// would beget errors), none to a source that names no single node,
	// and none about multicast or link-layer broadcast except packet too
	// big, which multicast path MTU discovery needs (one packet to a
	// group would otherwise draw an error from every member).
	switch {
	case orig.IsICMPError(), orig.L4 == L4ICMPv6 && orig.ICMPType == ICMPv6Redirect:
		return 0, ErrSuppressed
	case orig.SrcIP.IsUnspecified(), orig.SrcIP.IsMulticast(), orig.SrcIP.IsLoopback():
		return 0, ErrSuppressed
	case typ != ICMPv6PacketTooBig && (orig.DstIP.IsMulticast() || orig.EthDst.IsMulticast()):
		return 0, ErrSuppressed
	}
	hdr := l2Len(orig) + ipv6HdrLen + icmpHdrLen
	quote := orig.b[orig.L3Off:orig.L3End]
	quote = quote[:min(len(quote), icmp6MaxLen-ipv6HdrLen-icmpHdrLen, max(len(dst)-hdr, 0))]
	// At least the IPv6 header and 8 bytes (the ports), or the sender
	// cannot match the error to a socket.
	if len(quote) < min(ipv6HdrLen+8, orig.L3End-orig.L3Off) {
		return 0, ErrShortBuffer
	}
	o := replyL2(dst, orig, orig.EthDst, EtherTypeIPv6)
	mlen := icmpHdrLen + len(quote)
	putIPv6(dst[o:], 0, mlen, IPProtoICMPv6, defaultTTL, src, orig.SrcIP)
	o += ipv6HdrLen
	m := dst[o : o+mlen]
	m[0], m[1] = typ, code
	put16(m[2:], 0)
	put32(m[4:], rest)
	copy(m[icmpHdrLen:], quote)
	put16(m[2:], L4Checksum(src, orig.SrcIP, IPProtoICMPv6, m))
	return o + mlen, nil
}

// BuildNeighborAdvert writes the Neighbor Advertisement answering the
// solicitation decoded into ns: ns's target is at mac. Per RFC 4861
// §7.2.4 a solicitation from :: (duplicate address detection) is answered
// to all-nodes with S clear, any other to its sender with S set. O is set:
// the agent is the authority for the overlay's bindings, and a cleared O
// would keep a stale entry alive after a port moves to a new MAC. router
// sets R, for addresses owned by a virtual router.
func BuildNeighborAdvert(dst []byte, ns *Parsed, mac MAC, router bool) (int, error) {
	if ns.Drop != DropNone || !ns.IsNeighborSolicit() {
		return 0, ErrNotAnswerable
	}
	const mlen = ndFixedLen + 8 // target link-layer address option
	n := l2Len(ns) + ipv6HdrLen + mlen
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	to, flags := ns.SrcIP, NDSolicited|NDOverride
	if ns.SrcIP.IsUnspecified() {
		to, flags = allNodes, NDOverride
	}
	if router {
		flags |= NDRouter
	}
	o := replyL2(dst, ns, mac, EtherTypeIPv6)
	if ns.SrcIP.IsUnspecified() {
		am := multicastMAC(allNodes)
		copy(dst[0:6], am[:])
	}
	putIPv6(dst[o:], 0, mlen, IPProtoICMPv6, ndHopLimit, ns.NDTarget, to)
	o += ipv6HdrLen
	m := dst[o:n]
	m[0], m[1] = ICMPv6NeighborAdvert, 0
	put16(m[2:], 0)
	put32(m[4:], uint32(flags)<<24)
	t := ns.NDTarget.As16()
	copy(m[8:24], t[:])
	m[24], m[25] = 2, 1 // target link-layer address, 8 bytes
	copy(m[26:32], mac[:])
	put16(m[2:], L4Checksum(ns.NDTarget, to, IPProtoICMPv6, m))
	return n, nil
}

// BuildNeighborSolicit writes an untagged Neighbor Solicitation from srcMAC
// and src for target, to target's solicited-node group (RFC 4861 §7.2.2).
// With src unspecified it is a duplicate address detection probe and, as
// RFC 4861 §4.3 requires, carries no source link-layer address option.
func BuildNeighborSolicit(dst []byte, srcMAC MAC, src, target netip.Addr) (int, error) {
	if !src.Is6() || src.Is4In6() || !target.Is6() || target.Is4In6() || target.IsMulticast() {
		return 0, ErrBadArgument
	}
	mlen := ndFixedLen
	if !src.IsUnspecified() {
		mlen += 8
	}
	n := EthHeaderLen + ipv6HdrLen + mlen
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	group := solicitedNode(target)
	gm := multicastMAC(group)
	copy(dst[0:6], gm[:])
	copy(dst[6:12], srcMAC[:])
	put16(dst[12:], EtherTypeIPv6)
	putIPv6(dst[EthHeaderLen:], 0, mlen, IPProtoICMPv6, ndHopLimit, src, group)
	m := dst[EthHeaderLen+ipv6HdrLen : n]
	m[0], m[1] = ICMPv6NeighborSolicit, 0
	put16(m[2:], 0)
	put32(m[4:], 0)
	t := target.As16()
	copy(m[8:24], t[:])
	if mlen > ndFixedLen {
		m[24], m[25] = 1, 1 // source link-layer address, 8 bytes
		copy(m[26:32], srcMAC[:])
	}
	put16(m[2:], L4Checksum(src, group, IPProtoICMPv6, m))
	return n, nil
}

var allNodes = netip.AddrFrom16([16]byte{0xff, 0x02, 15: 1})

// solicitedNode returns ff02::1:ffXX:XXXX for a (RFC 4291 §2.7.1).
func solicitedNode(a netip.Addr) netip.Addr {
	t := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]})
}

// multicastMAC returns 33:33 followed by the low 32 bits of an IPv6
// multicast address (RFC 2464 §7).
func multicastMAC(a netip.Addr) MAC {
	t := a.As16()
	return MAC{0x33, 0x33, t[12], t[13], t[14], t[15]}
}
