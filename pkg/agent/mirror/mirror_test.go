package mirror

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// store is what these tests need of an NSDB, real or in memory.
type store interface {
	NSDB
	Create(context.Context, model.Object) (model.Object, error)
	Modify(context.Context, *model.Kind, string, int64, func(model.Object) error) (model.Object, error)
	PutMemberStatus(context.Context, string, string, string, nsdb.LeaseID) error
	TakeBackMemberStatus(context.Context, string, string) error
}

// running is a mirror following a store, with a memory datapath whose one
// port lets flows be installed.
type running struct {
	m         *Mirror
	dp        *memory.Datapath
	errc      chan error
	mu        sync.Mutex
	published []uint64 // snapshot versions, in the order published
}

func start(t *testing.T, db store) *running {
	t.Helper()
	return startAs(t, db, "")
}

// startAs is start for the agent of host hostID.
func startAs(t *testing.T, db store, hostID string) *running {
	t.Helper()
	h := memory.NewHost(nil)
	if _, err := h.AddInterface("d0"); err != nil {
		t.Fatal(err)
	}
	r := &running{dp: memory.New(datapath.Config{}, h), errc: make(chan error, 1)}
	if err := r.dp.AddPort(datapath.PortConfig{PortID: "p0", Index: 0, Interface: "d0", TunnelKey: 1}); err != nil {
		t.Fatal(err)
	}
	r.m = New(Config{HostID: hostID, Flows: r.dp, Publish: func(s *Snapshot) {
		r.mu.Lock()
		r.published = append(r.published, s.Version)
		r.mu.Unlock()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { r.errc <- r.m.Run(ctx, db) }()
	return r
}

func (r *running) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-r.errc:
			t.Fatalf("mirror ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// member returns a member's status as mirrored, or "absent".
func (r *running) member(id string) (*model.PoolMember, bool) {
	o, ok := r.m.Current().Get(model.PoolMemberKind, id)
	if !ok {
		return nil, false
	}
	return o.(*model.PoolMember), true
}

// install puts a drop flow tagged with tags in the datapath.
func (r *running) install(t *testing.T, sport uint16, tags ...uint64) {
	t.Helper()
	var p packet.Parsed // a key told apart by its source MAC
	p.L3Off, p.EthSrc = 14, packet.MAC{2, 0, 0, 0, byte(sport >> 8), byte(sport)}
	if err := r.dp.Install(&datapath.FlowSpec{Key: flow.KeyOf(&p, 0), Tags: tags}); err != nil {
		t.Fatal(err)
	}
}

// TestMemberStatusMirror runs the mirror's two watches against a real
// etcd: a health monitor's status reaches the mirror's member, and the
// flows that read the member are invalidated.
func TestMemberStatusMirror(t *testing.T) {
	s := nsdb.New(nsdbtest.Start(t))
	ctx := context.Background()
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	memberStatus(t, s)
}

// The same against the in-memory NSDB.
func TestMemberStatusMirrorInMemory(t *testing.T) { memberStatus(t, nsdbmem.New()) }

func memberStatus(t *testing.T, db store) {
	ctx := context.Background()
	create := func(o model.Object) model.Object {
		t.Helper()
		c, err := db.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hm := create(&model.HealthMonitor{Name: "hm"}).(*model.HealthMonitor)
	lb := create(&model.LoadBalancer{Name: "lb"}).(*model.LoadBalancer)
	pool := create(&model.Pool{LoadBalancerID: lb.ID, HealthMonitorID: hm.ID}).(*model.Pool)
	m := create(&model.PoolMember{PoolID: pool.ID, Address: netip.MustParseAddr("10.0.0.7"), ProtocolPort: 80}).(*model.PoolMember)
	// A status written before the mirror starts arrives with the reset.
	if err := db.PutMemberStatus(ctx, "h1", m.ID, model.MemberUp, 0); err != nil {
		t.Fatal(err)
	}
	r := start(t, db)
	status := func() string {
		if pm, ok := r.member(m.ID); ok {
			return pm.Status
		}
		return "absent"
	}
	r.waitFor(t, "status up mirrored", func() bool { return status() == model.MemberUp })

	r.install(t, 1, sim.ObjectTag(model.PoolMemberKind, m.ID))
	r.install(t, 2, 12345) // a flow that read something else
	if n := r.dp.Stats().Flows; n != 2 {
		t.Fatalf("%d flows installed, want 2", n)
	}
	if err := db.PutMemberStatus(ctx, "h1", m.ID, model.MemberDown, 0); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "status down mirrored", func() bool { return status() == model.MemberDown })
	r.waitFor(t, "the member's flow invalidated, the other kept", func() bool { return r.dp.Stats().Flows == 1 })

	// The member's own change keeps the status.
	if _, err := db.Modify(ctx, model.PoolMemberKind, m.ID, 0, func(o model.Object) error {
		o.(*model.PoolMember).Weight = 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "weight mirrored with the status kept", func() bool {
		pm, ok := r.member(m.ID)
		return ok && pm.Weight == 5 && pm.Status == model.MemberDown
	})
	// The status going away (its monitor's lease ended) clears it.
	if err := db.TakeBackMemberStatus(ctx, "h1", m.ID); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "status cleared", func() bool { return status() == "" })
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.published); i++ {
		if r.published[i] != r.published[i-1]+1 {
			t.Fatalf("snapshots published out of order: %v", r.published)
		}
	}
}

// Routes the gateways' BGP peers announced join the topology as learned
// routes once their port exists; a new one invalidates the flows that
// chose a route it may beat, a withdrawn one the flows that chose it.
func TestLearnedRoutesMirror(t *testing.T) {
	ctx := context.Background()
	db := nsdbmem.New()
	lease, err := db.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, db)
	rtr, err := db.Create(ctx, &model.Router{Name: "edge", ASN: 64512})
	if err != nil {
		t.Fatal(err)
	}
	routerID := rtr.GetMeta().ID
	def := netip.MustParsePrefix("0.0.0.0/0")
	const portID = "00000000-0000-4000-8000-0000000000b1"
	lr := nsdb.LearnedRoute{RouterID: routerID, PortID: portID, Dst: def, Gateway: netip.MustParseAddr("198.51.100.1"), HostID: "gw1"}
	// Learned before its port is mirrored: it waits for it.
	if err := db.UpdateLearnedRoutes(ctx, []nsdb.LearnedRoute{lr}, nil, lease); err != nil {
		t.Fatal(err)
	}
	learned := func() *model.Route {
		for _, o := range r.m.Current().Objects() {
			if rt, ok := o.(*model.Route); ok && rt.Learned {
				return rt
			}
		}
		return nil
	}
	time.Sleep(100 * time.Millisecond)
	if learned() != nil {
		t.Fatal("a learned route whose port does not exist is in the topology")
	}
	gw, err := db.Create(ctx, &model.Host{Name: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Create(ctx, &model.Port{Meta: model.Meta{ID: portID}, RouterID: routerID, Address: netip.MustParseAddr("198.51.100.2"),
		Network: netip.MustParsePrefix("198.51.100.0/30"), HostID: gw.GetMeta().ID, InterfaceName: "eth1"}); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "learned route mirrored", func() bool {
		rt := learned()
		return rt != nil && rt.ID == model.LearnedRouteID(portID, def) && rt.Gateway == lr.Gateway && rt.PortID == portID
	})
	// A flow that chose the learned route; another that read no route.
	r.install(t, 1, sim.ObjectTag(model.RouteKind, model.LearnedRouteID(portID, def)))
	r.install(t, 2, 12345)
	if err := db.UpdateLearnedRoutes(ctx, nil, []nsdb.LearnedRoute{lr}, lease); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "withdrawn route gone", func() bool { return learned() == nil })
	r.waitFor(t, "its flow invalidated, the other kept", func() bool { return r.dp.Stats().Flows == 1 })
	// The gateway dies: its lease takes what it learned.
	if err := db.UpdateLearnedRoutes(ctx, []nsdb.LearnedRoute{lr}, nil, lease); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "learned again", func() bool { return learned() != nil })
	if err := db.RevokeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "gone with the gateway's lease", func() bool { return learned() == nil })
}

// Liveness folds into Host.Alive; a dead host (never this one) is
// unreachable — out of the simulator's tunnel zones and Unreachable — and
// the flows through it, or dropped for want of it, are invalidated when it
// dies and when it comes back.
func TestLivenessMakesHostsUnreachable(t *testing.T) {
	db := nsdbmem.New()
	ctx := context.Background()
	mk := func(o model.Object) string {
		t.Helper()
		c, err := db.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return c.GetMeta().ID
	}
	self, other := mk(&model.Host{Name: "hv1"}), mk(&model.Host{Name: "hv2"})
	zone := mk(&model.TunnelZone{Name: "tz", Type: model.TunnelVXLAN})
	mk(&model.TunnelZoneMember{TunnelZoneID: zone, HostID: self, Address: netip.MustParseAddr("10.99.0.1")})
	otherMember := mk(&model.TunnelZoneMember{TunnelZoneID: zone, HostID: other, Address: netip.MustParseAddr("10.99.0.2")})
	r := startAs(t, db, self)
	r.waitFor(t, "topology mirrored", func() bool { return len(r.m.Current().Objects()) == 5 })
	if u := r.m.Current().Unreachable; len(u) != 0 {
		t.Fatalf("unreachable %v before liveness is known", u)
	}
	alive := func(id string) bool {
		o, ok := r.m.Current().Get(model.HostKind, id)
		if !ok {
			t.Fatalf("host %s not mirrored", id)
		}
		return o.(*model.Host).Alive
	}
	through, dropped := sim.ObjectTag(model.TunnelZoneMemberKind, otherMember), sim.ObjectTag(model.HostKind, other)
	r.install(t, 1, through)
	r.install(t, 2, 12345)
	if err := r.m.ApplyLiveness(nsdb.Liveness{Reset: true, Alive: map[string]bool{self: true}}); err != nil {
		t.Fatal(err)
	}
	if s := r.m.Current(); !s.Unreachable[other] || s.Unreachable[self] || alive(other) || !alive(self) {
		t.Fatalf("hv2 dead: unreachable %v, alive hv1 %v hv2 %v", s.Unreachable, alive(self), alive(other))
	}
	if n := r.dp.Stats().Flows; n != 1 {
		t.Fatalf("%d flows after hv2 died, want the unrelated one only", n)
	}
	r.install(t, 3, dropped) // a drop for want of a tunnel to hv2
	if err := r.m.ApplyLiveness(nsdb.Liveness{Alive: map[string]bool{other: true}}); err != nil {
		t.Fatal(err)
	}
	if s := r.m.Current(); len(s.Unreachable) != 0 || !alive(other) {
		t.Fatalf("hv2 back: unreachable %v", s.Unreachable)
	}
	if n := r.dp.Stats().Flows; n != 1 {
		t.Fatalf("%d flows after hv2 came back, want the unrelated one only", n)
	}
	if err := r.m.ApplyLiveness(nsdb.Liveness{Alive: map[string]bool{self: false}}); err != nil {
		t.Fatal(err)
	}
	if u := r.m.Current().Unreachable; u[self] {
		t.Fatal("this host is unreachable to itself")
	}
}
