package neutron

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/sim"
)

type fixture struct {
	t     *testing.T
	ctx   context.Context
	store *nsdb.Store
	s     *Service
	admin *identity.Context
}

func newFixture(t *testing.T) *fixture {
	cli := nsdbtest.Start(t)
	st := nsdb.New(cli)
	if err := st.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: context.Background(), store: st, s: New(st, Options{}),
		admin: &identity.Context{ProjectID: "p-admin", Roles: []string{"admin"}}}
}

// The requests the tests send, as the API layer would decode them.

func ptr[T any](v T) *T { return &v }

func named(name string) StdRequest { return StdRequest{Name: &name} }

func subnetReq(netID, cidr string) SubnetRequest {
	p := netip.MustParsePrefix(cidr)
	v := 4
	if p.Addr().Is6() {
		v = 6
	}
	return SubnetRequest{NetworkID: netID, IPVersion: v, CIDR: p}
}

func fixedIP(ip string) *[]FixedIPRequest {
	return &[]FixedIPRequest{{IPAddress: netip.MustParseAddr(ip)}}
}

// must returns v, panicking (and so failing the test with a stack) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// native counts the native objects of each kind.
func (f *fixture) native() map[string]int {
	out := map[string]int{}
	for _, k := range model.Kinds() {
		if k.Internal {
			continue
		}
		objs, _, err := f.store.List(f.ctx, k, "", "")
		if err != nil {
			f.t.Fatal(err)
		}
		if len(objs) > 0 {
			out[k.Name] = len(objs)
		}
	}
	return out
}

// all lists every native object.
func (f *fixture) all() []model.Object {
	var out []model.Object
	for _, k := range model.Kinds() {
		if k.Internal {
			continue
		}
		objs, _, err := f.store.List(f.ctx, k, "", "")
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, objs...)
	}
	return out
}

func (f *fixture) rev() int64 {
	resp, err := f.store.Client().Get(f.ctx, "/nagare/v1/schema-version")
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestTranslationLifecycle builds a whole topology through the service,
// checks its native form, and checks that deleting it leaves only the
// project's default security group behind.
func TestTranslationLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx, a := f.ctx, f.admin
	host := must(f.store.Create(ctx, &model.Host{Name: "compute-1"})).(*model.Host)

	net := must(f.s.CreateNetwork(ctx, a, NetworkRequest{StdRequest: named("n1")}))
	sub := must(f.s.CreateSubnet(ctx, a, subnetReq(net.ID, "10.0.0.0/24")))
	ext := must(f.s.CreateNetwork(ctx, a, NetworkRequest{StdRequest: named("ext"), External: ptr(true),
		Provider: &Segment{NetworkType: ptr("flat"), PhysicalNetwork: ptr("physnet1")}}))
	extSub := subnetReq(ext.ID, "203.0.113.0/24")
	extSub.EnableDHCP = ptr(false)
	must(f.s.CreateSubnet(ctx, a, extSub))
	baseline := f.native()

	r := must(f.s.CreateRouter(ctx, a, RouterRequest{StdRequest: named("r1"), Gateway: &GatewayRequest{NetworkID: ext.ID}}))
	must(f.s.AddInterface(ctx, a, r.ID, InterfaceRequest{SubnetID: sub.ID}))
	p := must(f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID, BindingHostID: ptr("compute-1")}))
	if p.VIFType != "tap" || p.Status != "ACTIVE" {
		t.Errorf("port bound to a registered host: vif %q status %q", p.VIFType, p.Status)
	}
	fip := must(f.s.CreateFloatingIP(ctx, a, FloatingIPRequest{FloatingNetworkID: ext.ID, PortID: &p.ID}))
	fip2 := must(f.s.CreateFloatingIP(ctx, a, FloatingIPRequest{FloatingNetworkID: ext.ID}))
	p2 := must(f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID}))
	must(f.s.CreatePortForwarding(ctx, a, fip2.ID, PortForwardingRequest{InternalPortID: p2.ID,
		InternalIPAddress: p2.FixedIPs[0].IPAddress, InternalPort: 22, ExternalPort: 2222, Protocol: "tcp"}))

	// The VM port: a bridge port of the same id, bound to tap<id[:11]>.
	np := must(f.store.Get(ctx, model.PortKind, p.ID)).(*model.Port)
	if np.BridgeID != net.ID || np.HostID != host.ID || np.InterfaceName != InterfaceName(p.ID) || !np.Secured() {
		t.Errorf("native port of %s: %+v", p.ID, np)
	}
	// The router: same id, NAT chains holding the FIP's and the port
	// forwarding's rules and the gateway SNAT.
	nr := must(f.store.Get(ctx, model.RouterKind, r.ID)).(*model.Router)
	post := must(f.store.Get(ctx, model.ChainKind, nr.OutboundFilterID)).(*model.Chain)
	pre := must(f.store.Get(ctx, model.ChainKind, nr.InboundFilterID)).(*model.Chain)
	if len(pre.RuleIDs) != 3 || len(post.RuleIDs) != 3 {
		t.Errorf("router chains: pre %d rules, post %d rules; want 3 and 3 (PF, FIP, gateway)", len(pre.RuleIDs), len(post.RuleIDs))
	}
	last := must(f.store.Get(ctx, model.RuleKind, post.RuleIDs[2])).(*model.Rule)
	if last.Type != model.RuleSNAT || len(last.OutPortIDs) != 1 {
		t.Errorf("last post-routing rule should be the gateway SNAT: %+v", last)
	}
	// Interfaces: router ports peer-linked to bridge ports, with routes.
	routes := must3(t)(f.store.List(ctx, model.RouteKind, "router_id", r.ID))
	if len(routes) != 3 { // interface subnet, gateway subnet, default
		t.Errorf("router routes: %d, want 3", len(routes))
	}
	var linked int
	for _, o := range must3(t)(f.store.List(ctx, model.PortKind, "router_id", r.ID)) {
		rp := o.(*model.Port)
		peer := must(f.store.Get(ctx, model.PortKind, rp.PeerID)).(*model.Port)
		if peer.PeerID == rp.ID {
			linked++
		}
	}
	if linked != 2 {
		t.Errorf("router ports linked both ways: %d, want 2", linked)
	}
	// DHCP: a subnet per Neutron subnet, a host per VM port address (not
	// the router's: the agent's DHCP refuses a host on the gateway).
	hosts := must3(t)(f.store.List(ctx, model.DHCPHostKind, "dhcp_subnet_id", sub.ID))
	if len(hosts) != 2 { // two VM ports
		t.Errorf("dhcp hosts on %s: %d, want 2", sub.CIDR, len(hosts))
	}

	// The translated topology is one the simulation accepts.
	if _, err := sim.Build(f.all()); err != nil {
		t.Errorf("the simulation refuses the translated topology: %v", err)
	}

	// Deleting in the order a user would leaves the baseline.
	noErr(t, f.s.DeletePortForwarding(ctx, a, fip2.ID, must(f.s.ListPortForwardings(ctx, a, fip2.ID))[0].ID))
	noErr(t, f.s.DeleteFloatingIP(ctx, a, fip.ID, 0))
	noErr(t, f.s.DeleteFloatingIP(ctx, a, fip2.ID, 0))
	noErr(t, f.s.DeletePort(ctx, a, p.ID, 0))
	noErr(t, f.s.DeletePort(ctx, a, p2.ID, 0))
	must(f.s.RemoveInterface(ctx, a, r.ID, InterfaceRequest{SubnetID: sub.ID}))
	noErr(t, f.s.DeleteRouter(ctx, a, r.ID, 0))
	if got := f.native(); !sameCounts(got, baseline) {
		t.Errorf("after deleting the router and ports: %v, want %v", got, baseline)
	}
	noErr(t, f.s.DeleteSubnet(ctx, a, sub.ID, 0))
	noErr(t, f.s.DeleteNetwork(ctx, a, net.ID, 0))
	noErr(t, f.s.DeleteNetwork(ctx, a, ext.ID, 0))
	got := f.native()
	// Left: the host and the default group (address group, two chains
	// with two rules each).
	want := map[string]int{"host": 1, "ip-address-group": 1, "chain": 2, "rule": 4}
	if !sameCounts(got, want) {
		t.Errorf("after deleting everything: %v, want %v", got, want)
	}
}

func must3(t *testing.T) func([]model.Object, int64, error) []model.Object {
	return func(objs []model.Object, _ int64, err error) []model.Object {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRejectedWritesChangeNothing: a request Neutron refuses leaves the
// NSDB exactly as it was (not a single key written).
func TestRejectedWritesChangeNothing(t *testing.T) {
	f := newFixture(t)
	ctx, a := f.ctx, f.admin
	net := must(f.s.CreateNetwork(ctx, a, NetworkRequest{StdRequest: named("n1")}))
	sub := must(f.s.CreateSubnet(ctx, a, subnetReq(net.ID, "10.0.0.0/24")))
	p := must(f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID, FixedIPs: fixedIP("10.0.0.9")}))
	r := must(f.s.CreateRouter(ctx, a, RouterRequest{StdRequest: named("r")}))
	must(f.s.AddInterface(ctx, a, r.ID, InterfaceRequest{SubnetID: sub.ID}))
	cases := []struct {
		name string
		call func() error
		typ  string
	}{
		{"overlapping subnet", func() error {
			_, err := f.s.CreateSubnet(ctx, a, subnetReq(net.ID, "10.0.0.128/25"))
			return err
		}, "InvalidInput"},
		{"address in use", func() error {
			_, err := f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID, FixedIPs: fixedIP("10.0.0.9")})
			return err
		}, "IpAddressInUse"},
		{"duplicate MAC", func() error {
			_, err := f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID, MACAddress: p.MACAddress})
			return err
		}, "MacAddressInUse"},
		{"network with ports", func() error { return f.s.DeleteNetwork(ctx, a, net.ID, 0) }, "NetworkInUse"},
		{"interface twice", func() error {
			_, err := f.s.AddInterface(ctx, a, r.ID, InterfaceRequest{SubnetID: sub.ID})
			return err
		}, "BadRequest"},
		{"stale revision", func() error {
			_, err := f.s.UpdateNetwork(ctx, a, net.ID, NetworkRequest{StdRequest: named("x")}, 99)
			return err
		}, "RevisionNumberConstraintFailed"},
	}
	for _, tc := range cases {
		before := f.rev()
		err := tc.call()
		var e *Error
		if !errors.As(err, &e) || e.Type != tc.typ {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.typ)
		}
		if after := f.rev(); after != before {
			t.Errorf("%s: the NSDB moved from revision %d to %d", tc.name, before, after)
		}
	}
}

// TestConcurrentAllocations: ports racing for addresses in a small subnet
// get distinct addresses, and the one too many gets Neutron's error.
func TestConcurrentAllocations(t *testing.T) {
	f := newFixture(t)
	ctx, a := f.ctx, f.admin
	net := must(f.s.CreateNetwork(ctx, a, NetworkRequest{StdRequest: named("n1")}))
	// 10.0.0.0/28: 14 usable addresses, one the gateway: 13 for ports.
	must(f.s.CreateSubnet(ctx, a, subnetReq(net.ID, "10.0.0.0/28")))
	type result struct {
		ip  netip.Addr
		err error
	}
	res := make(chan result, 14)
	for range 14 {
		go func() {
			p, err := f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID})
			if err != nil {
				res <- result{err: err}
				return
			}
			res <- result{ip: p.FixedIPs[0].IPAddress}
		}()
	}
	seen := map[netip.Addr]bool{}
	var failed []string
	for range 14 {
		r := <-res
		if r.err != nil {
			failed = append(failed, r.err.Error())
			continue
		}
		if seen[r.ip] {
			t.Errorf("address %s handed out twice", r.ip)
		}
		seen[r.ip] = true
	}
	if len(seen) != 13 || len(failed) != 1 || !strings.Contains(failed[0], "No more IP addresses available") {
		t.Errorf("got %d addresses and failures %q; want 13 and one IpAddressGenerationFailure", len(seen), failed)
	}
}

// TestUplinkBindingSurvivesRewrites: the binding an agent writes on a
// physical-network uplink (pkg/agent/uplink) is not undone by the
// network's updates, nor by a rewrite of the uplink's translation.
func TestUplinkBindingSurvivesRewrites(t *testing.T) {
	f := newFixture(t)
	ctx, a := f.ctx, f.admin
	host := must(f.store.Create(ctx, &model.Host{Name: "gw-1", PhysicalNetworks: []string{"physnet1"}})).(*model.Host)
	ext := must(f.s.CreateNetwork(ctx, a, NetworkRequest{StdRequest: named("ext"),
		Provider: &Segment{NetworkType: ptr("vlan"), PhysicalNetwork: ptr("physnet1"), SegmentationID: ptr(100)}}))
	id := physnetPortID(ext.ID)
	up := must(f.store.Get(ctx, model.PortKind, id)).(*model.Port)
	if up.PhysicalNetwork != "physnet1" || up.PhysicalVLAN != 100 || up.VLAN != 0 || up.HostID != "" {
		t.Fatalf("uplink of a VLAN network: %+v", up)
	}
	must(f.store.Modify(ctx, model.PortKind, id, 0, func(o model.Object) error {
		o.(*model.Port).HostID, o.(*model.Port).InterfaceName = host.ID, "eth1.100"
		return nil
	}))
	bound := func(what string) {
		t.Helper()
		p := must(f.store.Get(ctx, model.PortKind, id)).(*model.Port)
		if p.HostID != host.ID || p.InterfaceName != "eth1.100" || p.PhysicalVLAN != 100 {
			t.Errorf("after %s the uplink lost its binding: %+v", what, p)
		}
	}
	must(f.s.UpdateNetwork(ctx, a, ext.ID, NetworkRequest{StdRequest: named("public"), AdminStateUp: ptr(false)}, 0))
	bound("a network update")
	// A changed translation hash forces the rewrite path.
	n := &Network{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: 100, AdminStateUp: true}
	n.ID = ext.ID
	must(f.store.Update(ctx, func(tx *nsdb.Tx) error {
		_, err := reconcile(tx, map[string]string{"bridge/" + ext.ID: "stale", "port/" + id: "stale"}, TranslateNetwork(n))
		return err
	}))
	bound("a rewrite")
}
