package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memRecord is hostclaim's SetHost over the in-memory NSDB (the real one
// runs transactions nsdbmem does not have).
type memRecord struct{ db *nsdbmem.Store }

func (m memRecord) SetHost(ctx context.Context, hostID string, h hostclaim.HostInfo) error {
	_, err := m.db.Modify(ctx, model.HostKind, hostID, 0, func(o model.Object) error {
		o.(*model.Host).Addresses = h.Addresses
		return nil
	})
	return err
}

// A host registers once by name; a second start finds it and updates its
// addresses; a lost lease is replaced, the host is alive again, and the
// holders of the lease's state are told.
func TestSessionRegistersAndRenews(t *testing.T) {
	db := nsdbmem.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Open(ctx, db, Config{HostName: "hv1", LeaseTTL: time.Second, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.7")
	again, err := Open(ctx, db, Config{HostName: "hv1", Addresses: []netip.Addr{addr}, Record: memRecord{db}, LeaseTTL: time.Second, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if again.HostID() != s.HostID() {
		t.Fatalf("second start registered a new host %s, want %s", again.HostID(), s.HostID())
	}
	if hs, _, _ := db.List(ctx, model.HostKind, "", ""); len(hs) != 1 || len(hs[0].(*model.Host).Addresses) != 1 || hs[0].(*model.Host).Addresses[0] != addr {
		t.Fatalf("hosts %+v: want one, with the tunnel address", hs)
	}
	if l, _ := db.HostLease(ctx, s.HostID()); l != again.Lease() {
		t.Fatalf("alive under %x, want the latest lease %x", int64(l), int64(again.Lease()))
	}

	changed := make(chan nsdb.LeaseID, 1)
	again.OnLeaseChange(func(_ context.Context, l nsdb.LeaseID) { changed <- l })
	done := make(chan error, 1)
	go func() { done <- again.Run(ctx) }()
	old := again.Lease()
	if err := db.RevokeLease(ctx, old); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-changed:
		if l == old || l != again.Lease() {
			t.Fatalf("told of lease %x, current %x, old %x", int64(l), int64(again.Lease()), int64(old))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no new lease after the old one was lost")
	}
	if l, _ := db.HostLease(ctx, s.HostID()); l != again.Lease() {
		t.Fatalf("host alive under %x, want the new lease %x", int64(l), int64(again.Lease()))
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run ended with %v", err)
	}
}

// refusing is the in-memory NSDB once etcd has deleted the host's user:
// every write is refused as etcd refuses it.
type refusing struct {
	*nsdbmem.Store
	refuse atomic.Bool
}

func (r *refusing) SetHostAlive(ctx context.Context, hostID string, lease nsdb.LeaseID) error {
	if r.refuse.Load() {
		return errors.New("etcdserver: permission denied")
	}
	return r.Store.SetHostAlive(ctx, hostID, lease)
}

// A revoked host (its lease ended, its writes refused) stops instead of
// retrying for ever.
func TestSessionStopsWhenRefused(t *testing.T) {
	db := &refusing{Store: nsdbmem.New()}
	ctx := context.Background()
	s, err := Open(ctx, db, Config{HostName: "hv1", LeaseTTL: time.Second, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	db.refuse.Store(true)
	if err := db.RevokeLease(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "revoked") || !nsdb.IsPermissionDenied(err) {
			t.Fatalf("Run ended with %v, want a refusal naming revocation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept retrying a refused host")
	}
}

// unanswered is the in-memory NSDB whose client gives the lease up once,
// as etcd's does when the NSDB was down for longer than the TTL, while
// the NSDB itself still holds the lease.
type unanswered struct {
	*nsdbmem.Store
	giveUp chan struct{}
	calls  atomic.Int32
}

func (u *unanswered) KeepLeaseAlive(ctx context.Context, lease nsdb.LeaseID) error {
	if u.calls.Add(1) == 1 {
		select {
		case <-u.giveUp:
			return errors.New("keepalive unanswered for longer than the TTL")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return u.Store.KeepLeaseAlive(ctx, lease)
}

// A lease the client gave up but the NSDB still holds is resumed, not
// replaced: the host never looks dead and nothing moves.
func TestSessionResumesALeaseTheNSDBStillHolds(t *testing.T) {
	db := &unanswered{Store: nsdbmem.New(), giveUp: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Open(ctx, db, Config{HostName: "hv1", LeaseTTL: time.Second, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan nsdb.LeaseID, 1)
	s.OnLeaseChange(func(_ context.Context, l nsdb.LeaseID) { changed <- l })
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	lease := s.Lease()
	close(db.giveUp)
	for deadline := time.Now().Add(10 * time.Second); db.calls.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not keep the lease alive again after giving it up")
		}
	}
	select {
	case l := <-changed:
		t.Fatalf("a new lease %x replaced %x, which the NSDB still held", int64(l), int64(lease))
	case <-time.After(300 * time.Millisecond):
	}
	if s.Lease() != lease {
		t.Fatalf("lease %x, want the resumed %x", int64(s.Lease()), int64(lease))
	}
	if l, _ := db.HostLease(ctx, s.HostID()); l != lease {
		t.Fatalf("host alive under %x, want %x", int64(l), int64(lease))
	}
	// Once the NSDB no longer holds it, it is replaced.
	if err := db.RevokeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-changed:
		if l == lease {
			t.Fatalf("told of the revoked lease %x", int64(l))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no new lease after the old one was revoked")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run ended with %v", err)
	}
}
