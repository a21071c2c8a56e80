package offload

import (
	"encoding/binary"
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// Segmenter cuts a GSO super-frame into the frames it stands for, one per
// Next call, into buffers the caller owns. Every segment carries the
// super-frame's headers (VLAN tags, IPv4 options and IPv6 extension
// headers included) with the lengths, the IPv4 ID and header checksum, the
// TCP sequence number and flags, and the L4 checksum made right for it;
// its checksum is complete, whatever the super-frame's was.
//
// The zero Segmenter has nothing to cut. It never allocates.
type Segmenter struct {
	frame   []byte
	l3, l4  int // offsets of the IP and L4 headers
	hdrEnd  int // offset of the payload: frame[:hdrEnd] is copied into every segment
	end     int // end of the payload
	off     int // next payload byte to cut
	mss     int
	n, i    int // segments in all, segments cut
	ipv4    bool
	tcp     bool
	id      uint16 // IPv4 ID of the first segment
	seq     uint32 // TCP sequence number of the first segment
	src     netip.Addr
	dst     netip.Addr
	proto   uint8
	lastLen int
}

// Init prepares to cut p, a super-frame whose header h passed Check, into
// segments of at most mss payload bytes: h.GSOSize, or less when the
// egress cannot carry segments that large (a tunnel's MTU minus its
// encapsulation). mss <= 0 means h.GSOSize. A frame whose payload fits one
// segment gives one segment: the frame with a complete checksum.
func (s *Segmenter) Init(p *packet.Parsed, h *Hdr, mss int) {
	if mss <= 0 || mss > int(h.GSOSize) {
		mss = int(h.GSOSize)
	}
	mss = max(mss, 1)
	*s = Segmenter{
		frame: p.Frame(), l3: p.L3Off, l4: p.L4Off, hdrEnd: p.PayloadOff, end: PayloadEnd(p),
		mss: mss, ipv4: p.L3 == packet.L3IPv4, tcp: p.L4 == packet.L4TCP,
		id: uint16(p.FragID), seq: p.TCPSeq, src: p.SrcIP, dst: p.DstIP, proto: p.IPProto,
	}
	s.off = s.hdrEnd
	payload := s.end - s.hdrEnd
	s.n = max(1, (payload+mss-1)/mss)
	s.lastLen = s.hdrEnd + (payload - (s.n-1)*mss)
}

// Count returns the number of segments.
func (s *Segmenter) Count() int { return s.n }

// Done reports whether every segment has been cut.
func (s *Segmenter) Done() bool { return s.i >= s.n }

// NextLen returns the length of the next segment, 0 when done.
func (s *Segmenter) NextLen() int {
	switch {
	case s.i >= s.n:
		return 0
	case s.i == s.n-1:
		return s.lastLen
	}
	return s.hdrEnd + s.mss
}

// MaxLen returns the length of the longest segment.
func (s *Segmenter) MaxLen() int {
	if s.n == 1 {
		return s.lastLen
	}
	return s.hdrEnd + s.mss
}

// Next writes the next segment into dst and returns its length, or 0 when
// every segment has been cut or dst is shorter than NextLen.
func (s *Segmenter) Next(dst []byte) int {
	n := s.NextLen()
	if n == 0 || len(dst) < n {
		return 0
	}
	chunk := n - s.hdrEnd
	copy(dst, s.frame[:s.hdrEnd])
	copy(dst[s.hdrEnd:n], s.frame[s.off:s.off+chunk])
	first, last := s.i == 0, s.i == s.n-1
	ip := dst[s.l3:]
	if s.ipv4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(n-s.l3))
		binary.BigEndian.PutUint16(ip[4:], s.id+uint16(s.i))
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(dst[s.l3:s.l4]))
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(n-s.l3-40))
	}
	l4 := dst[s.l4:n]
	var csum int
	if s.tcp {
		binary.BigEndian.PutUint32(l4[4:], s.seq+uint32(s.off-s.hdrEnd))
		flags := l4[13]
		if !first {
			flags &^= packet.TCPCwr
		}
		if !last {
			flags &^= packet.TCPFin | packet.TCPPsh
		}
		l4[13] = flags
		csum = 16
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		csum = 6
	}
	binary.BigEndian.PutUint16(l4[csum:], 0)
	sum := packet.L4Checksum(s.src, s.dst, s.proto, l4)
	if sum == 0 && !s.tcp {
		sum = 0xffff // RFC 768: zero is "no checksum"
	}
	binary.BigEndian.PutUint16(l4[csum:], sum)
	s.off += chunk
	s.i++
	return n
}
