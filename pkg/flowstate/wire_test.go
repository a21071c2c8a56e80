package flowstate

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

func wireSamples() []Entry {
	c4 := tcp(7, "10.0.0.5", 40000, "192.0.2.9", 80)
	r4 := c4.Reverse()
	r4.Zone = 9
	c6 := udp(3, "2001:db8::1", 5353, "2001:db8::2", 53)
	echo := key(11, packet.IPProtoICMPv4, "10.0.0.5", 77, "192.0.2.9", 77)
	echo.Echo = EchoRequest
	echo6 := key(11, packet.IPProtoICMPv6, "2001:db8::1", 77, "2001:db8::2", 77)
	echo6.Echo = EchoRequest
	dn := tcp(12, "198.51.100.1", 5555, "203.0.113.10", 443)
	dn.Type = KeyFwdDNAT
	sn := c4
	sn.Zone = zoneR
	return []Entry{
		NewConn(c4, r4, packet.TCPSyn),
		NewConn(c6, c6.Reverse(), 0),
		NewConn(echo, echo.Reverse(), 0),
		NewConn(echo6, echo6.Reverse(), 0),
		NewDNAT(dn, netip.MustParseAddr("10.0.0.7"), 8443, packet.TCPSyn),
		newSNAT(sn, netip.MustParseAddr("203.0.113.1"), 1025, packet.TCPSyn),
		newSNAT(echo, netip.MustParseAddr("203.0.113.1"), 2000, 0),
	}
}

func TestWireRoundTrip(t *testing.T) {
	in := wireSamples()
	b, err := AppendStatePacket(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := WireHeaderLen
	for i := range in {
		want += EntryWireLen(&in[i])
	}
	if len(b) != want {
		t.Fatalf("packet is %d bytes, want %d", len(b), want)
	}
	out, err := DecodeStatePacket(b, nil)
	if err != nil || len(out) != len(in) {
		t.Fatalf("decode: %d entries, err %v", len(out), err)
	}
	for i := range in {
		if in[i] != out[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
	if _, err := AppendStatePacket(nil, make([]Entry, MaxWireEntries+1)); err == nil {
		t.Error("more than MaxWireEntries entries accepted")
	}
}

func TestWireRejects(t *testing.T) {
	good, _ := AppendStatePacket(nil, wireSamples()[:1])
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	const stateOff, typeOff = WireHeaderLen + 2, WireHeaderLen + 3
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrWireTruncated},
		{"version", mut(func(b []byte) []byte { b[0] = 9; return b }), ErrWireVersion},
		{"count too high", mut(func(b []byte) []byte { b[1] = 2; return b }), ErrWireTruncated},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrWireMalformed},
		{"truncated", good[:len(good)-1], ErrWireTruncated},
		{"family", mut(func(b []byte) []byte { b[WireHeaderLen] = 5; return b }), ErrWireMalformed},
		{"phase", mut(func(b []byte) []byte { b[stateOff] = 7; return b }), ErrWireMalformed},
		{"state bits", mut(func(b []byte) []byte { b[stateOff] |= 0x80; return b }), ErrWireMalformed},
		{"key type", mut(func(b []byte) []byte { b[typeOff] = byte(KeyFwdSNAT); return b }), ErrWireMalformed},
		{"echo on tcp", mut(func(b []byte) []byte { b[typeOff+1] = EchoRequest; return b }), ErrWireMalformed},
	}
	for _, c := range cases {
		out, err := DecodeStatePacket(c.b, make([]Entry, 1, 4))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
		if len(out) != 1 {
			t.Errorf("%s: an entry of a malformed packet was delivered", c.name)
		}
	}
}

// A decoded entry, whatever the bytes, is one the table takes or refuses
// cleanly, and re-encodes to the same bytes.
func FuzzDecodeStatePacket(f *testing.F) {
	b, _ := AppendStatePacket(nil, wireSamples())
	f.Add(b)
	b, _ = AppendStatePacket(nil, wireSamples()[1:2])
	f.Add(b)
	f.Add([]byte{WireVersion, 0})
	f.Add([]byte{WireVersion, 1, 4, 6, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tb := New(Config{MaxEntries: 64, MaxPerZone: 8})
		out, err := DecodeStatePacket(b, nil)
		if err != nil {
			if len(out) != 0 {
				t.Fatal("entries delivered from a malformed packet")
			}
			return
		}
		var got []byte
		for i := range out {
			got = AppendEntry(got, &out[i])
			_ = tb.Import(&out[i], sec)
			if tb.Len() > 64 {
				t.Fatal("table over its bound")
			}
		}
		if string(got) != string(b[WireHeaderLen:]) || len(out) != int(b[1]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", got, b[WireHeaderLen:])
		}
		if err := tb.check(); err != nil {
			t.Fatal(err)
		}
		_, _ = tb.Sweep(1000*sec, 0, nil)
	})
}

func TestRestoreKeepsRemainingLifetime(t *testing.T) {
	src := New(Config{})
	if err := conn(src, tcp(1, "10.0.0.1", 1000, "10.0.0.2", 80), 2, packet.TCPSyn, 0); err != nil {
		t.Fatal(err)
	}
	now := 10 * sec // a SYN-sent connection lives 30 s: 20 s are left
	var saved []Entry
	var ttls []time.Duration
	src.RangeTTL(now, func(e *Entry, ttl time.Duration) bool {
		saved, ttls = append(saved, *e), append(ttls, ttl)
		return true
	})
	if len(saved) != 1 || ttls[0] != 20*time.Second {
		t.Fatalf("RangeTTL: %d entries, ttls %v", len(saved), ttls)
	}
	dst := New(Config{})
	if err := dst.Restore(&saved[0], ttls[0], 100*sec); err != nil {
		t.Fatal(err)
	}
	if m := look(dst, tcp(1, "10.0.0.1", 1000, "10.0.0.2", 80), 0, 119*sec); !m.Found {
		t.Fatal("restored entry not found before its time ran out")
	}
	// The lookup refreshed it; without it, it would be gone at 120 s.
	dst2 := New(Config{})
	_ = dst2.Restore(&saved[0], ttls[0], 100*sec)
	if m := look(dst2, tcp(1, "10.0.0.1", 1000, "10.0.0.2", 80), 0, 121*sec); m.Found {
		t.Fatal("restored entry outlived its remaining lifetime")
	}
}

// After a restart the pool is empty, so the allocator may pick a port a
// restored binding holds: it must skip it and make the binding its owner.
func TestAllocSNATSkipsRestoredBindings(t *testing.T) {
	targets := []Target{{From: netip.MustParseAddr("203.0.113.1"), PortFrom: 2000, PortTo: 2001}}
	before := New(Config{})
	k := tcp(0, "10.0.0.5", 40000, "192.0.2.9", 80)
	e1, err := snatOne(t, before, k, targets, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := New(Config{})
	if err := after.Restore(&e1, time.Hour, sec); err != nil {
		t.Fatal(err)
	}
	k2 := tcp(0, "10.0.0.6", 40000, "192.0.2.9", 80)
	e2, err := snatOne(t, after, k2, targets, sec)
	if err != nil {
		t.Fatal(err)
	}
	_, p1 := e1.Translated()
	_, p2 := e2.Translated()
	if p1 == p2 {
		t.Fatalf("port %d handed out twice", p1)
	}
	if _, err := snatOne(t, after, tcp(0, "10.0.0.7", 40000, "192.0.2.9", 80), targets, sec); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third binding on two ports: %v", err)
	}
	// The restored binding owns its port now: once it is gone, the port
	// is free again.
	if _, ok := after.Remove(&e1.Fwd, 2*sec); !ok {
		t.Fatal("restored binding not found")
	}
	if err := after.checkPAT(); err != nil {
		t.Fatal(err)
	}
	if _, err := snatOne(t, after, tcp(0, "10.0.0.7", 40000, "192.0.2.9", 80), targets, 2*sec); err != nil {
		t.Fatalf("port of a removed restored binding not reused: %v", err)
	}
}

func BenchmarkWireEncode(b *testing.B) {
	in := wireSamples()[:1]
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendStatePacket(buf[:0], in)
	}
	b.ReportMetric(float64(len(buf)-WireHeaderLen), "bytes/entry")
}

func BenchmarkWireDecode(b *testing.B) {
	buf, _ := AppendStatePacket(nil, wireSamples()[:1])
	out := make([]Entry, 0, 1)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = DecodeStatePacket(buf, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// Walking in chunks sees every live entry once.
func TestRangeTTLFrom(t *testing.T) {
	tb := New(Config{})
	for i := range 5000 {
		if err := conn(tb, tcp(1, "10.0.0.1", uint16(i+1), "10.0.0.2", 80), 2, packet.TCPSyn, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 { // holes in the storage
		if _, ok := tb.Remove(&Key{Src: netip.MustParseAddr("10.0.0.1").As16(), Dst: netip.MustParseAddr("10.0.0.2").As16(),
			Zone: 1, SrcPort: uint16(3*i + 1), DstPort: 80, Proto: packet.IPProtoTCP, Type: KeyConn, Family: 4}, 0); !ok {
			t.Fatal("remove")
		}
	}
	seen := map[Key]bool{}
	chunks := 0
	for next := 0; next >= 0; chunks++ {
		next = tb.RangeTTLFrom(next, 1000, sec, func(e *Entry, ttl time.Duration) bool {
			if seen[e.Fwd] || ttl != 29*time.Second {
				t.Fatalf("entry %v seen twice or ttl %v", e.Fwd, ttl)
			}
			seen[e.Fwd] = true
			return true
		})
	}
	if len(seen) != 4900 || chunks < 5 {
		t.Fatalf("%d entries in %d chunks, want 4900 in at least 5", len(seen), chunks)
	}
}
