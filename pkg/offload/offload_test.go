package offload

import (
	"encoding/binary"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

// TestDecodeKernelHeader: the header Linux 6.18 put in front of a TCP
// super-frame received from a veth (captured with PACKET_VNET_HDR on a
// TPACKET_V2 ring): NEEDS_CSUM, TCPv4, hdr_len 66, gso_size 1448,
// csum_start 34, csum_offset 16.
func TestDecodeKernelHeader(t *testing.T) {
	raw := []byte{0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("captured on a little-endian host")
	}
	h := Decode(raw)
	want := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	if h != want {
		t.Fatalf("Decode = %+v, want %+v", h, want)
	}
	var b [HdrLen]byte
	h.Encode(b[:])
	if string(b[:]) != string(raw) {
		t.Fatalf("Encode = %x, want %x", b, raw)
	}
	if !h.NeedsCsum() || !h.IsGSO() || h.IsZero() || h.GSO() != GSOTCPv4 {
		t.Fatalf("predicates wrong for %+v", h)
	}
}

func TestCheck(t *testing.T) {
	tcp4, h4 := super{payload: 3000, partial: true}.build(1448)
	tcp6, h6 := super{v6: true, payload: 3000, partial: true}.build(1428)
	udp4, hu := super{udp: true, payload: 3000, partial: true}.build(1000)
	plain, hp := super{payload: 100, partial: true}.build(0)
	with := func(h Hdr, f func(*Hdr)) Hdr { f(&h); return h }
	cases := []struct {
		name  string
		frame []byte
		h     Hdr
		want  Error
	}{
		{"tcp4 gso", tcp4, h4, OK},
		{"tcp6 gso", tcp6, h6, OK},
		{"udp l4 gso", udp4, hu, OK},
		{"partial, not gso", plain, hp, OK},
		{"nothing", plain, Hdr{}, OK},
		{"gso without partial checksum", tcp4, with(h4, func(h *Hdr) { h.Flags = 0 }), OK},
		{"tcp4 with ECN", tcp4, with(h4, func(h *Hdr) { h.GSOType |= GSOECN }), OK},
		{"csum start past the end", plain, with(hp, func(h *Hdr) { h.CsumStart = uint16(len(plain)) }), ErrCsumOutside},
		{"csum field past the end", plain, with(hp, func(h *Hdr) { h.CsumStart, h.CsumOffset = uint16(len(plain)-2), 1 }), ErrCsumOutside},
		{"csum offset huge", plain, with(hp, func(h *Hdr) { h.CsumOffset = 0xffff }), ErrCsumOutside},
		{"hdr_len past the end", plain, with(hp, func(h *Hdr) { h.HdrLen = uint16(len(plain) + 1) }), ErrHdrLen},
		{"tcpv4 on ipv6", tcp6, with(h6, func(h *Hdr) { h.GSOType = GSOTCPv4 }), ErrGSOMismatch},
		{"tcpv6 on ipv4", tcp4, with(h4, func(h *Hdr) { h.GSOType = GSOTCPv6 }), ErrGSOMismatch},
		{"tcpv4 on udp", udp4, with(hu, func(h *Hdr) { h.GSOType = GSOTCPv4 }), ErrGSOMismatch},
		{"udp_l4 on tcp", tcp4, with(h4, func(h *Hdr) { h.GSOType = GSOUDPL4 }), ErrGSOMismatch},
		{"ufo", udp4, with(hu, func(h *Hdr) { h.GSOType = GSOUDP }), ErrGSOType},
		{"unknown type", tcp4, with(h4, func(h *Hdr) { h.GSOType = 9 }), ErrGSOType},
		{"udp with ECN", udp4, with(hu, func(h *Hdr) { h.GSOType |= GSOECN }), ErrGSOType},
		{"gso size 0", tcp4, with(h4, func(h *Hdr) { h.GSOSize = 0 }), ErrGSOSize},
		{"tcp: too many segments", tcp4, with(h4, func(h *Hdr) { h.GSOSize = 1 }), ErrGSOSize},
		{"udp: too many segments", udp4, with(hu, func(h *Hdr) { h.GSOSize = 20 }), ErrGSOSize},
		{"gso csum elsewhere", tcp4, with(h4, func(h *Hdr) { h.CsumOffset = 14 }), ErrGSOCsum},
		{"gso csum start elsewhere", tcp4, with(h4, func(h *Hdr) { h.CsumStart = 14 }), ErrGSOCsum},
	}
	for _, c := range cases {
		p := decode(c.frame)
		if p.Drop != packet.DropNone {
			t.Fatalf("%s: test frame does not decode: %v", c.name, p.Drop)
		}
		if got := Check(&c.h, p); got != c.want {
			t.Errorf("%s: Check(%+v) = %v, want %v", c.name, c.h, got, c.want)
		}
	}
	if got := Check(&Hdr{GSOType: GSOTCPv4, GSOSize: 100}, decode(fragment())); got != ErrGSOMismatch {
		t.Errorf("gso on a first fragment: Check = %v, want %v", got, ErrGSOMismatch)
	}
	for _, e := range Errors() {
		if e.String() == "unknown" || e.String() == "ok" {
			t.Errorf("error %d has no label", e)
		}
	}
}

// fragment returns an IPv4 first fragment of a TCP segment.
func fragment() []byte {
	f, _ := super{payload: 100}.build(0)
	f[14+6] |= 0x20 // MF
	binary.BigEndian.PutUint16(f[14+10:], 0)
	binary.BigEndian.PutUint16(f[14+10:], packet.IPv4HeaderChecksum(f[14:34]))
	return f
}

func TestCompleteFrame(t *testing.T) {
	for _, s := range []super{
		{payload: 0}, {payload: 1}, {payload: 1399}, {v6: true, payload: 77}, {udp: true, payload: 513},
		{udp: true, v6: true, payload: 8}, {vlan: 100, payload: 60, opts: 12},
	} {
		full, _ := s.build(0)
		s.partial = true
		partial, h := s.build(0)
		p := decode(partial)
		if !IsL4Csum(&h, p) {
			t.Fatalf("%+v: IsL4Csum false", s)
		}
		p.L4CsumPartial = true
		CompleteFrame(&h, p)
		if string(partial) != string(full) {
			t.Errorf("%+v: completed\n got %x\nwant %x", s, partial, full)
		}
		if p.L4CsumPartial {
			t.Errorf("%+v: still marked partial", s)
		}
	}
	// Ethernet padding after the datagram is not summed.
	s := super{payload: 4, partial: true}
	f, h := s.build(0)
	f = append(f, 0xde, 0xad, 0xbe, 0xef)
	CompleteFrame(&h, decode(f))
	s.partial = false
	full, _ := s.build(0)
	if string(f[:len(full)]) != string(full) {
		t.Errorf("padding summed:\n got %x\nwant %x", f[:len(full)], full)
	}
}

func TestSegment(t *testing.T) {
	cases := []struct {
		name string
		s    super
		gso  int
		mss  int // 0: gso
	}{
		{"tcp4", super{payload: 65000, id: 0xfffe, seq: 0xffffff00}, 1448, 0},
		{"tcp4 fin psh cwr", super{payload: 4000, flags: packet.TCPFin | packet.TCPPsh | packet.TCPCwr, opts: 12}, 1000, 0},
		{"tcp4 exact multiple", super{payload: 3000}, 1000, 0},
		{"tcp4 smaller egress mss", super{payload: 9000}, 1448, 1398},
		{"tcp4 one segment", super{payload: 500}, 1448, 0},
		{"tcp4 vlan", super{payload: 5000, vlan: 42, opts: 12}, 1436, 0},
		{"tcp6", super{v6: true, payload: 10000}, 1428, 0},
		{"udp4", super{udp: true, payload: 3500}, 1000, 0},
		{"udp6", super{udp: true, v6: true, payload: 2001}, 1000, 600},
		{"tcp4 partial seed", super{payload: 7000, partial: true}, 1448, 0},
	}
	for _, c := range cases {
		frame, h := c.s.build(c.gso)
		p := decode(frame)
		if e := Check(&h, p); e != OK {
			t.Fatalf("%s: Check = %v", c.name, e)
		}
		mss := c.mss
		if mss == 0 {
			mss = c.gso
		}
		segs := segmentAll(p, &h, c.mss)
		if want := max(1, (c.s.payload+mss-1)/mss); len(segs) != want {
			t.Errorf("%s: %d segments, want %d", c.name, len(segs), want)
		}
		if err := verifySegments(frame, segs, mss); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestSegmentShortBuffer: Next refuses a buffer that cannot hold the
// segment and stays where it was.
func TestSegmentShortBuffer(t *testing.T) {
	frame, h := super{payload: 3000}.build(1000)
	var s Segmenter
	s.Init(decode(frame), &h, 0)
	if n := s.Next(make([]byte, s.NextLen()-1)); n != 0 {
		t.Fatalf("Next into a short buffer = %d, want 0", n)
	}
	if s.Count() != 3 || s.Done() {
		t.Fatalf("count %d done %v after a refused Next", s.Count(), s.Done())
	}
}

func TestSegmentIPLen(t *testing.T) {
	frame, h := super{payload: 30000, opts: 12}.build(1448)
	p := decode(frame)
	if got, want := SegmentIPLen(&h, p), 20+32+1448; got != want {
		t.Errorf("SegmentIPLen = %d, want %d", got, want)
	}
	h.GSOType = GSONone
	if got, want := SegmentIPLen(&h, p), 20+32+30000; got != want {
		t.Errorf("SegmentIPLen (not GSO) = %d, want %d", got, want)
	}
}

func TestOverPortMTU(t *testing.T) {
	frame, h := super{payload: 30000, opts: 12}.build(1448) // segments of 20+32+1448 = 1500
	p := decode(frame)
	whole := h
	whole.GSOType = GSONone
	arp := decode(append(make([]byte, 12), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1))
	for _, c := range []struct {
		name string
		h    *Hdr
		p    *packet.Parsed
		mtu  int
		want bool
	}{
		{"segments fit", &h, p, 1500, false},
		{"segments one byte over", &h, p, 1499, true},
		{"the same frame without GSO", &whole, p, 1500, true},
		{"not IP: the frame after its Ethernet header", &Hdr{}, arp, 8, false},
		{"not IP, over", &Hdr{}, arp, 7, true},
	} {
		if got := OverPortMTU(c.h, c.p, c.mtu); got != c.want {
			t.Errorf("%s: OverPortMTU(mtu %d) = %v, want %v", c.name, c.mtu, got, c.want)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	frame, h := super{payload: 60000, partial: true}.build(1448)
	p := decode(frame)
	buf := make([]byte, 2048)
	var s Segmenter
	if a := testing.AllocsPerRun(20, func() {
		s.Init(p, &h, 0)
		for !s.Done() {
			s.Next(buf)
		}
		_ = Check(&h, p)
	}); a != 0 {
		t.Errorf("segmenting allocates %.1f times", a)
	}
	small, hs := super{payload: 1000, partial: true}.build(0)
	ps := decode(small)
	if a := testing.AllocsPerRun(20, func() { CompleteFrame(&hs, ps) }); a != 0 {
		t.Errorf("CompleteFrame allocates %.1f times", a)
	}
}

func BenchmarkSegment64K(b *testing.B) {
	frame, h := super{payload: 65000, opts: 12, partial: true}.build(1448)
	p := decode(frame)
	buf := make([]byte, 2048)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	var s Segmenter
	for b.Loop() {
		s.Init(p, &h, 0)
		for !s.Done() {
			s.Next(buf)
		}
	}
}

func BenchmarkCompleteFrame1500(b *testing.B) {
	frame, h := super{payload: 1448, opts: 12, partial: true}.build(0)
	p := decode(frame)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		CompleteFrame(&h, p)
	}
}
