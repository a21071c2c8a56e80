package packet

import (
	"errors"
	"net/netip"
)

// Builders write a whole frame into a buffer the caller owns and return the
// length used. Their errors are the sentinel values below, so a failing
// builder does not allocate either.
var (
	// ErrShortBuffer: the destination buffer cannot hold the frame.
	ErrShortBuffer = errors.New("packet: destination buffer too small")
	// ErrNotAnswerable: the input is not the kind of packet the builder
	// answers (not an ARP request, not an echo request, a dropped frame).
	ErrNotAnswerable = errors.New("packet: input is not a packet this builder answers")
	// ErrSuppressed: the RFCs forbid answering this packet with an error
	// (an ICMP error about an ICMP error, a broadcast, a later fragment, a
	// reset in answer to a reset), to keep error storms from forming.
	ErrSuppressed = errors.New("packet: RFCs forbid answering this packet with an error")
	// ErrBadArgument: an argument is out of range or of the wrong
	// address family.
	ErrBadArgument = errors.New("packet: argument out of range or wrong address family")
	// ErrMalformed: a tunnel header to decapsulate is short or invalid.
	ErrMalformed = errors.New("packet: malformed tunnel header")
)

// Generated packets start with this TTL / hop limit, the common default
// (Linux net.ipv4.ip_default_ttl).
const defaultTTL = 64

// replyL2 writes the Ethernet header of a reply to the frame decoded into
// req: to req's source, from src, with req's VLAN tags so the reply goes
// back on the VLAN the request came in on. It returns the header length.
func replyL2(dst []byte, req *Parsed, src MAC, ethType uint16) int {
	copy(dst[0:6], req.EthSrc[:])
	copy(dst[6:12], src[:])
	n := copy(dst[12:], req.b[12:req.L3Off-2]) + 12
	put16(dst[n:], ethType)
	return n + 2
}

// l2Len is the length of replyL2's header.
func l2Len(req *Parsed) int { return req.L3Off }

// putIPv4 writes a 20-byte IPv4 header and its checksum. Generated
// packets are at most 576 bytes, which every IPv4 path carries unfragmented
// in practice, so they are atomic datagrams (DF set, ID 0, RFC 6864) and
// need no ID generator.
func putIPv4(b []byte, tos uint8, total int, proto uint8, src, dst netip.Addr) {
	b[0] = 0x45
	b[1] = tos
	put16(b[2:], uint16(total))
	put16(b[4:], 0)
	put16(b[6:], 0x4000)
	b[8] = defaultTTL
	b[9] = proto
	put16(b[10:], 0)
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	put16(b[10:], IPv4HeaderChecksum(b[:IPv4MinHeaderLen]))
}

// putIPv6 writes a 40-byte IPv6 header.
func putIPv6(b []byte, tc uint8, payloadLen int, nh, hopLimit uint8, src, dst netip.Addr) {
	put32(b[0:], 6<<28|uint32(tc)<<20)
	put16(b[4:], uint16(payloadLen))
	b[6] = nh
	b[7] = hopLimit
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
}

// isUnicast4 reports whether a may be the source or destination of an
// ICMP error (RFC 1812 §4.3.2.7): not unspecified, loopback, limited
// broadcast, multicast or class E.
func isUnicast4(a netip.Addr) bool {
	if !a.Is4() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
		return false
	}
	return a.As4()[0] < 240 // class E, including 255.255.255.255
}
