package hostclaim

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

type fixture struct {
	t     *testing.T
	ctx   context.Context
	store *nsdb.Store
	svc   *Service
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := nsdb.New(nsdbtest.Start(t))
	ctx := context.Background()
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, store: st, svc: New(st)}
}

func (f *fixture) create(o model.Object) model.Object {
	f.t.Helper()
	c, err := f.store.Create(f.ctx, o)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) port(id string) *model.Port {
	f.t.Helper()
	o, err := f.store.Get(f.ctx, model.PortKind, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*model.Port)
}

// host creates a host mapping physnets, alive when alive is set; it
// returns its id and a function that kills it.
func (f *fixture) host(name string, alive bool, physnets ...string) (string, func()) {
	f.t.Helper()
	id := f.create(&model.Host{Name: name, PhysicalNetworks: physnets}).GetMeta().ID
	if !alive {
		return id, func() {}
	}
	lease, err := f.store.GrantLease(f.ctx, time.Minute)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.SetHostAlive(f.ctx, id, lease); err != nil {
		f.t.Fatal(err)
	}
	return id, func() {
		if err := f.store.RevokeLease(f.ctx, lease); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) rev() int64 {
	f.t.Helper()
	r, err := f.store.Client().Get(f.ctx, "/nagare/v1/schema-version")
	if err != nil {
		f.t.Fatal(err)
	}
	return r.Header.Revision
}

// want checks err's class (Internal: no error) and, for a refusal, that
// nothing was written.
func (f *fixture) want(what string, class Class, do func() error) {
	f.t.Helper()
	before := f.rev()
	err := do()
	switch {
	case class == Internal && err != nil:
		f.t.Errorf("%s: %v", what, err)
	case class != Internal && !IsClass(err, class):
		f.t.Errorf("%s: %v, want class %d", what, err, class)
	case class != Internal && f.rev() != before:
		f.t.Errorf("%s: refused, but etcd's revision moved %d → %d", what, before, f.rev())
	}
}

func TestSetHost(t *testing.T) {
	f := newFixture(t)
	h, _ := f.host("h1", true)
	addr := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	f.want("set addresses", Internal, func() error { return f.svc.SetHost(f.ctx, h, HostInfo{Addresses: addr}) })
	f.want("set physical networks", Internal, func() error {
		return f.svc.SetHost(f.ctx, h, HostInfo{PhysicalNetworks: []string{"physnet1"}})
	})
	o, err := f.store.Get(f.ctx, model.HostKind, h)
	if err != nil || len(o.(*model.Host).Addresses) != 1 || len(o.(*model.Host).PhysicalNetworks) != 1 {
		t.Fatalf("host after SetHost: %+v %v", o, err)
	}
	before := f.rev()
	if err := f.svc.SetHost(f.ctx, h, HostInfo{Addresses: addr}); err != nil || f.rev() != before {
		t.Errorf("unchanged addresses: %v, revision %d → %d", err, before, f.rev())
	}
	f.want("bad physical network", BadRequest, func() error {
		return f.svc.SetHost(f.ctx, h, HostInfo{PhysicalNetworks: []string{"a:b"}})
	})
	f.want("unknown host", NotFound, func() error {
		return f.svc.SetHost(f.ctx, "00000000-0000-4000-8000-000000000009", HostInfo{Addresses: addr})
	})
	f.want("clear physical networks", Internal, func() error {
		return f.svc.SetHost(f.ctx, h, HostInfo{PhysicalNetworks: []string{}})
	})
}

func TestClaimUplink(t *testing.T) {
	f := newFixture(t)
	br := f.create(&model.Bridge{Name: "ext"}).GetMeta().ID
	up := f.create(&model.Port{BridgeID: br, PhysicalNetwork: "physnet1"}).GetMeta().ID
	plain := f.create(&model.Port{BridgeID: br}).GetMeta().ID
	a, killA := f.host("gw-a", true, "physnet1")
	b, _ := f.host("gw-b", true, "physnet1")
	other, _ := f.host("hv", true, "physnet2")
	dead, _ := f.host("gw-dead", false, "physnet1")
	claim := func(host, prev string) func() error {
		return func() error {
			return f.svc.ClaimUplink(f.ctx, host, Uplink{PortID: up, PreviousHostID: prev, PhysicalNetwork: "physnet1", Interface: "eth1"})
		}
	}
	f.want("a host that does not map the network", Forbidden, claim(other, ""))
	f.want("a dead host", Forbidden, claim(dead, ""))
	f.want("not an uplink", Forbidden, func() error {
		return f.svc.ClaimUplink(f.ctx, a, Uplink{PortID: plain, PhysicalNetwork: "physnet1", Interface: "eth1"})
	})
	f.want("a bad interface", BadRequest, func() error {
		return f.svc.ClaimUplink(f.ctx, a, Uplink{PortID: up, PhysicalNetwork: "physnet1", Interface: "eth1/x"})
	})
	f.want("a stale view of the network", Conflict, func() error {
		return f.svc.ClaimUplink(f.ctx, a, Uplink{PortID: up, PhysicalNetwork: "physnet9", Interface: "eth1"})
	})
	f.want("a claims the unbound uplink", Internal, claim(a, ""))
	if p := f.port(up); p.HostID != a || p.InterfaceName != "eth1" {
		t.Fatalf("uplink bound to %q %q, want a's eth1", p.HostID, p.InterfaceName)
	}
	f.want("b, on a stale view", Conflict, claim(b, ""))
	f.want("b takes it from alive a", Forbidden, claim(b, a))
	killA()
	f.want("b takes it from dead a", Internal, claim(b, a))
	if p := f.port(up); p.HostID != b {
		t.Fatalf("uplink bound to %q after a died, want b", p.HostID)
	}
	f.want("b claims it again", Internal, claim(b, b))
	// A holder that stops mapping the network loses it.
	c, _ := f.host("gw-c", true, "physnet1")
	if err := f.svc.SetHost(f.ctx, b, HostInfo{PhysicalNetworks: []string{}}); err != nil {
		t.Fatal(err)
	}
	f.want("c takes it from b, which unmapped it", Internal, claim(c, b))
}

func TestHealthPort(t *testing.T) {
	f := newFixture(t)
	lb := f.create(&model.LoadBalancer{Name: "lb"}).GetMeta().ID
	r := f.create(&model.Router{Name: "r", LoadBalancerID: lb}).GetMeta().ID
	bare := f.create(&model.Router{Name: "bare"}).GetMeta().ID
	h1, kill1 := f.host("h1", true)
	h2, kill2 := f.host("h2", true)
	winner, loser := h1, h2
	killWinner := kill1
	if Rendezvous(r, sortedPair(h1, h2)) == h2 {
		winner, loser, killWinner = h2, h1, kill2
	}
	ensure := func(host, router string) func() error {
		return func() error { _, err := f.svc.EnsureHealthPort(f.ctx, host, router); return err }
	}
	f.want("a router without a load balancer", Forbidden, ensure(winner, bare))
	f.want("the host that does not check the router", Forbidden, ensure(loser, r))
	f.want("an unknown router", NotFound, ensure(winner, "00000000-0000-4000-8000-000000000009"))
	port, err := f.svc.EnsureHealthPort(f.ctx, winner, r)
	if err != nil {
		t.Fatal(err)
	}
	p := f.port(port)
	if !IsHealthPort(p) || p.HostID != winner || p.InterfaceName != HealthIfName(r) {
		t.Fatalf("health-check port %+v", p)
	}
	routes, _, err := f.store.List(f.ctx, model.RouteKind, "port_id", port)
	if err != nil || len(routes) != 1 || routes[0].(*model.Route).Dst != HealthCheckNet {
		t.Fatalf("route of the health-check port: %v %v", routes, err)
	}
	before := f.rev()
	if again, err := f.svc.EnsureHealthPort(f.ctx, winner, r); err != nil || again != port || f.rev() != before {
		t.Errorf("ensure again: %s %v, revision %d → %d; want the same port and no write", again, err, before, f.rev())
	}
	f.want("the loser takes the port from the alive checker", Forbidden, ensure(loser, r))
	f.want("the loser removes the port", Forbidden, func() error { return f.svc.RemoveHealthPort(f.ctx, loser, port) })
	killWinner()
	f.want("the checker died: the other host takes the port", Internal, ensure(loser, r))
	if p := f.port(port); p.HostID != loser {
		t.Fatalf("port bound to %q after the checker died", p.HostID)
	}
	other := f.create(&model.Port{RouterID: r, Address: netip.MustParseAddr("10.0.0.1"), Network: netip.MustParsePrefix("10.0.0.0/24")})
	f.want("a port that is not a health-check port", Forbidden, func() error {
		return f.svc.RemoveHealthPort(f.ctx, loser, other.GetMeta().ID)
	})
	f.want("the checker removes it", Internal, func() error { return f.svc.RemoveHealthPort(f.ctx, loser, port) })
}

func sortedPair(a, b string) []string {
	if a < b {
		return []string{a, b}
	}
	return []string{b, a}
}
