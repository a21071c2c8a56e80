package nsdb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
)

// watcher runs a watch in the background and hands its batches to the test.
type watcher[B any] struct {
	t      *testing.T
	ch     chan B
	done   chan error
	cancel context.CancelFunc
}

func startWatch[B any](t *testing.T, run func(ctx context.Context, fn func(B) error) error) *watcher[B] {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher[B]{t: t, ch: make(chan B, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- run(ctx, func(b B) error { w.ch <- b; return nil })
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *watcher[B]) next() B {
	w.t.Helper()
	select {
	case b := <-w.ch:
		return b
	case err := <-w.done:
		w.t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		w.t.Fatal("no batch within 10 s")
	}
	panic("unreachable")
}

func (w *watcher[B]) stop() error {
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(10 * time.Second):
		w.t.Error("watch did not stop within 10 s of its context ending")
		return nil
	}
}

func TestWatch(t *testing.T) {
	f := newFixture(t)
	b1 := f.bridge("b1")
	r := f.router("r")
	w := startWatch(t, f.s.Watch)

	reset := w.next()
	// Declaration order: bridges before routers.
	if !reset.Reset || len(reset.Objects) != 2 || reset.Objects[0].GetMeta().ID != b1.ID || reset.Objects[1].GetMeta().ID != r.ID || reset.Rev < r.Revision {
		t.Fatalf("first batch = %+v, want a Reset with b1 then r at revision >= %d", reset, r.Revision)
	}

	b2 := f.bridge("b2")
	b := w.next()
	if b.Reset || len(b.Events) != 1 || b.Events[0].Type != Put || b.Events[0].ID != b2.ID || b.Events[0].Prev != nil ||
		b.Events[0].Object.(*model.Bridge).Name != "b2" || b.Rev != b2.Revision || b.Events[0].Object.GetMeta().Revision != b2.Revision {
		t.Fatalf("create batch = %+v", b)
	}

	m := f.modify(model.BridgeKind, b2.ID, func(o model.Object) { o.(*model.Bridge).Name = "b2x" })
	b = w.next()
	if len(b.Events) != 1 || b.Events[0].Object.(*model.Bridge).Name != "b2x" || b.Events[0].Prev.(*model.Bridge).Name != "b2" || b.Rev != m.GetMeta().Revision {
		t.Fatalf("update batch = %+v", b)
	}

	// Linking writes both ports in one transaction: one batch, two events.
	rp := f.routerPort(r.ID, "10.0.0.1/24")
	bp := f.bridgePort(b1.ID)
	w.next()
	w.next()
	f.modify(model.PortKind, rp.ID, func(o model.Object) { o.(*model.Port).PeerID = bp.ID })
	b = w.next()
	if len(b.Events) != 2 {
		t.Fatalf("link batch has %d events, want both ports in one batch: %+v", len(b.Events), b)
	}

	if err := f.s.Remove(f.ctx, model.BridgeKind, b2.ID, 0); err != nil {
		t.Fatal(err)
	}
	b = w.next()
	if len(b.Events) != 1 || b.Events[0].Type != Delete || b.Events[0].ID != b2.ID || b.Events[0].Kind != model.BridgeKind ||
		b.Events[0].Object != nil || b.Events[0].Prev.(*model.Bridge).Name != "b2x" {
		t.Fatalf("delete batch = %+v", b)
	}
	if err := w.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("watch returned %v, want its context's error", err)
	}
}

// TestWatchAfterCompaction resumes a watch from a revision whose history
// has been compacted away: the watch must relist and deliver a Reset.
func TestWatchAfterCompaction(t *testing.T) {
	f := newFixture(t)
	b1 := f.bridge("b1")
	old := b1.Revision
	b2 := f.bridge("b2")

	// Without compaction, resuming delivers the changes after old.
	w := startWatch(t, func(ctx context.Context, fn func(Batch) error) error { return f.s.WatchFrom(ctx, old, fn) })
	if b := w.next(); b.Reset || len(b.Events) != 1 || b.Events[0].ID != b2.ID {
		t.Fatalf("resume from %d: %+v, want the creation of b2", old, b)
	}
	_ = w.stop()

	f.modify(model.BridgeKind, b1.ID, func(o model.Object) { o.(*model.Bridge).Name = "b1x" })
	_, rev := f.snapshot()
	if _, err := f.cli.Compact(f.ctx, rev); err != nil {
		t.Fatal(err)
	}
	w = startWatch(t, func(ctx context.Context, fn func(Batch) error) error { return f.s.WatchFrom(ctx, old, fn) })
	b := w.next()
	if !b.Reset || len(b.Objects) != 2 || b.Rev < rev || b.Objects[0].(*model.Bridge).Name != "b1x" {
		t.Fatalf("resume from compacted %d: %+v, want a Reset with both bridges at >= %d", old, b, rev)
	}
	// And the watch carries on after the relist.
	b3 := f.bridge("b3")
	if b := w.next(); b.Reset || len(b.Events) != 1 || b.Events[0].ID != b3.ID {
		t.Fatalf("after relist: %+v", b)
	}
}

func TestWatchCallbackError(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("boom")
	err := f.s.Watch(f.ctx, func(Batch) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Watch returned %v, want the callback's error", err)
	}
}

func TestHostLiveness(t *testing.T) {
	f := newFixture(t)
	h1, h2 := f.host("h1"), f.host("h2")
	lease, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetHostAlive(f.ctx, h1.ID, lease.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetHostAlive(f.ctx, "not-a-host", lease.ID); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("SetHostAlive of a non-UUID: %v", err)
	}
	alive, err := f.s.AliveHosts(f.ctx)
	if err != nil || !alive[h1.ID] || alive[h2.ID] || len(alive) != 1 {
		t.Fatalf("alive = %v, %v; want only h1", alive, err)
	}

	w := startWatch(t, f.s.WatchHostLiveness)
	if l := w.next(); !l.Reset || len(l.Alive) != 1 || !l.Alive[h1.ID] {
		t.Fatalf("first liveness batch %+v, want a Reset with h1", l)
	}
	lease2, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetHostAlive(f.ctx, h2.ID, lease2.ID); err != nil {
		t.Fatal(err)
	}
	if l := w.next(); l.Reset || len(l.Alive) != 1 || !l.Alive[h2.ID] {
		t.Fatalf("h2 coming alive: %+v", l)
	}
	// The agent of h1 dies: its lease goes, and so does the host.
	if _, err := f.cli.Revoke(f.ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if l := w.next(); len(l.Alive) != 1 {
		t.Fatalf("h1's lease revoked: %+v, want one change", l)
	} else if v, ok := l.Alive[h1.ID]; !ok || v {
		t.Fatalf("h1's lease revoked: %+v, want h1 reported false", l)
	}
}

// TestHostRevoked: the revocation mark is read back, for that host only,
// and stays after the host's lease ends.
func TestHostRevoked(t *testing.T) {
	f := newFixture(t)
	h1, h2 := f.host("h1"), f.host("h2")
	for _, h := range []string{h1.ID, h2.ID} {
		if r, err := f.s.HostRevoked(f.ctx, h); err != nil || r {
			t.Fatalf("host %s before any revocation: revoked %v (%v)", h, r, err)
		}
	}
	if err := f.s.MarkHostRevoked(f.ctx, h1.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.EndHostLease(f.ctx, h1.ID); err != nil {
		t.Fatal(err)
	}
	if r, err := f.s.HostRevoked(f.ctx, h1.ID); err != nil || !r {
		t.Errorf("revoked h1: revoked %v (%v)", r, err)
	}
	if r, err := f.s.HostRevoked(f.ctx, h2.ID); err != nil || r {
		t.Errorf("h2 beside revoked h1: revoked %v (%v)", r, err)
	}
}
