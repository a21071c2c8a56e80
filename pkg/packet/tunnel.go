package packet

// Tunnel encapsulation for the underlay sockets. The agent sends VXLAN over
// an ordinary UDP socket and GRE over a raw IP socket (protocol 47), so the
// kernel writes the outer IP (and UDP) headers and routes them; these
// functions handle only the tunnel header and the inner frame.

const (
	vxlanFlagI = 0x08
	greHdrLen  = 8 // flags, protocol, key
)

// Tunnel keys: a VXLAN VNI and a Nagare GRE key are 24 bits and name the
// egress port (MidoNet's "tunnel key = port"). Zero is "no port".
const (
	// MaxTunnelKey is the largest 24-bit key.
	MaxTunnelKey = 1<<24 - 1
	// StateTunnelKey is the key of flow-state packets, reserved as in
	// MidoNet: the NSDB never gives it to a port.
	StateTunnelKey = MaxTunnelKey
	// ProbeTunnelKey is the key of the agents' liveness probes of the
	// gateways and the gateways' answers (pkg/agent/gateway), reserved
	// likewise: they ride the same tunnels as the data they vouch for.
	ProbeTunnelKey = MaxTunnelKey - 1
)

// ReservedTunnelKey reports whether key is kept from ports: zero ("no
// port") and the keys of the agents' own packets.
func ReservedTunnelKey(key uint32) bool {
	return key == 0 || key == StateTunnelKey || key == ProbeTunnelKey
}

// EncapVXLAN writes an 8-byte VXLAN header (I flag, vni) followed by inner,
// an Ethernet frame, into dst, and returns the length written: the payload
// for a UDP socket bound to the VXLAN port.
func EncapVXLAN(dst []byte, inner []byte, vni uint32) (int, error) {
	if vni > MaxTunnelKey {
		return 0, ErrBadArgument
	}
	n := vxlanHdrLen + len(inner)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	put32(dst[0:], vxlanFlagI<<24)
	put32(dst[4:], vni<<8)
	copy(dst[vxlanHdrLen:], inner)
	return n, nil
}

// DecapVXLAN splits b, a VXLAN UDP payload, into its VNI and inner
// Ethernet frame (a subslice of b). A header without the I flag is
// malformed: its VNI means nothing (RFC 7348 §5).
func DecapVXLAN(b []byte) (vni uint32, inner []byte, err error) {
	if len(b) < vxlanHdrLen || b[0]&vxlanFlagI == 0 {
		return 0, nil, ErrMalformed
	}
	return be32(b[4:]) >> 8, b[vxlanHdrLen:], nil
}

// EncapGRE writes a GRE header with key (RFC 2890: K bit, no checksum, no
// sequence number; protocol transparent Ethernet bridging) followed by
// inner, an Ethernet frame, into dst, and returns the length written: the
// payload for a raw IP socket of protocol 47. No checksum because the inner
// frame's own L4 checksums protect what matters and a GRE checksum would
// cost a pass over every byte; no sequence number because the overlay does
// not promise ordering.
func EncapGRE(dst []byte, inner []byte, key uint32) (int, error) {
	n := greHdrLen + len(inner)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	put16(dst[0:], greK)
	put16(dst[2:], EtherTypeTEB)
	put32(dst[4:], key)
	copy(dst[greHdrLen:], inner)
	return n, nil
}

// DecapGRE splits b, starting at a GRE header, into its key and inner
// Ethernet frame (a subslice of b). An IPv4 raw socket delivers the IP
// header before the GRE header: the caller skips it (IHL*4 bytes) first.
// Only transparent Ethernet bridging with a key is accepted, since the
// key is what names the virtual network; a checksum or sequence number, if
// present, is skipped unverified.
func DecapGRE(b []byte) (key uint32, inner []byte, err error) {
	h, drop := parseGRE(b)
	if drop != DropNone || !h.hasKey || h.proto != EtherTypeTEB {
		return 0, nil, ErrMalformed
	}
	return h.key, b[h.hdrLen:], nil
}

// Mirror encapsulation: what a port mirror sends to its remote endpoint
// (Neutron's tap-mirror, OVN's GRE and ERSPAN mirrors).
const (
	erspanHdrLen = 8
	// MirrorHdrMax is the most EncapMirror writes before the frame.
	MirrorHdrMax = greHdrLen + erspanHdrLen
)

// EncapMirror writes a mirror's tunnel header and the mirrored frame into
// dst and returns the length written, the payload of an IPv4 packet of
// protocol 47. GRE is transparent Ethernet bridging with key (all 32 bits
// of it, unlike the overlay's 24); ERSPAN is type II (RFC-less but
// universal: GRE with a sequence number, protocol 0x88BE, then version 1,
// the frame's VLAN, the session ID, which is key's low 10 bits, and index
// 0). seq numbers an ERSPAN session's packets.
func EncapMirror(dst, inner []byte, kind Tunnel, key, seq uint32) (int, error) {
	switch kind {
	case TunnelGRE:
		return EncapGRE(dst, inner, key)
	case TunnelERSPAN:
	default:
		return 0, ErrBadArgument
	}
	n := greHdrLen + erspanHdrLen + len(inner)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	put16(dst[0:], greS)
	put16(dst[2:], EtherTypeERSPAN2)
	put32(dst[4:], seq)
	var vlan, en uint16
	if len(inner) >= 18 && (be16(inner[12:]) == EtherTypeVLAN || be16(inner[12:]) == EtherTypeQinQ) {
		vlan, en = be16(inner[14:])&0x0fff, 3 // the tag is kept in the frame
	}
	put16(dst[8:], 1<<12|vlan)
	put16(dst[10:], en<<11|uint16(key&0x3ff))
	put32(dst[12:], 0)
	copy(dst[greHdrLen+erspanHdrLen:], inner)
	return n, nil
}

// DecapMirror splits a mirror's GRE or ERSPAN II payload (after the outer
// IP header) into its encapsulation, key (GRE key or ERSPAN session ID)
// and mirrored frame: what a collector does.
func DecapMirror(b []byte) (kind Tunnel, key uint32, inner []byte, err error) {
	h, drop := parseGRE(b)
	switch {
	case drop != DropNone:
		return 0, 0, nil, ErrMalformed
	case h.proto == EtherTypeTEB && h.hasKey:
		return TunnelGRE, h.key, b[h.hdrLen:], nil
	case h.proto == EtherTypeERSPAN2 && len(b) >= h.hdrLen+erspanHdrLen && b[h.hdrLen]>>4 == 1:
		return TunnelERSPAN, uint32(be16(b[h.hdrLen+2:]) & 0x3ff), b[h.hdrLen+erspanHdrLen:], nil
	}
	return 0, 0, nil, ErrMalformed
}
