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
		n := LearnedNeighbor{Host: "h1", RouterID: "5e0c2a0e-0000-4000-8000-000000000001", IP: netip.MustParseAddr(ip)}
		got, ok := ParseNeighborKey(n.Key())
		if !ok || got != n {
			t.Errorf("ParseNeighborKey(%q) = %+v, %v; want %+v", n.Key(), got, ok, n)
		}
	}
	for _, bad := range []string{"/nagare/v1/state/neighbor/h1/r1", "/nagare/v1/state/neighbor/h1//10.0.0.1",
		"/nagare/v1/state/neighbor//r1/10.0.0.1", "/nagare/v1/state/neighbor/r1/10.0.0.1",
		"/nagare/v1/state/neighbor/h1/r1/10.0.0.300", "/nagare/v1/state/mac/h1/r1/10.0.0.1"} {
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

func TestMACKey(t *testing.T) {
	m := LearnedMAC{Host: "h1", BridgeID: "b1", VLAN: 7, MAC: packet.MAC{2, 0, 0, 0, 0, 1}}
	if got, ok := ParseMACKey(m.Key()); !ok || got != m {
		t.Errorf("ParseMACKey(%q) = %+v, %v; want %+v", m.Key(), got, ok, m)
	}
	for _, bad := range []string{MACPrefix + "b1/7/02:00:00:00:00:01", MACPrefix + "h1/b1/7/00:00:00:00:00:00",
		MACPrefix + "/b1/7/02:00:00:00:00:01", MACPrefix + "h1//7/02:00:00:00:00:01", MACPrefix + "h1/b1/x/02:00:00:00:00:01",
		MACPrefix + "h1/b1/7/02:00:00:00:00:01/x", NeighborPrefix + "h1/b1/7/02:00:00:00:00:01"} {
		if _, ok := ParseMACKey(bad); ok {
			t.Errorf("ParseMACKey(%q) accepted", bad)
		}
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
	m1 := LearnedMAC{Host: "h1", BridgeID: "b1", VLAN: 0, MAC: packet.MAC{2, 0, 0, 0, 0, 1}, PortID: "p1"}
	if err := f.s.PutLearnedMAC(f.ctx, m1, lease); err != nil {
		t.Fatal(err)
	}
	ch := watchInto(t, f.s.WatchLearnedMACs)
	if b := next(t, ch); !b.Reset || len(b.Put) != 1 || b.Put[0] != m1 {
		t.Fatalf("first batch %+v, want a Reset with %+v", b, m1)
	}
	m2 := LearnedMAC{Host: "h1", BridgeID: "b1", VLAN: 7, MAC: packet.MAC{2, 0, 0, 0, 0, 2}, PortID: "p2"}
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
	if err := f.s.PutLearnedMAC(f.ctx, LearnedMAC{BridgeID: "b1", MAC: m1.MAC}, NoLease); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("a MAC without a host: %v, want not found", err)
	}
}

// Two hosts learned the same MAC (it moved from h1's port to h2's): the
// newest wins; when it goes, h1's older entry comes back; only when no
// host has it is it deleted. A watch started later sees the same winner.
func TestLearnedMACsMerge(t *testing.T) {
	f := newFixture(t)
	l1, err := f.s.GrantLease(f.ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := f.s.GrantLease(f.ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mac := packet.MAC{2, 0, 0, 0, 0, 1}
	on1 := LearnedMAC{Host: "h1", BridgeID: "b1", MAC: mac, PortID: "p1"}
	on2 := LearnedMAC{Host: "h2", BridgeID: "b1", MAC: mac, PortID: "p2"}
	ch := watchInto(t, f.s.WatchLearnedMACs)
	if b := next(t, ch); !b.Reset || len(b.Put) != 0 {
		t.Fatalf("first batch %+v, want an empty Reset", b)
	}
	for _, m := range []struct {
		m LearnedMAC
		l LeaseID
	}{{on1, l1}, {on2, l2}} {
		if err := f.s.PutLearnedMAC(f.ctx, m.m, m.l); err != nil {
			t.Fatal(err)
		}
		if b := next(t, ch); len(b.Put) != 1 || b.Put[0] != m.m {
			t.Fatalf("put %+v: batch %+v", m.m, b)
		}
	}
	if all, err := f.s.LearnedMACs(f.ctx); err != nil || len(all) != 1 || all[0] != on2 {
		t.Fatalf("LearnedMACs = %+v, %v; want the newest, %+v", all, err, on2)
	}
	late := watchInto(t, f.s.WatchLearnedMACs)
	if b := next(t, late); !b.Reset || len(b.Put) != 1 || b.Put[0] != on2 {
		t.Fatalf("a later watch's Reset %+v, want the newest, %+v", b, on2)
	}
	if err := f.s.RevokeLease(f.ctx, l2); err != nil {
		t.Fatal(err)
	}
	if b := next(t, ch); len(b.Put) != 1 || b.Put[0] != on1 || len(b.Deleted) != 0 {
		t.Fatalf("h2's entry gone: %+v, want h1's back", b)
	}
	if err := f.s.RevokeLease(f.ctx, l1); err != nil {
		t.Fatal(err)
	}
	if b := next(t, ch); len(b.Deleted) != 1 || b.Deleted[0] != on1 || len(b.Put) != 0 {
		t.Fatalf("h1's entry gone too: %+v, want it deleted", b)
	}
}

func TestWatchLearnedNeighbors(t *testing.T) {
	f := newFixture(t)
	at := time.UnixMilli(time.Now().UnixMilli())
	n1 := LearnedNeighbor{Host: "h1", RouterID: "r1", IP: netip.MustParseAddr("10.0.0.9"), MAC: packet.MAC{2, 0, 0, 0, 0, 9}, At: at}
	if err := f.s.PutLearnedNeighbor(f.ctx, n1, NoLease); err != nil {
		t.Fatal(err)
	}
	// A malformed value (a newer agent's) is skipped, not fatal.
	if _, err := f.cli.Put(f.ctx, NeighborPrefix+"h1/r1/10.0.0.8", "garbage"); err != nil {
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
	// Another host heard the same neighbor later: its entry is delivered
	// too, with who heard it.
	n3 := n2
	n3.Host, n3.At = "h2", at.Add(time.Second)
	if err := f.s.PutLearnedNeighbor(f.ctx, n3, NoLease); err != nil {
		t.Fatal(err)
	}
	if b := next(t, ch); len(b.Entries) != 1 || b.Entries[0] != n3 {
		t.Fatalf("h2's entry: %+v, want %+v", b, n3)
	}
	if err := f.s.PutLearnedNeighbor(f.ctx, LearnedNeighbor{RouterID: "r1", IP: n1.IP, MAC: n1.MAC, At: at}, NoLease); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("a neighbor without a host: %v, want not found", err)
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
	if err := f.s.ResumeLease(f.ctx, lease); err != nil {
		t.Fatalf("resume a live lease: %v", err)
	}
	if err := f.s.RevokeLease(f.ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := f.s.ResumeLease(f.ctx, lease); !errors.Is(err, ErrLeaseGone) {
		t.Fatalf("resume a revoked lease: %v, want ErrLeaseGone", err)
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

// Two checkers' statuses of one member: the newest counts; taking one
// back leaves the other's.
func TestMemberStatusMerge(t *testing.T) {
	f := newFixture(t)
	m := f.member("10.0.0.1")
	if err := f.s.PutMemberStatus(f.ctx, "h1", m.ID, model.MemberDown, NoLease); err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutMemberStatus(f.ctx, "h2", m.ID, model.MemberUp, NoLease); err != nil {
		t.Fatal(err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m.ID); err != nil || st != model.MemberUp {
		t.Fatalf("two checkers: %q, %v; want the newest, up", st, err)
	}
	if err := f.s.TakeBackMemberStatus(f.ctx, "h2", m.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m.ID); err != nil || st != model.MemberDown {
		t.Fatalf("h2 took its status back: %q, %v; want h1's, down", st, err)
	}
	if err := f.s.TakeBackMemberStatus(f.ctx, "h1", m.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m.ID); err != nil || st != "" {
		t.Fatalf("both taken back: %q, %v", st, err)
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
