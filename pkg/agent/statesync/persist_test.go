package statesync

import (
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// testSync is the state of host, saved in dir, with table bounds (0:
// the defaults), on in-memory NAT blocks.
func testSync(dir, host string, max, zoneMax int) *Sync {
	return New(Config{HostID: host, HostName: host, StateDir: dir, ConntrackMax: max, ConntrackZoneMax: zoneMax,
		Blocks: flowstate.NewMemBlocks(), Log: slog.New(slog.DiscardHandler)})
}

func tcpKey(zone uint64, src string, sp uint16, dst string, dp uint16) flowstate.Key {
	return flowstate.Key{Src: netip.MustParseAddr(src).As16(), Dst: netip.MustParseAddr(dst).As16(), Zone: zone,
		SrcPort: sp, DstPort: dp, Proto: packet.IPProtoTCP, Family: 4}
}

// The table saved by one run is what the next run of the same host
// starts with, minus what expired in between; another host's file and a
// damaged file are not taken whole.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	a := testSync(dir, "host-a", 0, 0)
	now := time.Now()
	var tx flowstate.Tx
	for i := range 100 {
		fwd := tcpKey(7, "10.0.0.5", uint16(10000+i), "192.0.2.9", 80)
		rev := fwd.Reverse()
		rev.Zone = 9
		tx.Reset()
		tx.Add(flowstate.NewConn(fwd, rev, packet.TCPSyn))
		if err := a.table.Commit(&tx, now.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Save(true); err != nil {
		t.Fatal(err)
	}

	b := testSync(dir, "host-a", 0, 0)
	n, refused, err := b.restore(b.statePath(), now.Add(time.Second))
	if err != nil || n != 100 || refused != 0 || b.table.Len() != 100 {
		t.Fatalf("restored %d (refused %d, err %v), table %d; want 100", n, refused, err, b.table.Len())
	}
	k := tcpKey(7, "10.0.0.5", 10042, "192.0.2.9", 80)
	k.Type = flowstate.KeyConn
	if _, ok := b.table.Get(&k); !ok {
		t.Fatal("a saved connection is missing after the restart")
	}

	// Down longer than the entries' lifetime (SYN sent: 30 s): none comes back.
	c := testSync(dir, "host-a", 0, 0)
	if n, _, err := c.restore(c.statePath(), now.Add(31*time.Second)); err != nil || n != 0 {
		t.Fatalf("after 31 s down: restored %d, err %v; want 0", n, err)
	}

	// Another host's file.
	d := testSync(dir, "host-b", 0, 0)
	if n, _, err := d.restore(d.statePath(), now); err == nil || n != 0 {
		t.Fatalf("another host's file: restored %d, err %v", n, err)
	}

	// A torn file keeps the entries before the damage; garbage keeps none.
	raw, err := os.ReadFile(a.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.statePath(), raw[:len(raw)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	e := testSync(dir, "host-a", 0, 0)
	if n, _, err := e.restore(e.statePath(), now); err == nil || n != 99 {
		t.Fatalf("torn file: restored %d, err %v; want 99 and an error", n, err)
	}
	if err := os.WriteFile(a.statePath(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := testSync(dir, "host-a", 0, 0)
	if n, _, err := f.restore(f.statePath(), now); err == nil || n != 0 {
		t.Fatalf("garbage file: restored %d, err %v", n, err)
	}
	// A table full of what it restored refuses the rest, and counts it.
	if err := a.Save(true); err != nil {
		t.Fatal(err)
	}
	small := testSync(dir, "host-a", 10, 0)
	if n, refused, err := small.restore(small.statePath(), now); err != nil || n != 10 || refused != 90 || small.table.Len() != 10 {
		t.Fatalf("bounded restore: %d restored, %d refused, err %v, table %d", n, refused, err, small.table.Len())
	}
}

// A state packet's entries are imported; a malformed one is counted and
// imports nothing.
func TestReceiveState(t *testing.T) {
	a := testSync("", "host-a", 0, 0)
	fwd := tcpKey(7, "10.0.0.5", 1000, "192.0.2.9", 80)
	rev := fwd.Reverse()
	rev.Zone = 9
	pkt, err := flowstate.AppendStatePacket(nil, []flowstate.Entry{flowstate.NewConn(fwd, rev, packet.TCPSyn)})
	if err != nil {
		t.Fatal(err)
	}
	if tags, _ := a.importState(netip.MustParseAddr("10.99.0.2"), pkt, nil, nil); len(tags) != 2 {
		t.Fatalf("%d tags to invalidate, want 2", len(tags))
	}
	if a.table.Len() != 1 || a.count.received.Load() != 1 {
		t.Fatalf("table %d entries, %d received", a.table.Len(), a.count.received.Load())
	}
	a.importState(netip.MustParseAddr("10.99.0.2"), pkt[:len(pkt)-1], nil, nil)
	a.importState(netip.MustParseAddr("10.99.0.2"), []byte{9}, nil, nil)
	if a.table.Len() != 1 || a.count.malformed.Load() != 2 {
		t.Fatalf("malformed: table %d entries, %d counted", a.table.Len(), a.count.malformed.Load())
	}
}

// A state file, whatever its bytes, restores only well-formed entries,
// within the table's bounds, and never crashes the agent.
func FuzzRestoreState(f *testing.F) {
	dir := f.TempDir()
	a := testSync(dir, "host-a", 0, 0)
	fwd := tcpKey(7, "10.0.0.5", 1000, "192.0.2.9", 80)
	rev := fwd.Reverse()
	rev.Zone = 9
	var tx flowstate.Tx
	tx.Add(flowstate.NewConn(fwd, rev, packet.TCPSyn))
	if err := a.table.Commit(&tx, time.Now().UnixNano()); err != nil {
		f.Fatal(err)
	}
	if err := a.Save(true); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(a.statePath())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		b := testSync(dir, "host-a", 8, 0)
		if err := os.WriteFile(b.statePath(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, _, _ := b.restore(b.statePath(), time.Now())
		// A record repeated refreshes its entry: n may exceed the table.
		if l := b.table.Len(); l > 8 || l > n {
			t.Fatalf("restored %d, table holds %d (bound 8)", n, l)
		}
	})
}
