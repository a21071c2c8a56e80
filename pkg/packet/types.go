package packet

import (
	"fmt"
	"strconv"
)

// MAC is an Ethernet address. An array rather than net.HardwareAddr (a slice)
// so that it is comparable, copies without allocating and fits in FlowKey.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether the I/G bit of m is set (IEEE 802: a group
// address). Broadcast is a group address too, so this is true for it.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// MarshalText renders the canonical lower-case colon form; the zero
// address is the empty string (an unset MAC in the API).
func (m MAC) MarshalText() ([]byte, error) {
	if m.IsZero() {
		return []byte{}, nil
	}
	return []byte(m.String()), nil
}

// UnmarshalText accepts aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff, and the
// empty string for the zero address.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMAC parses a 48-bit Ethernet address; "" is the zero address.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if s == "" {
		return m, nil
	}
	if len(s) != 17 {
		return m, fmt.Errorf("%q is not a MAC address (want aa:bb:cc:dd:ee:ff)", s)
	}
	for i := 0; i < 6; i++ {
		if i > 0 && s[i*3-1] != ':' && s[i*3-1] != '-' {
			return m, fmt.Errorf("%q is not a MAC address (want aa:bb:cc:dd:ee:ff)", s)
		}
		v, err := strconv.ParseUint(s[i*3:i*3+2], 16, 8)
		if err != nil {
			return m, fmt.Errorf("%q is not a MAC address (want aa:bb:cc:dd:ee:ff)", s)
		}
		m[i] = byte(v)
	}
	return m, nil
}

// EtherTypes the parser knows.
const (
	EtherTypeIPv4    uint16 = 0x0800
	EtherTypeARP     uint16 = 0x0806
	EtherTypeVLAN    uint16 = 0x8100 // 802.1Q C-tag
	EtherTypeQinQ    uint16 = 0x88a8 // 802.1ad S-tag
	EtherTypeIPv6    uint16 = 0x86dd
	EtherTypeTEB     uint16 = 0x6558 // transparent Ethernet bridging, the GRE payload type for L2 overlays
	EtherTypeERSPAN2 uint16 = 0x88BE // ERSPAN type II, the GRE payload type of mirrored frames
)

// IP protocol numbers (IPv4 protocol, IPv6 next header).
const (
	IPProtoHopByHop uint8 = 0
	IPProtoICMPv4   uint8 = 1
	IPProtoTCP      uint8 = 6
	IPProtoUDP      uint8 = 17
	IPProtoRouting  uint8 = 43
	IPProtoFragment uint8 = 44
	IPProtoGRE      uint8 = 47
	IPProtoICMPv6   uint8 = 58
	IPProtoNoNext   uint8 = 59
	IPProtoDestOpts uint8 = 60
	IPProtoSCTP     uint8 = 132
)

// ICMPv4 types (RFC 792).
const (
	ICMPv4EchoReply      uint8 = 0
	ICMPv4Unreachable    uint8 = 3
	ICMPv4SourceQuench   uint8 = 4
	ICMPv4Redirect       uint8 = 5
	ICMPv4EchoRequest    uint8 = 8
	ICMPv4TimeExceeded   uint8 = 11
	ICMPv4ParamProblem   uint8 = 12
	ICMPv4Timestamp      uint8 = 13
	ICMPv4TimestampReply uint8 = 14
)

// ICMPv4 destination unreachable codes used by the builders (RFC 792, RFC 1812).
const (
	ICMPv4NetUnreachable   uint8 = 0
	ICMPv4HostUnreachable  uint8 = 1
	ICMPv4ProtoUnreachable uint8 = 2
	ICMPv4PortUnreachable  uint8 = 3
	ICMPv4FragNeeded       uint8 = 4
	ICMPv4AdminProhibited  uint8 = 13
)

// ICMPv6 types (RFC 4443, RFC 4861).
const (
	ICMPv6Unreachable     uint8 = 1
	ICMPv6PacketTooBig    uint8 = 2
	ICMPv6TimeExceeded    uint8 = 3
	ICMPv6ParamProblem    uint8 = 4
	ICMPv6EchoRequest     uint8 = 128
	ICMPv6EchoReply       uint8 = 129
	ICMPv6RouterSolicit   uint8 = 133
	ICMPv6RouterAdvert    uint8 = 134
	ICMPv6NeighborSolicit uint8 = 135
	ICMPv6NeighborAdvert  uint8 = 136
	ICMPv6Redirect        uint8 = 137
)

// ICMPv6 destination unreachable codes (RFC 4443 §3.1).
const (
	ICMPv6NoRoute         uint8 = 0
	ICMPv6AdminProhibited uint8 = 1
	ICMPv6AddrUnreachable uint8 = 3
	ICMPv6PortUnreachable uint8 = 4
	ICMPv6RejectRoute     uint8 = 6
)

// TCP flag bits as they appear in byte 13 of the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// ARP operations.
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// NDFlag bits of a Neighbor Advertisement (RFC 4861 §4.4), in NDFlags.
const (
	NDRouter    uint8 = 0x80
	NDSolicited uint8 = 0x40
	NDOverride  uint8 = 0x20
)

// DefaultVXLANPort is the IANA VXLAN port (RFC 7348).
const DefaultVXLANPort = 4789

// MaxIPv6ExtHeaders bounds the IPv6 extension-header walk. RFC 8200's
// recommended order has at most six extension headers, and only four kinds
// are walked here; a longer chain is an attack on parsers (every header costs
// a bounds check and a branch) or a way to push the L4 header past what a
// middlebox inspects (RFC 7112), so it is dropped rather than walked.
const MaxIPv6ExtHeaders = 8

// Drop says why a frame must be dropped. DropNone means the frame decoded.
// An unknown EtherType or IP protocol is not a drop: such a frame is valid
// and simply decodes to fewer layers.
type Drop uint8

const (
	DropNone              Drop = iota
	DropTruncated              // frame ends inside a fixed-size header
	DropTooManyVLANs           // more than two VLAN tags
	DropBadARP                 // ARP that is not IPv4 over Ethernet
	DropBadIPVersion           // EtherType says IPv4/IPv6 but the version nibble disagrees
	DropBadIHL                 // IPv4 IHL < 5, or longer than the total length
	DropBadIPLength            // IP length field larger than the frame
	DropBadExtHeader           // IPv6 extension header chain malformed or misordered
	DropTooManyExtHeaders      // more than MaxIPv6ExtHeaders extension headers
	DropShortFragment          // first fragment without the whole L4 header
	DropOverlapFragment        // later fragment overlapping where the L4 header lives
	DropBadL4Header            // TCP data offset or UDP length inconsistent, L4 header short
	DropBadICMP                // ICMP error without a quoted IP header
	DropBadND                  // Neighbor Discovery message failing RFC 4861 validity checks
	DropBadVXLAN               // VXLAN header short or I flag clear
	DropBadGRE                 // GRE header short, reserved bits set or version != 0
	numDrops
)

var dropNames = [numDrops]string{
	DropNone:              "none",
	DropTruncated:         "truncated",
	DropTooManyVLANs:      "too_many_vlans",
	DropBadARP:            "bad_arp",
	DropBadIPVersion:      "bad_ip_version",
	DropBadIHL:            "bad_ihl",
	DropBadIPLength:       "bad_ip_length",
	DropBadExtHeader:      "bad_ext_header",
	DropTooManyExtHeaders: "too_many_ext_headers",
	DropShortFragment:     "short_fragment",
	DropOverlapFragment:   "overlap_fragment",
	DropBadL4Header:       "bad_l4_header",
	DropBadICMP:           "bad_icmp",
	DropBadND:             "bad_nd",
	DropBadVXLAN:          "bad_vxlan",
	DropBadGRE:            "bad_gre",
}

// String returns a snake_case name fit for a metrics label. It does not
// allocate.
func (d Drop) String() string {
	if d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// L3 is the network layer a frame carries.
type L3 uint8

const (
	// L3None: no network layer was decoded, because the Ethernet header
	// was short or the L3 header was malformed (Drop says which).
	L3None L3 = iota
	// L3Unknown: a valid L2-only frame whose EtherType this package does
	// not parse (LLDP, an 802.3 length field, MPLS, ...).
	L3Unknown
	L3ARP
	L3IPv4
	L3IPv6
)

func (l L3) String() string {
	switch l {
	case L3None:
		return "none"
	case L3Unknown:
		return "unknown"
	case L3ARP:
		return "arp"
	case L3IPv4:
		return "ipv4"
	case L3IPv6:
		return "ipv6"
	}
	return "invalid"
}

// L4 is the transport header a frame carries.
type L4 uint8

const (
	// L4None: no L4 header was decoded (not IP, a non-first fragment,
	// no-next-header, or a malformed L4 header).
	L4None L4 = iota
	// L4Other: an IP protocol whose header is not parsed; IPProto says which.
	L4Other
	L4TCP
	L4UDP
	L4ICMPv4
	L4ICMPv6
	L4GRE
)

func (l L4) String() string {
	switch l {
	case L4None:
		return "none"
	case L4Other:
		return "other"
	case L4TCP:
		return "tcp"
	case L4UDP:
		return "udp"
	case L4ICMPv4:
		return "icmpv4"
	case L4ICMPv6:
		return "icmpv6"
	case L4GRE:
		return "gre"
	}
	return "invalid"
}

// Frag classifies a packet by IP fragmentation.
type Frag uint8

const (
	FragNone  Frag = iota // not a fragment (including IPv6 atomic fragments, RFC 6946)
	FragFirst             // offset 0, more fragments follow: carries the L4 header
	FragLater             // offset > 0: carries no L4 header
)

func (f Frag) String() string {
	switch f {
	case FragNone:
		return "none"
	case FragFirst:
		return "first"
	case FragLater:
		return "later"
	}
	return "invalid"
}

// Tunnel is the overlay encapsulation found in a frame.
type Tunnel uint8

const (
	TunnelNone Tunnel = iota
	TunnelVXLAN
	TunnelGRE
	// TunnelERSPAN is ERSPAN type II over GRE: what port mirrors send
	// (EncapMirror); frames are never decoded as it.
	TunnelERSPAN
)

func (t Tunnel) String() string {
	switch t {
	case TunnelNone:
		return "none"
	case TunnelVXLAN:
		return "vxlan"
	case TunnelGRE:
		return "gre"
	case TunnelERSPAN:
		return "erspan"
	}
	return "invalid"
}

// VLANTag is one decoded 802.1Q/802.1ad tag.
type VLANTag struct {
	TPID uint16 // EtherTypeVLAN or EtherTypeQinQ
	VID  uint16 // 12-bit VLAN identifier
	PCP  uint8  // 3-bit priority code point
	DEI  bool   // drop eligible indicator
}
