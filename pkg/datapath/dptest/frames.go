package dptest

import (
	"encoding/binary"
	"net/netip"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// UDP describes a test frame: Ethernet, an optional 802.1Q tag, IPv4, UDP.
type UDP struct {
	SrcMAC, DstMAC   packet.MAC
	VLAN             uint16 // 0: untagged
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	TTL              uint8 // 0 means 64
	// Len is the frame length (at least the headers; 0 means 64 bytes).
	Len int
}

// Frame builds the frame, with correct IPv4 header and UDP checksums, and a
// payload pattern derived from the ports so that frames of different flows
// differ beyond their headers.
func (u UDP) Frame() []byte {
	hdr := 14 + 20 + 8
	if u.VLAN != 0 {
		hdr += 4
	}
	n := max(u.Len, 64, hdr)
	b := make([]byte, n)
	copy(b[0:6], u.DstMAC[:])
	copy(b[6:12], u.SrcMAC[:])
	off := 12
	if u.VLAN != 0 {
		binary.BigEndian.PutUint16(b[off:], packet.EtherTypeVLAN)
		binary.BigEndian.PutUint16(b[off+2:], u.VLAN)
		off += 4
	}
	binary.BigEndian.PutUint16(b[off:], packet.EtherTypeIPv4)
	ip := b[off+2:]
	ttl := u.TTL
	if ttl == 0 {
		ttl = 64
	}
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	ip[8] = ttl
	ip[9] = packet.IPProtoUDP
	src, dst := u.Src.As4(), u.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip[:20]))
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], u.SrcPort)
	binary.BigEndian.PutUint16(l4[2:], u.DstPort)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	for i := 8; i < len(l4); i++ {
		l4[i] = byte(i) ^ byte(u.SrcPort) ^ byte(u.DstPort>>3)
	}
	sum := packet.L4Checksum(u.Src, u.Dst, packet.IPProtoUDP, l4)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(l4[6:], sum)
	return b
}

// Key returns the flow key a datapath must compute for frame entering by
// the port of topology index inPort.
func Key(frame []byte, inPort int32) flow.Key {
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, frame)
	return flow.KeyOf(&p, uint32(inPort))
}

// Rewritten returns what frame must look like after set-eth-src(src),
// set-eth-dst(dst) and dec-ttl(n), computed from scratch rather than
// incrementally so that it checks the datapath's incremental checksum.
// frame must be untagged IPv4.
func Rewritten(frame []byte, src, dst packet.MAC, n uint8) []byte {
	b := append([]byte(nil), frame...)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	ip := b[14:34]
	ip[8] -= n
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
	return b
}

// Pushed returns frame with an 802.1Q tag of vid inserted after the MACs.
func Pushed(frame []byte, vid uint16) []byte {
	b := make([]byte, 0, len(frame)+4)
	b = append(b, frame[:12]...)
	b = binary.BigEndian.AppendUint16(b, packet.EtherTypeVLAN)
	b = binary.BigEndian.AppendUint16(b, vid)
	return append(b, frame[12:]...)
}

// Popped returns frame without its outermost VLAN tag.
func Popped(frame []byte) []byte {
	b := append([]byte(nil), frame[:12]...)
	return append(b, frame[16:]...)
}
