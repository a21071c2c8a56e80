package offload

import (
	"bytes"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

// coalesceAll merges frames in order, starting a new super-frame whenever
// Add refuses, and returns what Finish gave for each.
func coalesceAll(frames [][]byte) (out [][]byte, hdrs []Hdr) {
	var c Coalescer
	buf := make([]byte, 70000)
	finish := func() {
		f, h := c.Finish()
		out, hdrs = append(out, append([]byte(nil), f...)), append(hdrs, h)
	}
	for _, f := range frames {
		p := decode(f)
		if c.Len() > 0 && c.Add(p) {
			continue
		}
		if c.Len() > 0 {
			finish()
		}
		if !c.Start(buf, p) {
			out, hdrs = append(out, f), append(hdrs, Hdr{})
		}
	}
	if c.Len() > 0 {
		finish()
	}
	return out, hdrs
}

// TestCoalesceUndoesSegment: the segments of a super-frame merge back into
// exactly that super-frame, header and all (PSH and FIN from the last
// segment, the first segment's IPv4 ID, the partial checksum's seed).
func TestCoalesceUndoesSegment(t *testing.T) {
	for _, s := range []super{
		{payload: 64000, opts: 12, partial: true, id: 0xfff0, seq: 0xfffff000},
		{payload: 3000, partial: true, flags: packet.TCPPsh},
		{payload: 2500, partial: true, flags: packet.TCPPsh | packet.TCPFin},
		{v6: true, payload: 20000, opts: 12, partial: true},
		{vlan: 9, payload: 9000, partial: true},
	} {
		orig, h := s.build(1448)
		segs := segmentAll(decode(orig), &h, 0)
		out, hdrs := coalesceAll(segs)
		if len(out) != 1 {
			t.Fatalf("%+v: %d super-frames from %d segments, want 1", s, len(out), len(segs))
		}
		if !bytes.Equal(out[0], orig) {
			t.Errorf("%+v: merged\n%x\nwant\n%x", s, out[0][:80], orig[:80])
		}
		if want := (Hdr{Flags: FlagNeedsCsum, GSOType: h.GSOType, HdrLen: h.HdrLen, GSOSize: 1448, CsumStart: h.CsumStart, CsumOffset: 16}); hdrs[0] != want {
			t.Errorf("%+v: header %+v, want %+v", s, hdrs[0], want)
		}
	}
}

// TestCoalesceRefuses: segments GRO would not merge stay apart, and a
// refused segment is left as it was.
func TestCoalesceRefuses(t *testing.T) {
	orig, h := super{payload: 5000, partial: true, opts: 12}.build(1000)
	segs := segmentAll(decode(orig), &h, 0) // five segments of 1000
	clone := func() [][]byte {
		c := make([][]byte, len(segs))
		for i := range segs {
			c[i] = append([]byte(nil), segs[i]...)
		}
		return c
	}
	tcp := func(f []byte) []byte { return f[14+20:] }
	cases := []struct {
		name   string
		mutate func(s [][]byte) [][]byte
		want   int // super-frames out
	}{
		{"all merge", func(s [][]byte) [][]byte { return s }, 1},
		{"gap in sequence", func(s [][]byte) [][]byte { return append(s[:2], s[3:]...) }, 2},
		{"reordered", func(s [][]byte) [][]byte { s[1], s[2] = s[2], s[1]; return s }, 4},
		{"other ack", func(s [][]byte) [][]byte { tcp(s[2])[11]++; fixTCP(s[2]); return s }, 3},
		{"other window", func(s [][]byte) [][]byte { tcp(s[3])[15]++; fixTCP(s[3]); return s }, 3},
		{"bad checksum", func(s [][]byte) [][]byte { tcp(s[2])[20] ^= 0xff; return s }, 3},
		{"PSH in the middle ends it", func(s [][]byte) [][]byte { tcp(s[1])[13] |= packet.TCPPsh; fixTCP(s[1]); return s }, 2},
		{"SYN never merges", func(s [][]byte) [][]byte { tcp(s[0])[13] |= packet.TCPSyn; fixTCP(s[0]); return s }, 2},
		{"short segment ends it", func(s [][]byte) [][]byte { return [][]byte{s[4], s[0]} }, 2},
		{"other TTL", func(s [][]byte) [][]byte { s[2][14+8]--; fixIP(s[2]); return s }, 3},
	}
	for _, c := range cases {
		in := c.mutate(clone())
		out, _ := coalesceAll(in)
		if len(out) != c.want {
			t.Errorf("%s: %d super-frames, want %d", c.name, len(out), c.want)
		}
		var payload, want []byte
		for _, f := range out {
			p := decode(f)
			payload = append(payload, f[p.PayloadOff:p.L3End]...)
		}
		for _, f := range in {
			p := decode(f)
			want = append(want, f[p.PayloadOff:p.L3End]...)
		}
		if !bytes.Equal(payload, want) {
			t.Errorf("%s: merging lost or reordered payload", c.name)
		}
	}
}

func fixIP(f []byte) {
	f[14+10], f[14+11] = 0, 0
	s := packet.IPv4HeaderChecksum(f[14:34])
	f[14+10], f[14+11] = byte(s>>8), byte(s)
}

func fixTCP(f []byte) {
	p := decode(f)
	f[p.L4Off+16], f[p.L4Off+17] = 0, 0
	s := packet.L4Checksum(p.SrcIP, p.DstIP, packet.IPProtoTCP, f[p.L4Off:p.L3End])
	f[p.L4Off+16], f[p.L4Off+17] = byte(s>>8), byte(s)
}

func TestCoalesceAllocs(t *testing.T) {
	orig, h := super{payload: 60000, partial: true}.build(1448)
	segs := segmentAll(decode(orig), &h, 0)
	ps := make([]*packet.Parsed, len(segs))
	for i := range segs {
		ps[i] = decode(segs[i])
	}
	buf := make([]byte, 70000)
	var c Coalescer
	if a := testing.AllocsPerRun(20, func() {
		c.Start(buf, ps[0])
		for _, p := range ps[1:] {
			c.Add(p)
		}
		c.Finish()
	}); a != 0 {
		t.Errorf("coalescing allocates %.1f times", a)
	}
}

// FuzzCoalesce: whatever frames arrive, in whatever order, coalescing
// never panics, never loses or reorders payload, and every super-frame it
// builds segments back into valid frames (the receiving stack, or the
// kernel before a device, will cut it).
func FuzzCoalesce(f *testing.F) {
	orig, h := super{payload: 6000, partial: true, opts: 12}.build(1448)
	segs := segmentAll(decode(orig), &h, 0)
	f.Add(segs[0], segs[1], segs[2])
	f.Add(segs[0], segs[2], segs[1])
	f.Add(segs[3], segs[4], segs[0])
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		in := [][]byte{}
		for _, fr := range [][]byte{a, b, c} {
			if decode(fr).Drop == packet.DropNone {
				in = append(in, append([]byte(nil), fr...))
			}
		}
		out, hdrs := coalesceAll(in)
		var got, want []byte
		for _, fr := range in {
			p := decode(fr)
			if p.L4 == packet.L4TCP {
				want = append(want, fr[p.PayloadOff:p.L3End]...)
			}
		}
		for i, fr := range out {
			p := decode(fr)
			if p.Drop != packet.DropNone {
				t.Fatalf("output %d does not decode: %v", i, p.Drop)
			}
			if !hdrs[i].IsGSO() {
				if p.L4 == packet.L4TCP {
					got = append(got, fr[p.PayloadOff:p.L3End]...)
				}
				continue
			}
			if e := Check(&hdrs[i], p); e != OK {
				t.Fatalf("output %d: its own header fails Check: %v", i, e)
			}
			for _, s := range segmentAll(p, &hdrs[i], 0) {
				q := decode(s)
				if packet.Checksum(s[q.L4Off:q.L3End], packet.PseudoHeaderSum(q.SrcIP, q.DstIP, q.IPProto, q.L3End-q.L4Off)) != 0 {
					t.Fatalf("output %d re-segments into a segment that does not verify", i)
				}
				got = append(got, s[q.PayloadOff:q.L3End]...)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("payload changed: %d bytes in, %d out", len(want), len(got))
		}
	})
}
