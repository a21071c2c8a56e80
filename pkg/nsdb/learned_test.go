package nsdb

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

func TestNeighborKeyAndValue(t *testing.T) {
	for _, ip := range []string{"10.0.2.12", "fd00:2::12"} {
		n := LearnedNeighbor{RouterID: "5e0c2a0e-0000-4000-8000-000000000001", IP: netip.MustParseAddr(ip)}
		got, ok := ParseNeighborKey(n.Key())
		if !ok || got != n {
			t.Errorf("ParseNeighborKey(%q) = %+v, %v; want %+v", n.Key(), got, ok, n)
		}
	}
	for _, bad := range []string{"/nagare/v1/state/neighbor/r1", "/nagare/v1/state/neighbor//10.0.0.1",
		"/nagare/v1/state/neighbor/r1/10.0.0.300", "/nagare/v1/state/mac/r1/10.0.0.1"} {
		if _, ok := ParseNeighborKey(bad); ok {
			t.Errorf("ParseNeighborKey(%q) accepted", bad)
		}
	}
	mac := packet.MAC{0x02, 0, 0x0a, 0, 2, 0x0c}
	at := time.UnixMilli(1_800_000_000_123)
	m, when, ok := parseNeighborValue(neighborValue(mac, at))
	if !ok || m != mac || !when.Equal(at) {
		t.Errorf("value round trip: %v %v %v", m, when, ok)
	}
	for _, bad := range []string{"", "02:00:0a:00:02:0c", "00:00:00:00:00:00 1", "02:00:0a:00:02:0c x"} {
		if _, _, ok := parseNeighborValue(bad); ok {
			t.Errorf("parseNeighborValue(%q) accepted", bad)
		}
	}
}

// watchInto runs a watch in the background and returns what it delivers.
func watchInto[B any](t *testing.T, watch func(context.Context, func(B) error) error) <-chan B {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan B, 16)
	done := make(chan error, 1)
	go func() { done <- watch(ctx, func(b B) error { ch <- b; return nil }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("watch ended with %v", err)
		}
	})
	return ch
}

func next[B any](t *testing.T, ch <-chan B) B {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch within 10 s")
		panic("unreachable")
	}
}

// The MAC tables: a Reset with what was published, then puts and
// deletions (with the port that lost the entry); a lease's end deletes
// its entries.
func TestWatchLearnedMACs(t *testing.T) {
	f := newFixture(t)
	lease, err := f.s.GrantLease(f.ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	m1 := LearnedMAC{BridgeID: "b1", VLAN: 0, MAC: packet.MAC{2, 0, 0, 0, 0, 1}, PortID: "p1"}
	if err := f.s.PutLearnedMAC(f.ctx, m1, lease); err != nil {
		t.Fatal(err)
	}
	ch := watchInto(t, f.s.WatchLearnedMACs)
	if b := next(t, ch); !b.Reset || len(b.Put) != 1 || b.Put[0] != m1 {
		t.Fatalf("first batch %+v, want a Reset with %+v", b, m1)
	}
	m2 := LearnedMAC{BridgeID: "b1", VLAN: 7, MAC: packet.MAC{2, 0, 0, 0, 0, 2}, PortID: "p2"}
	if err := f.s.PutLearnedMAC(f.ctx, m2, NoLease); err != nil {
		t.Fatal(err)
	}
	if b := next(t, ch); b.Reset || len(b.Put) != 1 || b.Put[0] != m2 {
		t.Fatalf("put batch %+v, want %+v", b, m2)
	}
	if err := f.s.RevokeLease(f.ctx, lease); err != nil {
		t.Fatal(err)
	}
	if b := next(t, ch); len(b.Deleted) != 1 || b.Deleted[0] != m1 {
		t.Fatalf("after the lease ended: %+v, want %+v deleted", b, m1)
	}
	all, err := f.s.LearnedMACs(f.ctx)
	if err != nil || len(all) != 1 || all[0] != m2 {
		t.Fatalf("LearnedMACs = %+v, %v; want [%+v]", all, err, m2)
	}
}

func TestWatchLearnedNeighbors(t *testing.T) {
	f := newFixture(t)
	at := time.UnixMilli(time.Now().UnixMilli())
	n1 := LearnedNeighbor{RouterID: "r1", IP: netip.MustParseAddr("10.0.0.9"), MAC: packet.MAC{2, 0, 0, 0, 0, 9}, At: at}
	if err := f.s.PutLearnedNeighbor(f.ctx, n1, NoLease); err != nil {
		t.Fatal(err)
	}
	// A malformed value (a newer agent's) is skipped, not fatal.
	if _, err := f.cli.Put(f.ctx, NeighborPrefix+"r1/10.0.0.8", "garbage"); err != nil {
		t.Fatal(err)
	}
	ch := watchInto(t, f.s.WatchLearnedNeighbors)
	b := next(t, ch)
	if !b.Reset || len(b.Entries) != 1 || b.Entries[0].MAC != n1.MAC || !b.Entries[0].At.Equal(at) || b.Entries[0].IP != n1.IP {
		t.Fatalf("first batch %+v, want a Reset with %+v", b, n1)
	}
	n2 := n1
	n2.IP, n2.MAC = netip.MustParseAddr("fd00::9"), packet.MAC{2, 0, 0, 0, 0, 0x10}
	if err := f.s.PutLearnedNeighbor(f.ctx, n2, NoLease); err != nil {
		t.Fatal(err)
	}
	if b := next(t, ch); b.Reset || len(b.Entries) != 1 || b.Entries[0].IP != n2.IP || b.Entries[0].MAC != n2.MAC {
		t.Fatalf("put batch %+v, want %+v", b, n2)
	}
}

// A lease kept alive holds its keys; KeepLeaseAlive ends with an error
// when the lease is revoked, and with the context's error when cancelled.
func TestLeaseKeepAlive(t *testing.T) {
	f := newFixture(t)
	host := f.create(&model.Host{Name: "h"}).GetMeta().ID
	lease, err := f.s.GrantLease(f.ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetHostAlive(f.ctx, host, lease); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.s.KeepLeaseAlive(f.ctx, lease) }()
	time.Sleep(2500 * time.Millisecond) // longer than the TTL: only the keepalive holds it
	if l, err := f.s.HostLease(f.ctx, host); err != nil || l != lease {
		t.Fatalf("HostLease after 2.5 s of a 1 s lease = %x, %v; want %x (kept alive)", int64(l), err, int64(lease))
	}
	if err := f.s.RevokeLease(f.ctx, lease); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("KeepLeaseAlive after revoke = %v, want a lost-lease error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KeepLeaseAlive did not notice the revoke")
	}
	if l, _ := f.s.HostLease(f.ctx, host); l != 0 {
		t.Fatalf("host still alive under %x after its lease was revoked", int64(l))
	}
	ctx, cancel := context.WithCancel(f.ctx)
	lease2, err := f.s.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- f.s.KeepLeaseAlive(ctx, lease2) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("KeepLeaseAlive after cancel = %v", err)
	}
}

// A status is taken back only by the lease that wrote it.
func TestTakeBackMemberStatus(t *testing.T) {
	f := newFixture(t)
	m := f.member("10.0.0.1")
	mine, err := f.s.GrantLease(f.ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := f.s.GrantLease(f.ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutMemberStatus(f.ctx, m.ID, model.MemberUp, theirs); err != nil {
		t.Fatal(err)
	}
	if err := f.s.TakeBackMemberStatus(f.ctx, m.ID, mine); err != nil {
		t.Fatal(err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m.ID); err != nil || st != model.MemberUp {
		t.Fatalf("another lease's status taken back: %q, %v", st, err)
	}
	if err := f.s.TakeBackMemberStatus(f.ctx, m.ID, theirs); err != nil {
		t.Fatal(err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m.ID); err != nil || st != "" {
		t.Fatalf("own status not taken back: %q, %v", st, err)
	}
}

func TestPutDatapathStatus(t *testing.T) {
	f := newFixture(t)
	host := f.create(&model.Host{Name: "h"}).GetMeta().ID
	lease, err := f.s.GrantLease(f.ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st := &DatapathStatus{HostID: host, HostName: "h", Datapath: "memory", Flows: 3}
	if err := f.s.PutDatapathStatus(f.ctx, st, lease); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.DatapathStatus(f.ctx, host)
	if err != nil || got.Flows != 3 || got.Datapath != "memory" {
		t.Fatalf("DatapathStatus = %+v, %v", got, err)
	}
	if err := f.s.RevokeLease(f.ctx, lease); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.DatapathStatus(f.ctx, host); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("status after the lease ended: %v", err)
	}
	if err := f.s.PutDatapathStatus(f.ctx, &DatapathStatus{HostID: "../x"}, NoLease); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("bad host id: %v", err)
	}
}
