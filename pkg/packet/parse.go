package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header lengths, exported for code that frames payloads around this
// package's builders or checks what Decode reports.
const (
	EthHeaderLen     = 14 // untagged
	IPv4MinHeaderLen = 20 // no options
	UDPHeaderLen     = 8
)

const (
	vlanTagLen  = 4
	arpLen      = 28
	ipv6HdrLen  = 40
	tcpMinLen   = 20
	icmpHdrLen  = 8
	vxlanHdrLen = 8
	greMinLen   = 4
	ndFixedLen  = 24 // NS/NA: ICMPv6 header, flags/reserved, target
)

// minLaterFragOff is the lowest fragment offset, in 8-byte units, accepted
// for a non-first fragment. RFC 1858 §3 (overlapping fragment attack): a
// later fragment at a small offset overlaps the L4 header of the first
// fragment; a reassembler that lets later data win then sees ports or TCP
// flags different from the ones the flow was matched and filtered on. 64
// bytes covers the largest TCP header (60); no honest sender produces a
// non-first fragment that close to the start (links carry at least 68
// bytes, IPv6 links 1280), so nothing legitimate is lost.
const minLaterFragOff = 8

// Parsed is a frame decoded in place by Decode. Decode overwrites every
// field, so one Parsed can be reused for every frame a goroutine handles.
//
// Layers are decoded outer to inner and the layer enums (L3, L4, Tunnel)
// are set only once that layer's header has been checked, so on a drop they
// say how far decoding got; the fields of a layer are valid iff its enum
// says so. A frame with Drop != DropNone must not be forwarded.
type Parsed struct {
	// b is the frame given to Decode. Rewrites modify it in place.
	b []byte
	// end is where the L4 payload ends: L3End, or less for a UDP datagram
	// shorter than its IP payload. Valid iff L4 is TCP, UDP, ICMPv4 or ICMPv6.
	end int

	// Drop is why the frame must be dropped, DropNone if it decoded.
	// Always valid.
	Drop Drop
	// L3 is the network layer decoded. Always valid.
	L3 L3
	// L4 is the transport header decoded. Always valid.
	L4 L4
	// Tunnel is the encapsulation decoded. Always valid.
	Tunnel Tunnel
	// Frag is the IP fragment class. Valid iff L3 is L3IPv4 or L3IPv6.
	Frag Frag

	// L3Off is the offset of the L3 header: 14, plus 4 per VLAN tag.
	// Zero iff the Ethernet header (with its tags) did not fit; the L2
	// fields below are valid iff L3Off != 0.
	L3Off int
	// EthDst is the Ethernet destination. Valid iff L3Off != 0.
	EthDst MAC
	// EthSrc is the Ethernet source. Valid iff L3Off != 0.
	EthSrc MAC
	// EtherType is the EtherType after the VLAN tags (or an 802.3 length
	// if < 0x0600). Valid iff L3Off != 0.
	EtherType uint16
	// VLANs is the number of VLAN tags, 0 to 2. Valid iff L3Off != 0.
	VLANs uint8
	// VLAN holds the tags, outermost first. VLAN[i] is valid iff i < VLANs.
	VLAN [2]VLANTag

	// ARPOp is the ARP operation. Valid iff L3 == L3ARP.
	ARPOp uint16
	// ARPSenderMAC is the sender hardware address. Valid iff L3 == L3ARP.
	ARPSenderMAC MAC
	// ARPTargetMAC is the target hardware address. Valid iff L3 == L3ARP.
	ARPTargetMAC MAC
	// ARPSenderIP is the sender protocol address. Valid iff L3 == L3ARP.
	ARPSenderIP netip.Addr
	// ARPTargetIP is the target protocol address. Valid iff L3 == L3ARP.
	ARPTargetIP netip.Addr

	// SrcIP is the IP source. Valid iff L3 is L3IPv4 or L3IPv6.
	SrcIP netip.Addr
	// DstIP is the IP destination. Valid iff L3 is L3IPv4 or L3IPv6.
	DstIP netip.Addr
	// IPProto is the upper-layer protocol: the IPv4 protocol, or the IPv6
	// next header after the walked extension headers (for a non-first IPv6
	// fragment, the fragment header's next header). Valid iff L3 is L3IPv4
	// or L3IPv6.
	IPProto uint8
	// TOS is the IPv4 TOS byte or the IPv6 traffic class (DSCP << 2 | ECN).
	// Valid iff L3 is L3IPv4 or L3IPv6.
	TOS uint8
	// TTL is the IPv4 TTL or the IPv6 hop limit. Valid iff L3 is L3IPv4 or
	// L3IPv6.
	TTL uint8
	// IPChecksumOK reports whether the IPv4 header checksum verifies.
	// Recorded, not enforced: the caller decides (and counts). Valid iff
	// L3 == L3IPv4.
	IPChecksumOK bool
	// DontFrag is the IPv4 DF flag. Valid iff L3 == L3IPv4.
	DontFrag bool
	// MoreFrags is the MF flag (IPv4) or M flag (IPv6 fragment header).
	// Valid iff L3 is L3IPv4 or L3IPv6.
	MoreFrags bool
	// FragOff is the fragment offset in 8-byte units, as on the wire.
	// Valid iff L3 is L3IPv4 or L3IPv6.
	FragOff uint16
	// FragID is the IPv4 identification, or the IPv6 fragment header
	// identification. Valid iff L3 == L3IPv4, or L3 == L3IPv6 and
	// HasFragHeader.
	FragID uint32
	// HasFragHeader reports an IPv6 fragment header, even an atomic one.
	// Valid iff L3 == L3IPv6.
	HasFragHeader bool
	// FlowLabel is the IPv6 flow label. Valid iff L3 == L3IPv6.
	FlowLabel uint32
	// ExtHeaders is the number of IPv6 extension headers walked. Valid
	// iff L3 == L3IPv6.
	ExtHeaders uint8
	// L4Off is the offset of the upper-layer header, after IPv4 options and
	// IPv6 extension headers. Valid iff L3 is L3IPv4 or L3IPv6.
	L4Off int
	// L3End is the offset just past the IP datagram, from its length
	// field; any bytes after it are Ethernet padding. Valid iff L3 is
	// L3IPv4 or L3IPv6.
	L3End int

	// SrcPort is the TCP/UDP source port. Valid iff L4 is L4TCP or L4UDP.
	SrcPort uint16
	// DstPort is the TCP/UDP destination port. Valid iff L4 is L4TCP or
	// L4UDP.
	DstPort uint16
	// PayloadOff is the offset of the L4 payload: after the TCP header and
	// options, the UDP header, or the 8-byte ICMP header. Valid iff L4 is
	// L4TCP, L4UDP, L4ICMPv4 or L4ICMPv6.
	PayloadOff int
	// TCPFlags is byte 13 of the TCP header (CWR ... FIN). Valid iff
	// L4 == L4TCP.
	TCPFlags uint8
	// TCPSeq is the sequence number. Valid iff L4 == L4TCP.
	TCPSeq uint32
	// TCPAck is the acknowledgment number. Valid iff L4 == L4TCP.
	TCPAck uint32

	// ICMPType is the ICMP type. Valid iff L4 is L4ICMPv4 or L4ICMPv6.
	ICMPType uint8
	// ICMPCode is the ICMP code. Valid iff L4 is L4ICMPv4 or L4ICMPv6.
	ICMPCode uint8
	// ICMPEchoID is the echo identifier. Valid iff IsEchoRequest() or
	// IsEchoReply().
	ICMPEchoID uint16
	// ICMPEchoSeq is the echo sequence number. Valid iff IsEchoRequest() or
	// IsEchoReply().
	ICMPEchoSeq uint16
	// ICMPInnerOff is the offset of the IP header quoted by an ICMP error,
	// for NAT to rewrite. At least a minimal IP header of the same version
	// is there. Valid iff IsICMPError().
	ICMPInnerOff int
	// NDTarget is the Neighbor Solicitation/Advertisement target. Valid
	// iff L4 == L4ICMPv6 and ICMPType is ICMPv6NeighborSolicit or
	// ICMPv6NeighborAdvert.
	NDTarget netip.Addr
	// NDFlags holds the R, S and O bits of a Neighbor Advertisement. Valid
	// iff L4 == L4ICMPv6 and ICMPType == ICMPv6NeighborAdvert.
	NDFlags uint8
	// NDLinkAddr is the source link-layer address option (NS, RS) or the
	// target link-layer address option (NA). Valid iff NDHasLinkAddr.
	NDLinkAddr MAC
	// NDHasLinkAddr reports that NDLinkAddr was present. Valid iff L4 ==
	// L4ICMPv6.
	NDHasLinkAddr bool

	// TunnelID is the 24-bit VXLAN VNI or the GRE key. Valid iff Tunnel ==
	// TunnelVXLAN, or Tunnel == TunnelGRE and GREKeyPresent.
	TunnelID uint32
	// InnerOff is the offset of the encapsulated frame: an Ethernet frame
	// for VXLAN, the GRE payload (Ethernet iff GREProto == EtherTypeTEB)
	// for GRE. Valid iff Tunnel != TunnelNone.
	InnerOff int
	// GREProto is the GRE protocol type. Valid iff Tunnel == TunnelGRE.
	GREProto uint16
	// GREKeyPresent is the K bit (RFC 2890). Valid iff Tunnel == TunnelGRE.
	GREKeyPresent bool
	// GRESeqPresent is the S bit (RFC 2890). Valid iff Tunnel == TunnelGRE.
	GRESeqPresent bool
	// GRESeq is the sequence number. Valid iff Tunnel == TunnelGRE and
	// GRESeqPresent.
	GRESeq uint32
	// GRECsumPresent is the C bit (RFC 2784); the checksum is not verified.
	// Valid iff Tunnel == TunnelGRE.
	GRECsumPresent bool

	// L4CsumPartial says that the TCP or UDP checksum field holds only the
	// pseudo-header sum, for the device (or whoever forwards the frame) to
	// complete: what a sender with checksum offload hands over (virtio's
	// NEEDS_CSUM, the kernel's CHECKSUM_PARTIAL). Decode clears it; the
	// caller sets it from the frame's offload metadata. Rewrites then
	// update the field as the sum it is: an address change (in the pseudo
	// header) adjusts it, a port change (covered by the device's sum)
	// leaves it alone. Valid iff L4 is L4TCP or L4UDP.
	L4CsumPartial bool
}

// Decoder holds the parsing options. The zero Decoder decodes no VXLAN;
// Parsed.Decode uses a Decoder with VXLANPort = DefaultVXLANPort. A
// Decoder is only read while decoding, so goroutines may share one; each
// needs its own Parsed.
type Decoder struct {
	// VXLANPort is the UDP destination port that marks VXLAN. Zero
	// disables VXLAN decoding.
	VXLANPort uint16
}

var defaultDecoder = Decoder{VXLANPort: DefaultVXLANPort}

// Decode decodes frame, an Ethernet frame, into p with the default options
// (VXLAN on port 4789). p keeps a reference to frame.
func (p *Parsed) Decode(frame []byte) { defaultDecoder.Decode(p, frame) }

// Decode decodes frame, an Ethernet frame, into p. p keeps a reference to
// frame. It never allocates and never panics.
func (d *Decoder) Decode(p *Parsed, frame []byte) {
	*p = Parsed{b: frame}
	b := frame
	if len(b) < EthHeaderLen {
		p.Drop = DropTruncated
		return
	}
	copy(p.EthDst[:], b[0:6])
	copy(p.EthSrc[:], b[6:12])
	off := 12
	et := be16(b[off:])
	for et == EtherTypeVLAN || et == EtherTypeQinQ {
		// Two tags is as deep as the overlay keys on. A third would be
		// read by some device behind us as the VLAN, which is the
		// double-tagging VLAN-hopping attack: drop rather than forward
		// a frame whose VLAN we cannot vouch for.
		if p.VLANs == 2 {
			p.Drop = DropTooManyVLANs
			return
		}
		if len(b) < off+vlanTagLen+2 {
			p.Drop = DropTruncated
			return
		}
		tci := be16(b[off+2:])
		p.VLAN[p.VLANs] = VLANTag{TPID: et, VID: tci & 0x0fff, PCP: uint8(tci >> 13), DEI: tci&0x1000 != 0}
		p.VLANs++
		off += vlanTagLen
		et = be16(b[off:])
	}
	p.EtherType = et
	p.L3Off = off + 2
	switch et {
	case EtherTypeARP:
		p.decodeARP(b[p.L3Off:])
	case EtherTypeIPv4:
		d.decodeIPv4(p)
	case EtherTypeIPv6:
		d.decodeIPv6(p)
	default:
		p.L3 = L3Unknown
	}
}

func (p *Parsed) decodeARP(a []byte) {
	if len(a) < arpLen {
		p.Drop = DropTruncated
		return
	}
	// Only IPv4 over Ethernet: the overlay has no other kind, and an ARP
	// whose address lengths differ would be read at the wrong offsets.
	if be16(a[0:]) != 1 || be16(a[2:]) != EtherTypeIPv4 || a[4] != 6 || a[5] != 4 {
		p.Drop = DropBadARP
		return
	}
	p.ARPOp = be16(a[6:])
	copy(p.ARPSenderMAC[:], a[8:14])
	p.ARPSenderIP = netip.AddrFrom4([4]byte(a[14:18]))
	copy(p.ARPTargetMAC[:], a[18:24])
	p.ARPTargetIP = netip.AddrFrom4([4]byte(a[24:28]))
	p.L3 = L3ARP
}

func (d *Decoder) decodeIPv4(p *Parsed) {
	ip := p.b[p.L3Off:]
	if len(ip) < IPv4MinHeaderLen {
		p.Drop = DropTruncated
		return
	}
	if ip[0]>>4 != 4 {
		p.Drop = DropBadIPVersion
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	if ihl < IPv4MinHeaderLen {
		p.Drop = DropBadIHL
		return
	}
	tot := int(be16(ip[2:]))
	if tot > len(ip) {
		p.Drop = DropBadIPLength
		return
	}
	if tot < ihl {
		p.Drop = DropBadIHL
		return
	}
	ip = ip[:tot] // anything after is Ethernet padding
	p.IPChecksumOK = foldChecksum(sumBytes(ip[:ihl], 0)) == 0
	p.TOS = ip[1]
	p.FragID = uint32(be16(ip[4:]))
	fo := be16(ip[6:])
	p.DontFrag = fo&0x4000 != 0
	p.MoreFrags = fo&0x2000 != 0
	p.FragOff = fo & 0x1fff
	p.TTL = ip[8]
	p.IPProto = ip[9]
	p.SrcIP = netip.AddrFrom4([4]byte(ip[12:16]))
	p.DstIP = netip.AddrFrom4([4]byte(ip[16:20]))
	p.L4Off = p.L3Off + ihl
	p.L3End = p.L3Off + tot
	p.L3 = L3IPv4
	switch {
	case p.FragOff != 0:
		p.Frag = FragLater
		if p.FragOff < minLaterFragOff {
			p.Drop = DropOverlapFragment
		}
		return // no L4 header in a later fragment
	case p.MoreFrags:
		p.Frag = FragFirst
	}
	d.decodeL4(p)
}

func (d *Decoder) decodeIPv6(p *Parsed) {
	ip := p.b[p.L3Off:]
	if len(ip) < ipv6HdrLen {
		p.Drop = DropTruncated
		return
	}
	vtf := be32(ip[0:])
	if vtf>>28 != 6 {
		p.Drop = DropBadIPVersion
		return
	}
	// A payload length of 0 with a jumbo payload option (RFC 2675) cannot
	// occur on Ethernet, whose MTU is far below 64 KiB, so 0 means empty.
	tot := ipv6HdrLen + int(be16(ip[4:]))
	if tot > len(ip) {
		p.Drop = DropBadIPLength
		return
	}
	ip = ip[:tot]
	p.TOS = uint8(vtf >> 20)
	p.FlowLabel = vtf & 0xfffff
	p.TTL = ip[7]
	p.SrcIP = netip.AddrFrom16([16]byte(ip[8:24]))
	p.DstIP = netip.AddrFrom16([16]byte(ip[24:40]))
	p.L3End = p.L3Off + tot

	nh := ip[6]
	off := ipv6HdrLen
	for {
		switch nh {
		case IPProtoHopByHop, IPProtoRouting, IPProtoDestOpts, IPProtoFragment:
		default:
			p.IPProto = nh
			p.L4Off = p.L3Off + off
			p.L3 = L3IPv6
			d.decodeL4(p)
			return
		}
		if p.ExtHeaders == MaxIPv6ExtHeaders {
			p.Drop = DropTooManyExtHeaders
			return
		}
		// RFC 8200 §4.1: hop-by-hop options only directly after the
		// IPv6 header, and (§4.5) one fragment header. Anything else is
		// built to confuse a parser, not to be delivered.
		if nh == IPProtoHopByHop && p.ExtHeaders != 0 || nh == IPProtoFragment && p.HasFragHeader {
			p.Drop = DropBadExtHeader
			return
		}
		if len(ip) < off+8 {
			p.Drop = p.shortHeaderDrop(DropBadExtHeader)
			return
		}
		p.ExtHeaders++
		next := ip[off]
		if nh != IPProtoFragment {
			hl := (int(ip[off+1]) + 1) * 8
			if len(ip) < off+hl {
				p.Drop = p.shortHeaderDrop(DropBadExtHeader)
				return
			}
			off += hl
			nh = next
			continue
		}
		p.HasFragHeader = true
		fo := be16(ip[off+2:])
		p.FragOff = fo >> 3
		p.MoreFrags = fo&1 != 0
		p.FragID = be32(ip[off+4:])
		off += 8
		nh = next
		if p.FragOff != 0 {
			p.Frag = FragLater
			p.IPProto = nh
			p.L4Off = p.L3Off + off
			p.L3 = L3IPv6
			if p.FragOff < minLaterFragOff {
				p.Drop = DropOverlapFragment
			}
			return
		}
		if p.MoreFrags {
			p.Frag = FragFirst
		}
		// else an atomic fragment (RFC 6946): processed as unfragmented.
	}
}

// shortHeaderDrop is the drop reason for a header that does not fit in the
// IP datagram. In a first fragment that is the "tiny first fragment" attack
// (RFC 1858, RFC 7112), and reported as such.
func (p *Parsed) shortHeaderDrop(otherwise Drop) Drop {
	if p.Frag == FragFirst {
		return DropShortFragment
	}
	return otherwise
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
