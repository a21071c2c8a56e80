package nsdb

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
)

func TestLearnedRoutes(t *testing.T) {
	f := newFixture(t)
	const router, port = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	gw1, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	gw2, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	def := LearnedRoute{RouterID: router, PortID: port, Dst: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.51.100.1"), HostID: "h1"}
	net := def
	net.Dst = mustPrefix("192.0.2.7/24")
	for _, bad := range []LearnedRoute{
		{PortID: port, Dst: def.Dst, HostID: "h1"},
		{RouterID: router, PortID: "p", Dst: def.Dst, HostID: "h1"},
		{RouterID: router, PortID: port, HostID: "h1"},
		{RouterID: router, PortID: port, Dst: mustPrefix("::/0"), Gateway: mustAddr("198.51.100.1"), HostID: "h1"},
		{RouterID: router, PortID: port, Dst: def.Dst},
		{RouterID: router, PortID: port, Dst: def.Dst, HostID: "h/1"},
	} {
		f.unchangedBy("bad route", func() {
			if err := f.s.UpdateLearnedRoutes(f.ctx, []LearnedRoute{bad}, nil, gw1.ID); err == nil {
				t.Errorf("%+v written", bad)
			}
		})
	}
	if err := f.s.UpdateLearnedRoutes(f.ctx, []LearnedRoute{def, net}, nil, gw1.ID); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, f.s.WatchLearnedRoutes)
	if b := w.next(); !b.Reset || len(b.Put) != 2 {
		t.Fatalf("first batch %+v, want a Reset with two routes", b)
	}
	got, err := f.s.LearnedRoutes(f.ctx, router)
	if err != nil || len(got) != 2 {
		t.Fatalf("LearnedRoutes = %+v, %v", got, err)
	}
	if other, err := f.s.LearnedRoutes(f.ctx, port); err != nil || len(other) != 0 {
		t.Fatalf("another router's routes = %+v, %v", other, err)
	}
	r := net.Route()
	if !r.Learned || r.Dst.String() != "192.0.2.0/24" || r.ID != model.LearnedRouteID(port, r.Dst) || r.Weight != 100 || r.Type != model.RouteNormal {
		t.Errorf("as a route: %+v", r)
	}
	// The port moved to another gateway, which learned the default route
	// too (by another next hop): its copy is the newest, and the first
	// gateway's withdrawal does not take it away.
	moved := def
	moved.HostID, moved.Gateway = "h2", mustAddr("198.51.100.9")
	if moved.ID() != def.ID() || moved.Key() == def.Key() {
		t.Fatalf("ids %s, %s; keys %s, %s", moved.ID(), def.ID(), moved.Key(), def.Key())
	}
	if err := f.s.UpdateLearnedRoutes(f.ctx, []LearnedRoute{moved}, nil, gw2.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); len(b.Put) != 1 || b.Put[0] != moved {
		t.Fatalf("second gateway's route: %+v", b)
	}
	if err := f.s.UpdateLearnedRoutes(f.ctx, nil, []LearnedRoute{def, net}, gw1.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); len(b.Deleted) != 1 || b.Deleted[0] != net.ID() || len(b.Put) != 0 {
		t.Fatalf("first gateway withdraws: %+v, want only %s deleted", b, net.ID())
	}
	if got, _ := f.s.LearnedRoutes(f.ctx, router); len(got) != 1 || got[0] != moved {
		t.Fatalf("after the withdrawal: %+v", got)
	}
	// The second gateway dies: its routes go with its lease.
	if _, err := f.cli.Revoke(f.ctx, gw2.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); len(b.Deleted) != 1 || b.Deleted[0] != def.ID() {
		t.Fatalf("lease revoked: %+v", b)
	}
	// Many at once: more than one transaction's worth.
	var many []LearnedRoute
	for i := range 250 {
		r := def
		r.Dst = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16)
		many = append(many, r)
	}
	if err := f.s.UpdateLearnedRoutes(f.ctx, many, nil, gw1.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := f.s.LearnedRoutes(f.ctx, ""); err != nil || len(got) != 250 {
		t.Fatalf("250 routes written, %d listed, %v", len(got), err)
	}
}

func TestBGPPeerStatus(t *testing.T) {
	f := newFixture(t)
	const peer = "33333333-3333-4333-8333-333333333333"
	lease, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutBGPPeerStatus(f.ctx, "nope", BGPPeerStatus{HostID: "h1"}, lease.ID); err == nil {
		t.Error("status of a peer that is not a UUID written")
	}
	if err := f.s.PutBGPPeerStatus(f.ctx, peer, BGPPeerStatus{State: "idle"}, lease.ID); err == nil {
		t.Error("status without a host written")
	}
	since := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	if err := f.s.PutBGPPeerStatus(f.ctx, peer, BGPPeerStatus{HostID: "h1", State: "established", Since: since, Received: 3, Sent: 1}, lease.ID); err != nil {
		t.Fatal(err)
	}
	all, err := f.s.BGPPeerStatuses(f.ctx)
	if err != nil || len(all) != 1 || all[peer].State != "established" || !all[peer].Since.Equal(since) || all[peer].Received != 3 {
		t.Fatalf("BGPPeerStatuses = %+v, %v", all, err)
	}
	if err := f.s.TakeBackBGPPeerStatus(f.ctx, "h2", peer); err != nil {
		t.Fatal(err)
	}
	if all, _ := f.s.BGPPeerStatuses(f.ctx); len(all) != 1 {
		t.Fatal("another host took the status back")
	}
	if err := f.s.TakeBackBGPPeerStatus(f.ctx, "h1", peer); err != nil {
		t.Fatal(err)
	}
	if all, _ := f.s.BGPPeerStatuses(f.ctx); len(all) != 0 {
		t.Fatalf("taken back, still %+v", all)
	}
}
