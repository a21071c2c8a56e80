package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// super describes a test super-frame: what a Linux stack with TSO/GSO and
// checksum offload hands its NIC.
type super struct {
	v6      bool
	udp     bool
	vlan    uint16 // 0: untagged
	payload int
	flags   uint8 // TCP flags besides ACK
	opts    int   // TCP option bytes (a multiple of 4)
	id      uint16
	seq     uint32
	partial bool // checksum field holds the pseudo-header seed (else: complete)
}

var (
	src4, dst4 = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	src6, dst6 = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
)

// build returns the frame and the virtio_net_hdr a kernel would put in
// front of it for gso_size mss (0: not GSO).
func (s super) build(mss int) ([]byte, Hdr) {
	b := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	if s.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, s.vlan)
	}
	l3 := len(b) + 2
	src, dst, proto := src4, dst4, packet.IPProtoTCP
	if s.udp {
		proto = packet.IPProtoUDP
	}
	l4Len := 20 + s.opts + s.payload
	if s.udp {
		l4Len = 8 + s.payload
	}
	if s.v6 {
		src, dst = src6, dst6
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeIPv6)
		b = binary.BigEndian.AppendUint32(b, 6<<28)
		b = binary.BigEndian.AppendUint16(b, uint16(l4Len))
		b = append(b, proto, 64)
		a, c := src.As16(), dst.As16()
		b = append(append(b, a[:]...), c[:]...)
	} else {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeIPv4)
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(20+l4Len))
		b = binary.BigEndian.AppendUint16(b, s.id)
		b = append(b, 0x40, 0, 64, proto, 0, 0)
		a, c := src.As4(), dst.As4()
		b = append(append(b, a[:]...), c[:]...)
		binary.BigEndian.PutUint16(b[l3+10:], packet.IPv4HeaderChecksum(b[l3:l3+20]))
	}
	l4 := len(b)
	csumOff := 16
	if s.udp {
		csumOff = 6
		b = binary.BigEndian.AppendUint16(b, 40000)
		b = binary.BigEndian.AppendUint16(b, 5001)
		b = binary.BigEndian.AppendUint16(b, uint16(l4Len))
		b = append(b, 0, 0)
	} else {
		b = binary.BigEndian.AppendUint16(b, 40000)
		b = binary.BigEndian.AppendUint16(b, 5001)
		b = binary.BigEndian.AppendUint32(b, s.seq)
		b = binary.BigEndian.AppendUint32(b, 0x01020304)
		b = append(b, byte((20+s.opts)/4)<<4, packet.TCPAck|s.flags, 0xfa, 0xf0, 0, 0, 0, 0)
		for i := 0; i < s.opts; i += 4 {
			b = append(b, 1, 1, 1, 1) // NOPs
		}
	}
	for i := range s.payload {
		b = append(b, byte(i*7+i>>8))
	}
	seg := b[l4:]
	if s.partial {
		binary.BigEndian.PutUint16(seg[csumOff:], Seed(src, dst, proto, len(seg)))
	} else {
		sum := packet.L4Checksum(src, dst, proto, seg)
		if sum == 0 && s.udp {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(seg[csumOff:], sum)
	}
	var h Hdr
	if s.partial {
		h.Flags = FlagNeedsCsum
		h.CsumStart, h.CsumOffset = uint16(l4), uint16(csumOff)
	}
	if mss > 0 {
		switch {
		case s.udp:
			h.GSOType = GSOUDPL4
		case s.v6:
			h.GSOType = GSOTCPv6
		default:
			h.GSOType = GSOTCPv4
		}
		h.GSOSize = uint16(mss)
		h.HdrLen = uint16(len(b) - s.payload)
	}
	return b, h
}

func decode(frame []byte) *packet.Parsed {
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, frame)
	return &p
}

// verifySegments checks segs against the super-frame they were cut from:
// each decodes cleanly with complete, verifying checksums, lengths right
// and no longer than max payload bytes; sequence numbers and IPv4 IDs
// advance; FIN/PSH only on the last, CWR only on the first; headers
// otherwise unchanged; payloads concatenate to the original's.
func verifySegments(orig []byte, segs [][]byte, maxPayload int) error {
	op := decode(orig)
	if op.Drop != packet.DropNone {
		return fmt.Errorf("original does not decode: %v", op.Drop)
	}
	end := PayloadEnd(op)
	want := orig[op.PayloadOff:end]
	var got []byte
	for i, s := range segs {
		p := decode(s)
		if p.Drop != packet.DropNone {
			return fmt.Errorf("segment %d does not decode: %v", i, p.Drop)
		}
		if p.L3End != len(s) {
			return fmt.Errorf("segment %d: IP datagram ends at %d, frame at %d", i, p.L3End, len(s))
		}
		if p.L3 == packet.L3IPv4 {
			if !p.IPChecksumOK {
				return fmt.Errorf("segment %d: bad IPv4 header checksum", i)
			}
			if p.FragID != (op.FragID+uint32(i))&0xffff {
				return fmt.Errorf("segment %d: IPv4 ID %d, want %d", i, p.FragID, (op.FragID+uint32(i))&0xffff)
			}
		}
		pe := PayloadEnd(p)
		if pe != len(s) {
			return fmt.Errorf("segment %d: L4 payload ends at %d, frame at %d", i, pe, len(s))
		}
		if !sameHeaders(s, orig, op) {
			return fmt.Errorf("segment %d: headers changed beyond lengths, ID, sequence, flags and checksums:\n got %x\nwant %x", i, s[:op.PayloadOff], orig[:op.PayloadOff])
		}
		if sum := packet.Checksum(s[p.L4Off:pe], packet.PseudoHeaderSum(p.SrcIP, p.DstIP, p.IPProto, pe-p.L4Off)); sum != 0 {
			return fmt.Errorf("segment %d: L4 checksum does not verify (residue %#04x)", i, sum)
		}
		if n := pe - p.PayloadOff; n > maxPayload || n == 0 && len(want) > 0 {
			return fmt.Errorf("segment %d: %d payload bytes, want 1..%d", i, n, maxPayload)
		}
		if p.L4 == packet.L4TCP {
			if wantSeq := op.TCPSeq + uint32(len(got)); p.TCPSeq != wantSeq {
				return fmt.Errorf("segment %d: seq %d, want %d", i, p.TCPSeq, wantSeq)
			}
			wantFlags := op.TCPFlags
			if i > 0 {
				wantFlags &^= packet.TCPCwr
			}
			if i < len(segs)-1 {
				wantFlags &^= packet.TCPFin | packet.TCPPsh
			}
			if p.TCPFlags != wantFlags {
				return fmt.Errorf("segment %d: flags %#x, want %#x", i, p.TCPFlags, wantFlags)
			}
		}
		got = append(got, s[p.PayloadOff:pe]...)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("segments carry %d payload bytes that differ from the original's %d", len(got), len(want))
	}
	return nil
}

// segmentAll cuts the super-frame into fresh buffers.
func segmentAll(p *packet.Parsed, h *Hdr, mss int) [][]byte {
	var s Segmenter
	s.Init(p, h, mss)
	var out [][]byte
	for !s.Done() {
		buf := make([]byte, s.NextLen())
		if n := s.Next(buf); n != len(buf) {
			panic(fmt.Sprintf("Next wrote %d bytes, NextLen said %d", n, len(buf)))
		}
		out = append(out, buf)
	}
	return out
}

// sameHeaders compares the headers of a segment and of its super-frame
// with the fields segmentation changes masked out.
func sameHeaders(seg, orig []byte, op *packet.Parsed) bool {
	if len(seg) < op.PayloadOff {
		return false
	}
	a := append([]byte(nil), seg[:op.PayloadOff]...)
	b := append([]byte(nil), orig[:op.PayloadOff]...)
	var mask [][2]int
	if op.L3 == packet.L3IPv4 {
		mask = append(mask, [2]int{op.L3Off + 2, 4}, [2]int{op.L3Off + 10, 2})
	} else {
		mask = append(mask, [2]int{op.L3Off + 4, 2})
	}
	if op.L4 == packet.L4TCP {
		mask = append(mask, [2]int{op.L4Off + 4, 4}, [2]int{op.L4Off + 13, 1}, [2]int{op.L4Off + 16, 2})
	} else {
		mask = append(mask, [2]int{op.L4Off + 4, 4})
	}
	for _, m := range mask {
		clear(a[m[0] : m[0]+m[1]])
		clear(b[m[0] : m[0]+m[1]])
	}
	return bytes.Equal(a, b)
}
