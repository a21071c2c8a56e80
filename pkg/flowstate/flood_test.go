package flowstate

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// synFlood commits n new TCP connections from one VM (zone) to random-ish
// destinations, each with its own source port, and returns how many were
// refused.
func synFlood(tb *Table, zone uint64, n int, now int64) (refused int) {
	var tx Tx
	for i := range n {
		fwd := Key{Zone: zone, Proto: packet.IPProtoTCP, Family: 4, SrcPort: uint16(i), DstPort: 80,
			Src: netip.AddrFrom4([4]byte{10, 0, byte(zone >> 8), byte(zone)}).As16(), Dst: netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}).As16()}
		rev := fwd.Reverse()
		rev.Zone = zoneR
		tx.Reset()
		tx.Add(NewConn(fwd, rev, packet.TCPSyn))
		if err := tb.Commit(&tx, now); err != nil {
			if !errors.Is(err, ErrZoneFull) && !errors.Is(err, ErrTableFull) {
				panic(err)
			}
			refused++
		}
	}
	return refused
}

// A VM sending a million SYNs fills its own zone and no more: the table's
// memory stays bounded, the refusals are counted, and another tenant's
// connections still get in.
func TestSYNFloodIsBoundedPerZone(t *testing.T) {
	const (
		flood   = 1_000_000
		maxAll  = 1 << 18
		maxZone = 1 << 16
	)
	before := heapInUse()
	tb := New(Config{MaxEntries: maxAll, MaxPerZone: maxZone})
	if r := synFlood(tb, zoneB, 1000, 0); r != 0 {
		t.Fatalf("tenant B before the flood: %d refused", r)
	}
	refused := synFlood(tb, zoneA, flood, 0)
	if refused != flood-maxZone || tb.ZoneLen(zoneA) != maxZone {
		t.Fatalf("flood: %d refused, zone holds %d; want %d and %d", refused, tb.ZoneLen(zoneA), flood-maxZone, maxZone)
	}
	// Tenant B opens more connections during the flood.
	var tx Tx
	for i := range 1000 {
		fwd := tcp(zoneB, "10.1.0.5", uint16(i), "192.0.2.9", 443)
		rev := fwd.Reverse()
		rev.Zone = zoneR
		tx.Reset()
		tx.Add(NewConn(fwd, rev, packet.TCPSyn))
		if err := tb.Commit(&tx, 1); err != nil {
			t.Fatalf("tenant B during the flood: %v", err)
		}
	}
	s := tb.Stats()
	if s.RefusedZoneFull != uint64(refused) || s.Entries != maxZone+2000 {
		t.Fatalf("stats %+v", s)
	}
	grew := heapInUse() - before
	perEntry := float64(grew) / float64(s.Entries)
	t.Logf("%d entries after a %d-SYN flood: heap +%.1f MB, %.0f B/entry", s.Entries, flood, float64(grew)/1e6, perEntry)
	if perEntry > 400 {
		t.Errorf("%.0f bytes per entry", perEntry)
	}
	// The flood's half-open entries expire (30 s) and the zone takes new
	// connections again; the table never holds more than its bounds.
	later := int64(DefaultTimeouts().TCPSynSent) + 2
	tb.Sweep(later, 0, nil)
	if n := tb.ZoneLen(zoneA); n != 0 {
		t.Fatalf("%d flood entries left after their timeout", n)
	}
	if r := synFlood(tb, zoneA, 1000, later); r != 0 {
		t.Fatalf("after expiry: %d refused", r)
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(tb)
}

// A flood across many zones stops at the global bound.
func TestFloodAcrossZonesHitsTableBound(t *testing.T) {
	tb := New(Config{MaxEntries: 1000, MaxPerZone: 100})
	refused := 0
	for z := range uint64(50) {
		refused += synFlood(tb, 0x100+z, 150, 0)
	}
	s := tb.Stats()
	if s.Entries != 1000 || refused != 50*150-1000 || s.RefusedFull+s.RefusedZoneFull != uint64(refused) {
		t.Fatalf("%d refused, stats %+v", refused, s)
	}
}
