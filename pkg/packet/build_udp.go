package packet

import "net/netip"

// UDP4HeaderLen is the length of the untagged Ethernet, IPv4 and UDP
// headers BuildUDP4 writes: the payload goes at dst[UDP4HeaderLen:].
const UDP4HeaderLen = EthHeaderLen + IPv4MinHeaderLen + UDPHeaderLen

// UDP4 addresses a datagram for BuildUDP4.
type UDP4 struct {
	EthSrc, EthDst   MAC
	Src, Dst         netip.Addr // IPv4
	SrcPort, DstPort uint16
}

// BuildUDP4 frames a UDP payload of payloadLen bytes that the caller has
// already written at dst[UDP4HeaderLen:]: it writes the untagged Ethernet,
// IPv4 and UDP headers in front of it, with both checksums, and returns
// the frame's length. The payload is built in place, not copied, because
// the callers (the agent's DHCP responder) write it field by field anyway.
// Like every generated packet the datagram is atomic (DF, ID 0) with TTL
// 64 and no IP options.
func BuildUDP4(dst []byte, h UDP4, payloadLen int) (int, error) {
	if !h.Src.Is4() || !h.Dst.Is4() || payloadLen < 0 || payloadLen > 0xffff-IPv4MinHeaderLen-UDPHeaderLen {
		return 0, ErrBadArgument
	}
	n := UDP4HeaderLen + payloadLen
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	copy(dst[0:6], h.EthDst[:])
	copy(dst[6:12], h.EthSrc[:])
	put16(dst[12:], EtherTypeIPv4)
	putIPv4(dst[EthHeaderLen:], 0, IPv4MinHeaderLen+UDPHeaderLen+payloadLen, IPProtoUDP, h.Src, h.Dst)
	u := dst[EthHeaderLen+IPv4MinHeaderLen : n]
	put16(u[0:], h.SrcPort)
	put16(u[2:], h.DstPort)
	put16(u[4:], uint16(UDPHeaderLen+payloadLen))
	put16(u[6:], 0)
	c := L4Checksum(h.Src, h.Dst, IPProtoUDP, u)
	if c == 0 {
		c = 0xffff // RFC 768: a zero checksum means "none" over IPv4
	}
	put16(u[6:], c)
	return n, nil
}
