package flowstate

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

// filled returns a table holding n UDP connections and their keys.
func filled(tb testing.TB, n int) (*Table, []Key) {
	t := New(Config{MaxEntries: n, MaxPerZone: n})
	keys := make([]Key, n)
	var tx Tx
	for i := range n {
		fwd := Key{Zone: zoneA, Type: KeyConn, Proto: packet.IPProtoUDP, Family: 4, SrcPort: uint16(i), DstPort: 53,
			Src: netip.AddrFrom4([4]byte{10, byte(i >> 24), byte(i >> 16), byte(i >> 8)}).As16(), Dst: netip.AddrFrom4([4]byte{192, 0, 2, 9}).As16()}
		rev := fwd.Reverse()
		rev.Zone = zoneB
		tx.Reset()
		tx.Add(NewConn(fwd, rev, 0))
		if err := t.Commit(&tx, 0); err != nil {
			tb.Fatal(err)
		}
		keys[i] = fwd
	}
	return t, keys
}

func TestLookupAllocatesNothing(t *testing.T) {
	tb, keys := filled(t, 1000)
	miss := keys[0]
	miss.DstPort++
	rk := keys[1].Reverse()
	rk.Zone = zoneB
	for name, k := range map[string]Key{"hit": keys[7], "reply": rk, "miss": miss} {
		if n := testing.AllocsPerRun(1000, func() { tb.Lookup(&k, 0, 1) }); n != 0 {
			t.Errorf("%s: %v allocations per lookup", name, n)
		}
	}
}

// BenchmarkLookupHit looks up random keys of a table of 128k
// connections (15 MB of entries): the cost is two cache misses, the index
// slot and the entry.
func BenchmarkLookupHit(b *testing.B) { benchLookupHit(b, 1<<17) }

// BenchmarkLookupHitSmall is the same on a cache-resident table (1k).
func BenchmarkLookupHitSmall(b *testing.B) { benchLookupHit(b, 1<<10) }

func benchLookupHit(b *testing.B, n int) {
	tb, keys := filled(b, n)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := &keys[i&(len(keys)-1)]
		if !tb.Lookup(k, 0, 1).Found {
			b.Fatal("miss")
		}
		i += 7919
	}
}

func BenchmarkLookupMiss(b *testing.B) {
	tb, keys := filled(b, 1<<17)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i&(len(keys)-1)]
		k.DstPort = 54
		if tb.Lookup(&k, 0, 1).Found {
			b.Fatal("hit")
		}
		i += 7919
	}
}

// BenchmarkCommitAndExpire is a connection's whole life in the table:
// committed, then swept when it times out.
func BenchmarkCommitAndExpire(b *testing.B) {
	t := New(Config{})
	var tx Tx
	now := int64(0)
	life := int64(DefaultTimeouts().UDPNew)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		fwd := Key{Zone: zoneA, Proto: packet.IPProtoUDP, Family: 4, SrcPort: uint16(i), DstPort: 53,
			Src: netip.AddrFrom4([4]byte{10, 0, byte(i >> 24), byte(i >> 16)}).As16(), Dst: netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 8)}).As16()}
		rev := fwd.Reverse()
		rev.Zone = zoneB
		tx.Reset()
		tx.Add(NewConn(fwd, rev, 0))
		if err := t.Commit(&tx, now); err != nil {
			b.Fatal(err)
		}
		i++
		if i%1024 == 0 {
			now += life / 8 // about 8k connections live at any time
			t.Sweep(now, 0, nil)
		}
	}
}

func BenchmarkAllocSNATCommit(b *testing.B) {
	t := New(Config{})
	targets := []Target{{From: netip.MustParseAddr("203.0.113.1"), To: netip.MustParseAddr("203.0.113.8")}}
	var tx Tx
	now := int64(0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		fwd := Key{Zone: zoneR, Type: KeyFwdSNAT, Proto: packet.IPProtoTCP, Family: 4, SrcPort: uint16(i), DstPort: 443,
			Src: netip.AddrFrom4([4]byte{10, 0, byte(i >> 24), byte(i >> 16)}).As16(), Dst: netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 8)}).As16()}
		tx.Reset()
		if _, err := t.AllocSNAT(&tx, "router", &fwd, targets, packet.TCPSyn, now); err != nil {
			b.Fatal(err)
		}
		if err := t.Commit(&tx, now); err != nil {
			b.Fatal(err)
		}
		i++
		if i%1024 == 0 {
			now += int64(DefaultTimeouts().TCPSynSent) / 8
			t.Sweep(now, 0, nil)
		}
	}
}

// BenchmarkBytesPerConnection measures the memory of a table of one
// million tracked connections (index, slab, lists), reported as B/conn.
func BenchmarkBytesPerConnection(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		before := heapInUse()
		t, keys := filled(b, n)
		keysSize := uint64(len(keys)) * 48
		after := heapInUse()
		b.ReportMetric(float64(after-before-keysSize)/n, "B/conn")
		runtime.KeepAlive(t)
		runtime.KeepAlive(keys)
	}
}
