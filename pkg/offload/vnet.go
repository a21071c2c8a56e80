package offload

import (
	"encoding/binary"

	"github.com/nagare/nagare/pkg/packet"
)

// HdrLen is the size of struct virtio_net_hdr, the header PACKET_VNET_HDR
// puts in front of every frame a packet socket receives or sends.
const HdrLen = 10

// Flags of Hdr.Flags (include/uapi/linux/virtio_net.h).
const (
	// FlagNeedsCsum: the checksum field at CsumStart+CsumOffset holds the
	// pseudo-header sum; the sum from CsumStart to the end of the packet
	// is still to be folded into it.
	FlagNeedsCsum uint8 = 1
	// FlagDataValid: the receiver already verified the checksum.
	FlagDataValid uint8 = 2
)

// GSO types of Hdr.GSOType.
const (
	GSONone  uint8 = 0
	GSOTCPv4 uint8 = 1
	GSOUDP   uint8 = 3 // UDP fragmentation offload: gone from Linux, refused
	GSOTCPv6 uint8 = 4
	GSOUDPL4 uint8 = 5    // UDP segmentation (UDP_SEGMENT): one datagram per segment
	GSOECN   uint8 = 0x80 // with TCP: the super-frame has CWR set, which goes on the first segment only
)

// Segment count bounds. Linux's own checks (virtio_net_hdr_to_skb) allow
// UDP_MAX_SEGMENTS datagrams per UDP super-frame; for TCP the kernel's
// smallest MSS (tcp_min_snd_mss, 48 bytes) cuts a 64 KiB super-frame into
// 1366 segments, so no honest TCP stack goes past MaxSegments. A bound
// keeps a guest from having the datapath build tens of thousands of frames
// out of one.
const (
	MaxSegments    = 2048
	MaxUDPSegments = 128
)

// Hdr is a struct virtio_net_hdr: a frame's offload state.
type Hdr struct {
	Flags   uint8
	GSOType uint8
	// HdrLen is the length of the headers (Ethernet to the end of the L4
	// header) of a GSO frame. A hint only; the datapath recomputes it.
	HdrLen uint16
	// GSOSize is the payload of one segment (the MSS for TCP).
	GSOSize uint16
	// CsumStart is where the checksummed data starts (the L4 header),
	// CsumOffset where the checksum field is, relative to CsumStart.
	CsumStart, CsumOffset uint16
}

// Decode reads a header from b, which must hold HdrLen bytes. Packet
// sockets and taps without TUNSETVNETLE use the host's byte order (the
// kernel's vio_le() is virtio_legacy_is_little_endian()).
func Decode(b []byte) Hdr {
	_ = b[HdrLen-1]
	return Hdr{
		Flags: b[0], GSOType: b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:]),
	}
}

// Encode writes h into b, which must hold HdrLen bytes.
func (h *Hdr) Encode(b []byte) {
	_ = b[HdrLen-1]
	b[0], b[1] = h.Flags, h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
}

// NeedsCsum reports a partial checksum.
func (h *Hdr) NeedsCsum() bool { return h.Flags&FlagNeedsCsum != 0 }

// GSO returns the GSO type without the ECN bit.
func (h *Hdr) GSO() uint8 { return h.GSOType &^ GSOECN }

// IsGSO reports a super-frame.
func (h *Hdr) IsGSO() bool { return h.GSO() != GSONone }

// IsZero reports a frame with no offload state: complete and unsegmented.
func (h *Hdr) IsZero() bool { return h.Flags&FlagNeedsCsum == 0 && h.GSOType == GSONone }

// Error says why a frame's offload metadata cannot be honoured. Its
// String is a metrics label.
type Error uint8

const (
	// OK: the metadata is consistent with the frame.
	OK Error = iota
	// ErrCsumOutside: NEEDS_CSUM with csum_start or the checksum field
	// outside the frame.
	ErrCsumOutside
	// ErrHdrLen: a header length longer than the frame.
	ErrHdrLen
	// ErrGSOType: a GSO type other than TCPv4, TCPv6 and UDP_L4 (UFO,
	// unknown values, ECN on UDP).
	ErrGSOType
	// ErrGSOMismatch: the GSO type contradicts the headers (TCPv4 on a
	// frame that is not IPv4 TCP, TCPv6 on one that is not IPv6 TCP,
	// UDP_L4 on one that is not UDP), or the frame is an IP fragment.
	ErrGSOMismatch
	// ErrGSOSize: a GSO size of zero, or more segments than MaxSegments
	// (MaxUDPSegments for UDP).
	ErrGSOSize
	// ErrGSOCsum: a GSO frame whose partial checksum is not its L4
	// checksum, so the segments' checksums could not be derived from it.
	ErrGSOCsum
	numErrors
)

var errorNames = [numErrors]string{
	OK:             "ok",
	ErrCsumOutside: "csum-outside",
	ErrHdrLen:      "hdr-len",
	ErrGSOType:     "gso-type",
	ErrGSOMismatch: "gso-mismatch",
	ErrGSOSize:     "gso-size",
	ErrGSOCsum:     "gso-csum",
}

func (e Error) String() string {
	if e < numErrors {
		return errorNames[e]
	}
	return "unknown"
}

// Errors lists every Error but OK, for tests and metrics.
func Errors() []Error {
	e := make([]Error, 0, numErrors-1)
	for i := OK + 1; i < numErrors; i++ {
		e = append(e, i)
	}
	return e
}

// Check checks h against p, the frame it came with, decoded (p.Drop ==
// DropNone). A frame that passes can have its checksum completed, and if
// it is a super-frame, be segmented by a Segmenter.
func Check(h *Hdr, p *packet.Parsed) Error {
	n := len(p.Frame())
	if h.NeedsCsum() && int(h.CsumStart)+int(h.CsumOffset)+2 > n {
		return ErrCsumOutside
	}
	if int(h.HdrLen) > n {
		return ErrHdrLen
	}
	if h.GSOType == GSONone {
		return OK
	}
	switch g := h.GSO(); {
	case g == GSOTCPv4 || g == GSOTCPv6:
		if p.L4 != packet.L4TCP || (g == GSOTCPv4) != (p.L3 == packet.L3IPv4) {
			return ErrGSOMismatch
		}
	case g == GSOUDPL4 && h.GSOType&GSOECN == 0:
		if p.L4 != packet.L4UDP {
			return ErrGSOMismatch
		}
	default:
		return ErrGSOType
	}
	if p.Frag != packet.FragNone {
		return ErrGSOMismatch
	}
	if h.GSOSize == 0 {
		return ErrGSOSize
	}
	limit := MaxSegments
	if p.L4 == packet.L4UDP {
		limit = MaxUDPSegments
	}
	if payload := PayloadEnd(p) - p.PayloadOff; payload > limit*int(h.GSOSize) {
		return ErrGSOSize
	}
	if h.NeedsCsum() && !IsL4Csum(h, p) {
		return ErrGSOCsum
	}
	return OK
}

// IsL4Csum reports whether h's partial checksum is p's TCP or UDP checksum
// (rather than some other 16-bit field a sender asked to have summed).
// Only then can rewrites keep it partial (packet.Parsed.L4CsumPartial).
func IsL4Csum(h *Hdr, p *packet.Parsed) bool {
	if !h.NeedsCsum() || int(h.CsumStart) != p.L4Off {
		return false
	}
	switch p.L4 {
	case packet.L4TCP:
		return h.CsumOffset == 16
	case packet.L4UDP:
		return h.CsumOffset == 6
	}
	return false
}

// PayloadEnd returns where p's L4 payload ends: the end of the IP
// datagram, or of the UDP datagram, which may be shorter.
func PayloadEnd(p *packet.Parsed) int {
	if p.L4 == packet.L4UDP {
		return p.L4Off + int(be16(p.Frame()[p.L4Off+4:]))
	}
	return p.L3End
}

// SegmentIPLen returns the IP datagram length of the largest segment of
// super-frame p (h.IsGSO(), checked): what an MTU applies to. For a frame
// that is not GSO it is the frame's own datagram length.
func SegmentIPLen(h *Hdr, p *packet.Parsed) int {
	whole := p.L3End - p.L3Off
	if !h.IsGSO() {
		return whole
	}
	return min(whole, p.PayloadOff-p.L3Off+int(h.GSOSize))
}

// OverPortMTU reports a frame its port could not have carried: its L3
// packet (or its segments') longer than the port's MTU.
func OverPortMTU(h *Hdr, p *packet.Parsed, mtu int) bool {
	if p.L3 == packet.L3IPv4 || p.L3 == packet.L3IPv6 {
		return SegmentIPLen(h, p) > mtu
	}
	return len(p.Frame())-p.L3Off > mtu
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// Shift moves the offsets of h by delta bytes, for a frame whose headers
// grew (a VLAN tag pushed: +4) or shrank in front of the L3 header.
func (h *Hdr) Shift(delta int) {
	if h.NeedsCsum() {
		h.CsumStart = uint16(int(h.CsumStart) + delta)
	}
	if h.HdrLen != 0 {
		h.HdrLen = uint16(int(h.HdrLen) + delta)
	}
}
