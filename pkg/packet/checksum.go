package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// The Internet checksum (RFC 1071) is the one's complement of the one's
// complement sum of 16-bit words. Because 2^16-1 divides 2^64-1, summing
// 64-bit words with end-around carry and folding at the end gives the same
// result four times faster than summing 16-bit words.

// sumBytes adds b, as big-endian 16-bit words (an odd last byte padded with
// zero), to the running one's complement sum s.
func sumBytes(b []byte, s uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	var t uint64
	if len(b) >= 4 {
		t = uint64(binary.BigEndian.Uint32(b)) << 32
		b = b[4:]
	}
	if len(b) >= 2 {
		t |= uint64(binary.BigEndian.Uint16(b)) << 16
		b = b[2:]
	}
	if len(b) == 1 {
		t |= uint64(b[0]) << 8
	}
	// t < 2^64-1 (its low byte is zero), so s+t+c < 2^65-1: the result
	// cannot be all ones with a carry out, and adding the carry back
	// cannot overflow.
	s, c = bits.Add64(s, t, c)
	return s + c
}

// foldChecksum folds a running sum to 16 bits and complements it.
func foldChecksum(s uint64) uint16 {
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// Checksum returns the Internet checksum of b, seeded with initial, a
// partial sum such as PseudoHeaderSum returns (0 for none). Written into
// a header whose checksum field was zero, it makes the header verify;
// over data that includes a correct checksum it returns 0.
func Checksum(b []byte, initial uint32) uint16 {
	return foldChecksum(sumBytes(b, uint64(initial)))
}

// IPv4HeaderChecksum returns the checksum for an IPv4 header hdr (with
// options) whose checksum field is zero; over a header that verifies it
// returns 0.
func IPv4HeaderChecksum(hdr []byte) uint16 { return Checksum(hdr, 0) }

// PseudoHeaderSum returns the partial sum of the TCP/UDP/ICMPv6 pseudo
// header (RFC 793 §3.1 for IPv4, RFC 8200 §8.1 for IPv6) for use as the
// initial value of Checksum. src and dst must both be IPv4 or both IPv6;
// l4Len is the upper-layer length (header + payload).
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, l4Len int) uint32 {
	s := uint64(proto) + uint64(uint32(l4Len))
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s += uint64(binary.BigEndian.Uint32(a[:])) + uint64(binary.BigEndian.Uint32(b[:]))
	} else {
		a, b := src.As16(), dst.As16()
		s = sumBytes(a[:], s)
		s = sumBytes(b[:], s)
	}
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	return uint32(s)
}

// L4Checksum returns the checksum of an upper-layer segment l4 (with its
// checksum field zero) under the pseudo header of src, dst and proto. For
// UDP the caller maps a result of 0 to 0xffff (RFC 768: 0 means "no
// checksum").
func L4Checksum(src, dst netip.Addr, proto uint8, l4 []byte) uint16 {
	return Checksum(l4, PseudoHeaderSum(src, dst, proto, len(l4)))
}

// Incremental updates, RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Unlike the
// RFC 1141 shortcut this never produces -0 (0xffff) where a full
// recomputation gives +0, so the two agree bit for bit on any data that is
// not entirely zero, which no header is (checksum_test.go checks it).

// UpdateChecksum16 returns checksum sum updated for a 16-bit word of the
// covered data changing from old to new.
func UpdateChecksum16(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// UpdateChecksum32 returns checksum sum updated for an aligned 32-bit
// field (an IPv4 address, a TCP sequence number) changing from old to new.
func UpdateChecksum32(sum uint16, old, new uint32) uint16 {
	s := uint64(^sum) + uint64(^old&0xffff) + uint64(^old>>16) + uint64(new&0xffff) + uint64(new>>16)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// UpdateChecksumAddr returns checksum sum updated for an address in the
// covered data (or its pseudo header) changing from old to new. Both must
// be IPv4 or both IPv6.
func UpdateChecksumAddr(sum uint16, old, new netip.Addr) uint16 {
	if old.Is4() {
		a, b := old.As4(), new.As4()
		return UpdateChecksum32(sum, binary.BigEndian.Uint32(a[:]), binary.BigEndian.Uint32(b[:]))
	}
	a, b := old.As16(), new.As16()
	s := uint64(^sum)
	for i := 0; i < 16; i += 2 {
		s += uint64(^binary.BigEndian.Uint16(a[i:])) + uint64(binary.BigEndian.Uint16(b[i:]))
	}
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}
