package offload

import (
	"encoding/binary"
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// Coalescer merges consecutive TCP segments of one connection back into a
// super-frame, as the kernel's GRO does on a NIC's receive path
// (net/ipv4/tcp_offload.c tcp_gro_receive, net/ipv4/af_inet.c
// inet_gro_receive): a tunnel carried them one by one, and the stack they
// are delivered to takes one 64 KiB frame for a fraction of the cost of
// forty-five. The super-frame leaves with a GSO header and a partial
// checksum, exactly what a TSO sender would have handed over.
//
// The rules are GRO's: same Ethernet header, same IP header but for the
// length, the ID (consecutive, or anything with DF) and the checksum,
// no IPv4 options nor IPv6 extension headers; same ports, acknowledgment,
// window and options; the sequence number where the previous segment
// ended; every segment but the last exactly as long as the first, the
// last no longer; no SYN, RST, URG, ECE or CWR; PSH or FIN end the
// super-frame. A segment whose checksum does not verify is never merged,
// so a damaged one still reaches the receiver to be dropped there.
//
// The zero Coalescer holds nothing. It never allocates.
type Coalescer struct {
	buf     []byte
	n       int // bytes in buf
	segs    int
	hdrEnd  int // offset of the payload
	l3, l4  int
	mss     int
	nextSeq uint32
	lastID  uint16
	v4      bool
	df      bool
	done    bool // a PSH or FIN, or a short segment, ended it
	src     netip.Addr
	dst     netip.Addr
}

// Start begins a super-frame in buf with the segment p (decoded, its
// frame complete) and reports whether it could: p must be a TCP segment
// with payload that GRO would merge, and fit buf. On false, nothing is
// held and p is to be sent as it is.
func (c *Coalescer) Start(buf []byte, p *packet.Parsed) bool {
	c.segs = 0
	f := p.Frame()
	payload := p.L3End - p.PayloadOff
	if !mergeable(p) || payload == 0 || p.L3End > len(buf) || !verifies(p) {
		return false
	}
	*c = Coalescer{buf: buf, n: copy(buf, f[:p.L3End]), segs: 1, hdrEnd: p.PayloadOff, l3: p.L3Off, l4: p.L4Off,
		mss: payload, nextSeq: p.TCPSeq + uint32(payload), lastID: uint16(p.FragID), v4: p.L3 == packet.L3IPv4, df: p.DontFrag,
		done: p.TCPFlags&(packet.TCPPsh|packet.TCPFin) != 0, src: p.SrcIP, dst: p.DstIP}
	return true
}

// Len returns the number of segments held.
func (c *Coalescer) Len() int { return c.segs }

// Add appends the segment p to the super-frame and reports whether it
// could; if not, the caller finishes the super-frame and sends p (or
// starts the next one with it).
func (c *Coalescer) Add(p *packet.Parsed) bool {
	if c.segs == 0 || c.done || !mergeable(p) {
		return false
	}
	f := p.Frame()
	payload := p.L3End - p.PayloadOff
	if payload == 0 || payload > c.mss || p.PayloadOff != c.hdrEnd || p.L3Off != c.l3 || p.L4Off != c.l4 ||
		c.n+payload > len(c.buf) || c.n+payload-c.l3 > 0xffff || p.TCPSeq != c.nextSeq {
		return false
	}
	b := c.buf
	// Ethernet header and everything up to the IP length; then the rest
	// of the IP header and the TCP header, field by field where they may
	// differ.
	if string(f[:c.l3]) != string(b[:c.l3]) || p.TCPFlags&^(packet.TCPPsh|packet.TCPFin) != b[c.l4+13]&^(packet.TCPPsh|packet.TCPFin) {
		return false
	}
	if c.v4 {
		id := uint16(p.FragID)
		if p.L3 != packet.L3IPv4 || f[c.l3+1] != b[c.l3+1] || string(f[c.l3+6:c.l3+10]) != string(b[c.l3+6:c.l3+10]) ||
			string(f[c.l3+12:c.l3+20]) != string(b[c.l3+12:c.l3+20]) || !c.df && id != c.lastID+1 {
			return false
		}
		c.lastID = id
	} else if p.L3 != packet.L3IPv6 || string(f[c.l3:c.l3+4]) != string(b[c.l3:c.l3+4]) || string(f[c.l3+6:c.l4]) != string(b[c.l3+6:c.l4]) {
		return false
	}
	// Ports, acknowledgment, window, urgent pointer and options.
	if string(f[c.l4:c.l4+4]) != string(b[c.l4:c.l4+4]) || string(f[c.l4+8:c.l4+12]) != string(b[c.l4+8:c.l4+12]) ||
		string(f[c.l4+14:c.l4+16]) != string(b[c.l4+14:c.l4+16]) || string(f[c.l4+18:c.hdrEnd]) != string(b[c.l4+18:c.hdrEnd]) {
		return false
	}
	if !verifies(p) {
		return false
	}
	c.n += copy(b[c.n:], f[p.PayloadOff:p.L3End])
	c.segs++
	c.nextSeq += uint32(payload)
	b[c.l4+13] |= p.TCPFlags & (packet.TCPPsh | packet.TCPFin)
	c.done = payload < c.mss || p.TCPFlags&(packet.TCPPsh|packet.TCPFin) != 0
	return true
}

// Finish returns the super-frame and its header, and empties c. With one
// segment it is that segment, unchanged, and a zero header. The frame is
// c's buffer: valid until the buffer is reused.
func (c *Coalescer) Finish() ([]byte, Hdr) {
	frame, segs := c.buf[:c.n], c.segs
	c.segs = 0
	if segs <= 1 {
		return frame, Hdr{}
	}
	ip := frame[c.l3:]
	l4Len := c.n - c.l4
	if c.v4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(c.n-c.l3))
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(frame[c.l3:c.l4]))
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(l4Len))
	}
	binary.BigEndian.PutUint16(frame[c.l4+16:], Seed(c.src, c.dst, packet.IPProtoTCP, l4Len))
	gso := GSOTCPv4
	if !c.v4 {
		gso = GSOTCPv6
	}
	return frame, Hdr{Flags: FlagNeedsCsum, GSOType: gso, HdrLen: uint16(c.hdrEnd), GSOSize: uint16(c.mss),
		CsumStart: uint16(c.l4), CsumOffset: 16}
}

// mergeable reports a segment GRO would consider: TCP over IPv4 without
// options or IPv6 without extension headers, not a fragment, without the
// flags that must reach the receiver on their own segment.
func mergeable(p *packet.Parsed) bool {
	if p.Drop != packet.DropNone || p.L4 != packet.L4TCP || p.Frag != packet.FragNone {
		return false
	}
	switch p.L3 {
	case packet.L3IPv4:
		if p.L4Off != p.L3Off+20 {
			return false
		}
	case packet.L3IPv6:
		if p.L4Off != p.L3Off+40 {
			return false
		}
	default:
		return false
	}
	return p.TCPFlags&(packet.TCPSyn|packet.TCPRst|packet.TCPUrg|packet.TCPEce|packet.TCPCwr) == 0 && p.TCPFlags&packet.TCPAck != 0
}

// verifies reports a segment whose TCP checksum is right.
func verifies(p *packet.Parsed) bool {
	f := p.Frame()
	return packet.Checksum(f[p.L4Off:p.L3End], packet.PseudoHeaderSum(p.SrcIP, p.DstIP, packet.IPProtoTCP, p.L3End-p.L4Off)) == 0
}
