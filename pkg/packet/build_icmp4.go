package packet

import "net/netip"

// icmp4MaxLen caps a generated ICMPv4 error's IP datagram (RFC 1812
// §4.3.2.3: as much of the original as fits in 576 bytes).
const icmp4MaxLen = 576

// BuildICMPv4EchoReply writes the reply to the ICMPv4 echo request decoded
// into req: addresses and MACs swapped, the same VLANs, identifier,
// sequence and data, a fresh IP header without options. The reply comes
// from req's destination, so the caller must not use it for a request to
// a subnet broadcast; a request to a multicast or limited broadcast address
// is refused, as the reply would have to come from a unicast address the
// builder does not know. A fragmented request is refused: reassemble first.
func BuildICMPv4EchoReply(dst []byte, req *Parsed) (int, error) {
	if req.Drop != DropNone || req.L4 != L4ICMPv4 || req.ICMPType != ICMPv4EchoRequest || req.Frag != FragNone {
		return 0, ErrNotAnswerable
	}
	if !isUnicast4(req.DstIP) {
		return 0, ErrNotAnswerable
	}
	msg := req.b[req.L4Off:req.L3End]
	n := l2Len(req) + IPv4MinHeaderLen + len(msg)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	o := replyL2(dst, req, req.EthDst, EtherTypeIPv4)
	putIPv4(dst[o:], req.TOS, IPv4MinHeaderLen+len(msg), IPProtoICMPv4, req.DstIP, req.SrcIP)
	o += IPv4MinHeaderLen
	copy(dst[o:], msg)
	dst[o] = ICMPv4EchoReply
	dst[o+1] = 0
	put16(dst[o+2:], 0)
	put16(dst[o+2:], Checksum(dst[o:n], 0))
	return n, nil
}

// BuildICMPv4TimeExceeded writes a time exceeded in transit (type 11 code
// 0) about the packet decoded into orig, from the router address src.
func BuildICMPv4TimeExceeded(dst []byte, orig *Parsed, src netip.Addr) (int, error) {
	return buildICMPv4Error(dst, orig, src, ICMPv4TimeExceeded, 0, 0)
}

// BuildICMPv4Unreachable writes a destination unreachable (type 3) with
// code about the packet decoded into orig, from src. For code
// ICMPv4FragNeeded use BuildICMPv4FragNeeded, which carries the MTU.
func BuildICMPv4Unreachable(dst []byte, orig *Parsed, src netip.Addr, code uint8) (int, error) {
	if code == ICMPv4FragNeeded || code > 15 {
		return 0, ErrBadArgument
	}
	return buildICMPv4Error(dst, orig, src, ICMPv4Unreachable, code, 0)
}

// BuildICMPv4FragNeeded writes "fragmentation needed and DF set" (type 3
// code 4) with the next-hop MTU (RFC 1191 §4) about the packet decoded
// into orig, from src: what path MTU discovery relies on.
func BuildICMPv4FragNeeded(dst []byte, orig *Parsed, src netip.Addr, mtu uint16) (int, error) {
	if mtu < 68 { // RFC 791: every IPv4 link carries 68 bytes
		return 0, ErrBadArgument
	}
	return buildICMPv4Error(dst, orig, src, ICMPv4Unreachable, ICMPv4FragNeeded, uint32(mtu))
}

// buildICMPv4Error writes an ICMPv4 error quoting orig's IP header and as
// much of its data as fits in 576 bytes, and in dst. rest is the second
// word of the ICMP header (the MTU for frag-needed).
func buildICMPv4Error(dst []byte, orig *Parsed, src netip.Addr, typ, code uint8, rest uint32) (int, error) {
	if !src.Is4() {
		return 0, ErrBadArgument
	}
	if orig.L3 != L3IPv4 {
		return 0, ErrNotAnswerable
	}
	if err := icmp4ErrorAllowed(orig); err != nil {
		return 0, err
	}
	hdr := l2Len(orig) + IPv4MinHeaderLen + icmpHdrLen
	ihl := orig.L4Off - orig.L3Off
	quote := orig.b[orig.L3Off:orig.L3End]
	quote = quote[:min(len(quote), icmp4MaxLen-IPv4MinHeaderLen-icmpHdrLen, max(len(dst)-hdr, 0))]
	// RFC 792: at least the IP header and 8 bytes of data (all of it, if
	// shorter), which is what lets the sender match the error to a socket.
	if len(quote) < min(ihl+8, orig.L3End-orig.L3Off) {
		return 0, ErrShortBuffer
	}
	o := replyL2(dst, orig, orig.EthDst, EtherTypeIPv4)
	// RFC 1812 §4.3.2.5: errors are sent with precedence 6, internetwork
	// control, so they survive the congestion that may have caused them.
	putIPv4(dst[o:], 0xc0, IPv4MinHeaderLen+icmpHdrLen+len(quote), IPProtoICMPv4, src, orig.SrcIP)
	o += IPv4MinHeaderLen
	m := dst[o : o+icmpHdrLen+len(quote)]
	m[0], m[1] = typ, code
	put16(m[2:], 0)
	put32(m[4:], rest)
	copy(m[icmpHdrLen:], quote)
	put16(m[2:], Checksum(m, 0))
	return o + len(m), nil
}

// icmp4ErrorAllowed applies RFC 1812 §4.3.2.7: no ICMP error about an
// ICMP error (errors would beget errors forever), about a later fragment
// (only the first names the flow), about a link-layer or IP broadcast or
// multicast (one packet would draw a storm of errors at a victim), or to a
// source that does not name one host (a spoofed 0.0.0.0 or 127.0.0.1 would
// aim the error nowhere useful). A subnet-directed broadcast cannot be
// recognised without the subnet: the caller, which knows it, checks that.
func icmp4ErrorAllowed(p *Parsed) error {
	switch {
	case p.Drop != DropNone:
		return ErrNotAnswerable
	case p.Frag == FragLater, p.IsICMPError():
		return ErrSuppressed
	case p.EthDst.IsMulticast(), !isUnicast4(p.DstIP), !isUnicast4(p.SrcIP):
		return ErrSuppressed
	}
	return nil
}
