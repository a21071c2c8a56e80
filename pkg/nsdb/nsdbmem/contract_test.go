package nsdbmem_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/packet"
)

// store is the surface both stores share: the contract the fake keeps.
type store interface {
	Create(context.Context, model.Object) (model.Object, error)
	Modify(context.Context, *model.Kind, string, int64, func(model.Object) error) (model.Object, error)
	Remove(context.Context, *model.Kind, string, int64) error
	List(context.Context, *model.Kind, string, string) ([]model.Object, int64, error)
	Watch(context.Context, func(nsdb.Batch) error) error
	GrantLease(context.Context, time.Duration) (nsdb.LeaseID, error)
	RevokeLease(context.Context, nsdb.LeaseID) error
	ResumeLease(context.Context, nsdb.LeaseID) error
	SetHostAlive(context.Context, string, nsdb.LeaseID) error
	WatchHostLiveness(context.Context, func(nsdb.Liveness) error) error
	PutLearnedMAC(context.Context, nsdb.LearnedMAC, nsdb.LeaseID) error
	WatchLearnedMACs(context.Context, func(nsdb.LearnedMACBatch) error) error
	PutMemberStatus(context.Context, string, string, string, nsdb.LeaseID) error
	TakeBackMemberStatus(context.Context, string, string) error
	MemberStatuses(context.Context) (map[string]string, error)
	UpdateLearnedRoutes(context.Context, []nsdb.LearnedRoute, []nsdb.LearnedRoute, nsdb.LeaseID) error
	WatchLearnedRoutes(context.Context, func(nsdb.LearnedRouteBatch) error) error
	LearnedRoutes(context.Context, string) ([]nsdb.LearnedRoute, error)
	PutBGPPeerStatus(context.Context, string, nsdb.BGPPeerStatus, nsdb.LeaseID) error
	TakeBackBGPPeerStatus(context.Context, string, string) error
	BGPPeerStatuses(context.Context) (map[string]nsdb.BGPPeerStatus, error)
}

// TestContract runs one scenario against the real store (embedded etcd)
// and the in-memory one: what the agent's tests rely on must behave the
// same in both.
func TestContract(t *testing.T) {
	for _, c := range []struct {
		name string
		new  func(t *testing.T) store
	}{
		{"etcd", func(t *testing.T) store {
			s := nsdb.New(nsdbtest.Start(t))
			if err := s.Init(context.Background()); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"memory", func(t *testing.T) store { return nsdbmem.New() }},
	} {
		t.Run(c.name, func(t *testing.T) { contract(t, c.new(t)) })
	}
}

func contract(t *testing.T, s store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	br, err := s.Create(ctx, &model.Bridge{Name: "b0"})
	must(err)
	batches := make(chan nsdb.Batch, 16)
	go func() { _ = s.Watch(ctx, func(b nsdb.Batch) error { batches <- b; return nil }) }()
	next := func() nsdb.Batch {
		t.Helper()
		select {
		case b := <-batches:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no watch batch")
			return nsdb.Batch{}
		}
	}
	if b := next(); !b.Reset || len(b.Objects) != 1 || b.Objects[0].GetMeta().ID != br.GetMeta().ID {
		t.Fatalf("reset batch %+v", b)
	}
	p, err := s.Create(ctx, &model.Port{BridgeID: br.GetMeta().ID})
	must(err)
	if b := next(); len(b.Events) != 1 || b.Events[0].Type != nsdb.Put || b.Events[0].Prev != nil || b.Events[0].ID != p.GetMeta().ID {
		t.Fatalf("create event %+v", b)
	}
	_, err = s.Modify(ctx, model.PortKind, p.GetMeta().ID, 0, func(o model.Object) error {
		o.(*model.Port).VLAN = 7
		return nil
	})
	must(err)
	if b := next(); len(b.Events) != 1 || b.Events[0].Object.(*model.Port).VLAN != 7 || b.Events[0].Prev.(*model.Port).VLAN != 0 {
		t.Fatalf("modify event %+v", b)
	}
	if _, err := s.Modify(ctx, model.PortKind, p.GetMeta().ID, 1, func(model.Object) error { return nil }); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("modify at a stale revision: %v", err)
	}
	if ps, _, err := s.List(ctx, model.PortKind, "vlan", "7"); err != nil || len(ps) != 1 {
		t.Fatalf("list by field: %v, %v", ps, err)
	}
	must(s.Remove(ctx, model.PortKind, p.GetMeta().ID, 0))
	if b := next(); len(b.Events) != 1 || b.Events[0].Type != nsdb.Delete || b.Events[0].Prev == nil {
		t.Fatalf("delete event %+v", b)
	}
	if err := s.Remove(ctx, model.PortKind, p.GetMeta().ID, 0); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("removing a missing object: %v", err)
	}

	// A lease's end takes its keys: liveness, learned MACs, statuses.
	host, err := s.Create(ctx, &model.Host{Name: "h"})
	must(err)
	lb, err := s.Create(ctx, &model.LoadBalancer{Name: "lb"})
	must(err)
	pool, err := s.Create(ctx, &model.Pool{LoadBalancerID: lb.GetMeta().ID})
	must(err)
	mem, err := s.Create(ctx, &model.PoolMember{PoolID: pool.GetMeta().ID, Address: netip.MustParseAddr("10.0.0.1"), ProtocolPort: 80})
	must(err)
	lease, err := s.GrantLease(ctx, time.Minute)
	must(err)
	must(s.SetHostAlive(ctx, host.GetMeta().ID, lease))
	must(s.PutLearnedMAC(ctx, nsdb.LearnedMAC{Host: host.GetMeta().ID, BridgeID: br.GetMeta().ID, MAC: packet.MAC{2, 0, 0, 0, 0, 1}, PortID: "p"}, lease))
	must(s.PutMemberStatus(ctx, host.GetMeta().ID, mem.GetMeta().ID, model.MemberUp, lease))
	const rtr, port, peer = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
	learned := nsdb.LearnedRoute{RouterID: rtr, PortID: port, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("198.51.100.1"),
		HostID: host.GetMeta().ID}
	must(s.UpdateLearnedRoutes(ctx, []nsdb.LearnedRoute{learned}, nil, lease))
	must(s.PutBGPPeerStatus(ctx, peer, nsdb.BGPPeerStatus{HostID: host.GetMeta().ID, State: "established"}, lease))
	routes := make(chan nsdb.LearnedRouteBatch, 8)
	go func() {
		_ = s.WatchLearnedRoutes(ctx, func(b nsdb.LearnedRouteBatch) error { routes <- b; return nil })
	}()
	if b := <-routes; !b.Reset || len(b.Put) != 1 || b.Put[0] != learned {
		t.Fatalf("learned routes reset %+v", b)
	}
	alive := make(chan nsdb.Liveness, 8)
	go func() { _ = s.WatchHostLiveness(ctx, func(l nsdb.Liveness) error { alive <- l; return nil }) }()
	macs := make(chan nsdb.LearnedMACBatch, 8)
	go func() { _ = s.WatchLearnedMACs(ctx, func(b nsdb.LearnedMACBatch) error { macs <- b; return nil }) }()
	if l := <-alive; !l.Reset || !l.Alive[host.GetMeta().ID] {
		t.Fatalf("liveness reset %+v", l)
	}
	if b := <-macs; !b.Reset || len(b.Put) != 1 {
		t.Fatalf("MAC reset %+v", b)
	}
	must(s.TakeBackMemberStatus(ctx, "another-host", mem.GetMeta().ID))
	if st, _ := s.MemberStatuses(ctx); st[mem.GetMeta().ID] != model.MemberUp {
		t.Fatalf("another host took back the status: %v", st)
	}
	// Another host learns the same MAC on another port: it wins while
	// it lasts, then the first host's entry is back.
	other, err := s.GrantLease(ctx, time.Minute)
	must(err)
	must(s.PutLearnedMAC(ctx, nsdb.LearnedMAC{Host: "other-host", BridgeID: br.GetMeta().ID, MAC: packet.MAC{2, 0, 0, 0, 0, 1}, PortID: "q"}, other))
	if b := <-macs; len(b.Put) != 1 || b.Put[0].PortID != "q" {
		t.Fatalf("MACs after another host's entry %+v", b)
	}
	// The port's next gateway learns the same route: its copy wins while
	// it lasts; it takes back its own session state only.
	moved := learned
	moved.HostID, moved.Gateway = "other-host", netip.MustParseAddr("198.51.100.9")
	must(s.UpdateLearnedRoutes(ctx, []nsdb.LearnedRoute{moved}, nil, other))
	if b := <-routes; len(b.Put) != 1 || b.Put[0] != moved {
		t.Fatalf("learned routes after another host's copy %+v", b)
	}
	must(s.TakeBackBGPPeerStatus(ctx, "other-host", peer))
	if st, _ := s.BGPPeerStatuses(ctx); st[peer].State != "established" {
		t.Fatalf("another host took back the session state: %v", st)
	}
	must(s.ResumeLease(ctx, other))
	must(s.RevokeLease(ctx, other))
	if err := s.ResumeLease(ctx, other); !errors.Is(err, nsdb.ErrLeaseGone) {
		t.Fatalf("resume a revoked lease: %v, want ErrLeaseGone", err)
	}
	if b := <-macs; len(b.Put) != 1 || b.Put[0].PortID != "p" || len(b.Deleted) != 0 {
		t.Fatalf("MACs after the other host's lease ended %+v", b)
	}
	if b := <-routes; len(b.Put) != 1 || b.Put[0] != learned || len(b.Deleted) != 0 {
		t.Fatalf("learned routes after the other host's lease ended %+v", b)
	}
	must(s.RevokeLease(ctx, lease))
	if l := <-alive; l.Reset || l.Alive[host.GetMeta().ID] {
		t.Fatalf("liveness after revoke %+v", l)
	}
	if b := <-macs; len(b.Deleted) != 1 || b.Deleted[0].PortID != "p" {
		t.Fatalf("MACs after revoke %+v", b)
	}
	if st, _ := s.MemberStatuses(ctx); len(st) != 0 {
		t.Fatalf("statuses after revoke: %v", st)
	}
	if b := <-routes; len(b.Deleted) != 1 || b.Deleted[0] != learned.ID() {
		t.Fatalf("learned routes after revoke %+v", b)
	}
	if st, _ := s.BGPPeerStatuses(ctx); len(st) != 0 {
		t.Fatalf("session states after revoke: %v", st)
	}
	if err := s.PutMemberStatus(ctx, host.GetMeta().ID, mem.GetMeta().ID, model.MemberUp, lease); err == nil {
		t.Fatal("a write under a revoked lease succeeded")
	}
}
