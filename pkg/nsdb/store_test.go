package nsdb

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

func TestCRUD(t *testing.T) {
	f := newFixture(t)
	b := f.bridge("b0")
	if !model.IsUUID(b.ID) || b.Revision == 0 || b.State != model.StateUp {
		t.Fatalf("created %+v: want a UUID, a revision and defaults applied", b)
	}
	got := f.get(model.BridgeKind, b.ID).(*model.Bridge)
	if *got != *b {
		t.Fatalf("get = %+v, want %+v", got, b)
	}

	m := f.modify(model.BridgeKind, b.ID, func(o model.Object) { o.(*model.Bridge).Name = "b1" }).(*model.Bridge)
	if m.Name != "b1" || m.Revision <= b.Revision {
		t.Fatalf("modified %+v: want name b1 and a revision above %d", m, b.Revision)
	}
	if got := f.get(model.BridgeKind, b.ID).(*model.Bridge); got.Name != "b1" || got.Revision != m.Revision {
		t.Fatalf("after modify get = %+v, want %+v", got, m)
	}

	// A modification that changes nothing writes nothing.
	f.unchangedBy("a no-op modify", func() {
		same := f.modify(model.BridgeKind, b.ID, func(o model.Object) {}).(*model.Bridge)
		if same.Revision != m.Revision {
			t.Errorf("no-op modify moved the revision from %d to %d", m.Revision, same.Revision)
		}
	})

	b2 := f.bridge("b2")
	list, rev, err := f.s.List(f.ctx, model.BridgeKind, "", "")
	if err != nil || len(list) != 2 || list[0].GetMeta().ID != b.ID || list[1].GetMeta().ID != b2.ID || rev < b2.Revision {
		t.Fatalf("list = %v rev %d err %v: want b then b2 (creation order) at revision >= %d", list, rev, err, b2.Revision)
	}
	list, _, err = f.s.List(f.ctx, model.BridgeKind, "name", "b2")
	if err != nil || len(list) != 1 || list[0].GetMeta().ID != b2.ID {
		t.Fatalf("list name=b2 = %v, %v", list, err)
	}

	if err := f.s.Remove(f.ctx, model.BridgeKind, b.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.gone(model.BridgeKind, b.ID)
	// Derived fields are not stored; the revision is not stored either.
	h := f.create(&model.Host{Name: "h", Alive: true})
	raw, err := f.cli.Get(f.ctx, objKey(model.HostKind, h.GetMeta().ID))
	if err != nil || strings.Contains(string(raw.Kvs[0].Value), `"alive":true`) || strings.Contains(string(raw.Kvs[0].Value), "revision") {
		t.Errorf("stored host %s: derived field or revision stored (err %v)", raw.Kvs[0].Value, err)
	}
}

func TestCreateWithID(t *testing.T) {
	f := newFixture(t)
	id := uuid.NewString()
	b := f.create(&model.Bridge{Meta: model.Meta{ID: id}})
	if b.GetMeta().ID != id {
		t.Fatalf("id %s, want the one given %s", b.GetMeta().ID, id)
	}
	_, err := f.s.Create(f.ctx, &model.Bridge{Meta: model.Meta{ID: id}})
	wantConflict(t, err, "already exists")
	_, err = f.s.Create(f.ctx, &model.Bridge{Meta: model.Meta{ID: "NOT-A-UUID"}})
	wantFieldError(t, err, "id", "not a UUID")
}

func TestMissing(t *testing.T) {
	f := newFixture(t)
	missing := uuid.NewString()
	for name, err := range map[string]error{
		"get":        func() error { _, err := f.s.Get(f.ctx, model.BridgeKind, missing); return err }(),
		"get bad id": func() error { _, err := f.s.Get(f.ctx, model.BridgeKind, "../x"); return err }(),
		"modify": func() error {
			_, err := f.s.Modify(f.ctx, model.BridgeKind, missing, 0, func(model.Object) error { return nil })
			return err
		}(),
		"remove":          f.s.Remove(f.ctx, model.BridgeKind, missing, 0),
		"remove with rev": f.s.Remove(f.ctx, model.BridgeKind, missing, 5),
	} {
		if !errors.Is(err, model.ErrNotFound) || !strings.Contains(err.Error(), "bridge") {
			t.Errorf("%s: got %v, want a not-found error naming the bridge", name, err)
		}
	}
	_, _, err := f.s.List(f.ctx, model.BridgeKind, "colour", "red")
	wantFieldError(t, err, "colour", "unknown field")

	// An object of another kind with the same id is not the object asked for.
	b := f.bridge("b")
	if _, err := f.s.Get(f.ctx, model.RouterKind, b.ID); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("router with a bridge's id: got %v, want not found", err)
	}
}

func TestStaleRevision(t *testing.T) {
	f := newFixture(t)
	b := f.bridge("b")
	f.modify(model.BridgeKind, b.ID, func(o model.Object) { o.(*model.Bridge).Name = "c" })
	f.unchangedBy("a stale modify", func() {
		_, err := f.s.Modify(f.ctx, model.BridgeKind, b.ID, b.Revision, func(o model.Object) error {
			o.(*model.Bridge).Name = "d"
			return nil
		})
		wantConflict(t, err, "stale revision")
	})
	err := f.s.Remove(f.ctx, model.BridgeKind, b.ID, b.Revision)
	wantConflict(t, err, "stale revision")
	cur := f.get(model.BridgeKind, b.ID)
	if err := f.s.Remove(f.ctx, model.BridgeKind, b.ID, cur.GetMeta().Revision); err != nil {
		t.Fatalf("remove at the current revision: %v", err)
	}
}

func TestDanglingReference(t *testing.T) {
	f := newFixture(t)
	r := f.router("r")
	c := f.chain("c")
	p := f.routerPort(r.ID, "10.0.0.1/24")
	missing := uuid.NewString()
	for _, tc := range []struct {
		name  string
		o     model.Object
		field string
	}{
		{"port on a missing bridge", &model.Port{BridgeID: missing}, "bridge_id"},
		{"port with a missing in-filter", &model.Port{RouterID: r.ID, InboundFilterID: missing}, "inbound_filter_id"},
		{"route via a missing port", &model.Route{RouterID: r.ID, Dst: p.Network, PortID: missing}, "port_id"},
		{"rule matching a missing port", &model.Rule{ChainID: c.ID, Type: model.RuleDrop, Condition: model.Condition{InPortIDs: []string{p.ID, missing}}}, "in_port_ids"},
		{"member of a missing zone", &model.TunnelZoneMember{TunnelZoneID: missing, HostID: missing, Address: p.Address}, "tunnel_zone_id"},
		// The id exists, but as a router, not a bridge.
		{"port on a router id given as bridge", &model.Port{BridgeID: r.ID}, "bridge_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			f.unchangedBy(tc.name, func() {
				_, err := f.s.Create(f.ctx, tc.o)
				wantFieldError(t, err, tc.field, "does not exist")
			})
		})
	}
	f.t = t
	f.unchangedBy("linking to a missing peer", func() {
		_, err := f.s.Modify(f.ctx, model.PortKind, p.ID, 0, func(o model.Object) error {
			o.(*model.Port).PeerID = missing
			return nil
		})
		wantFieldError(t, err, "peer_id", "does not exist")
	})
}

func TestRestrict(t *testing.T) {
	f := newFixture(t)
	b := f.bridge("b")
	p1, p2 := f.bridgePort(b.ID), f.bridgePort(b.ID)
	f.unchangedBy("deleting a bridge with ports", func() {
		err := f.s.Remove(f.ctx, model.BridgeKind, b.ID, 0)
		wantConflict(t, err, "bridge "+b.ID+" still has 2 port(s) (e.g. port ")
		if !strings.Contains(err.Error(), "via bridge_id); delete them first") {
			t.Errorf("message %q does not say how", err)
		}
	})
	// A chain used as a filter is protected too, with the other advice.
	c := f.chain("c")
	f.modify(model.PortKind, p1.ID, func(o model.Object) { o.(*model.Port).InboundFilterID = c.ID })
	err := f.s.Remove(f.ctx, model.ChainKind, c.ID, 0)
	wantConflict(t, err, "chain "+c.ID+" still has 1 port(s) (e.g. port "+p1.ID+" via inbound_filter_id); delete them or clear")

	for _, p := range []*model.Port{p1, p2} {
		if err := f.s.Remove(f.ctx, model.PortKind, p.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.s.Remove(f.ctx, model.BridgeKind, b.ID, 0); err != nil {
		t.Fatalf("bridge without ports: %v", err)
	}
}

func TestCascade(t *testing.T) {
	f := newFixture(t)
	c := f.chain("c")
	r1, r2, r3 := f.rule(c.ID, 0), f.rule(c.ID, 0), f.rule(c.ID, 0)
	if err := f.s.Remove(f.ctx, model.ChainKind, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*model.Rule{r1, r2, r3} {
		f.gone(model.RuleKind, r.ID)
	}

	tz := f.create(&model.TunnelZone{Name: "tz"}).(*model.TunnelZone)
	h1, h2 := f.host("h1"), f.host("h2")
	m1 := f.create(&model.TunnelZoneMember{TunnelZoneID: tz.ID, HostID: h1.ID, Address: mustAddr("192.0.2.1")})
	m2 := f.create(&model.TunnelZoneMember{TunnelZoneID: tz.ID, HostID: h2.ID, Address: mustAddr("192.0.2.2")})
	if err := f.s.Remove(f.ctx, model.TunnelZoneKind, tz.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.gone(model.TunnelZoneMemberKind, m1.GetMeta().ID)
	f.gone(model.TunnelZoneMemberKind, m2.GetMeta().ID)
	f.get(model.HostKind, h1.ID) // the hosts stay

	// Two levels: a DHCP subnet goes with its bridge, its hosts with it.
	b := f.bridge("b")
	sub := f.create(&model.DHCPSubnet{BridgeID: b.ID, Subnet: mustPrefix("10.1.0.0/24")})
	dh := f.create(&model.DHCPHost{DHCPSubnetID: sub.GetMeta().ID, MAC: packet.MAC{2, 0, 0, 0, 0, 1}, Address: mustAddr("10.1.0.5")})
	if err := f.s.Remove(f.ctx, model.BridgeKind, b.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.gone(model.DHCPSubnetKind, sub.GetMeta().ID)
	f.gone(model.DHCPHostKind, dh.GetMeta().ID)

	// Nothing is left behind in the indexes: only the hosts remain.
	if n := f.keysUnder(refPrefix); n != 0 {
		t.Errorf("%d reverse-index keys left after the deletes", n)
	}
	if n := f.keysUnder(uniqPrefix); n != 2 {
		t.Errorf("%d unique keys left, want 2 (the host names)", n)
	}
}

func TestNullify(t *testing.T) {
	f := newFixture(t)
	r, b := f.router("r"), f.bridge("b")
	rp := f.routerPort(r.ID, "10.0.0.1/24")
	bp := f.bridgePort(b.ID)
	f.modify(model.PortKind, rp.ID, func(o model.Object) { o.(*model.Port).PeerID = bp.ID })
	if got := f.get(model.PortKind, bp.ID).(*model.Port).PeerID; got != rp.ID {
		t.Fatalf("peer of the bridge port is %q, want %s", got, rp.ID)
	}
	if err := f.s.Remove(f.ctx, model.PortKind, rp.ID, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.get(model.PortKind, bp.ID).(*model.Port).PeerID; got != "" {
		t.Errorf("deleting a port left its peer linked to %q", got)
	}

	c := f.chain("c")
	p1, p2 := f.bridgePort(b.ID), f.bridgePort(b.ID)
	rule := f.create(&model.Rule{ChainID: c.ID, Type: model.RuleDrop, Condition: model.Condition{InPortIDs: []string{p1.ID, p2.ID}}})
	if err := f.s.Remove(f.ctx, model.PortKind, p1.ID, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.get(model.RuleKind, rule.GetMeta().ID).(*model.Rule).InPortIDs; !slices.Equal(got, []string{p2.ID}) {
		t.Errorf("rule in_port_ids = %v, want only %s", got, p2.ID)
	}
	// Deleting a rule takes it out of its chain.
	if err := f.s.Remove(f.ctx, model.RuleKind, rule.GetMeta().ID, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.get(model.ChainKind, c.ID).(*model.Chain).RuleIDs; len(got) != 0 {
		t.Errorf("chain still lists %v", got)
	}

	// Deleting a host unbinds its ports: host and interface both go, so two
	// ports unbound from different hosts cannot collide on "tap0".
	h1, h2 := f.host("h1"), f.host("h2")
	bind := func(p *model.Port, h *model.Host) {
		f.modify(model.PortKind, p.ID, func(o model.Object) {
			o.(*model.Port).HostID, o.(*model.Port).InterfaceName = h.ID, "tap0"
		})
	}
	bind(p2, h1)
	p3 := f.bridgePort(b.ID)
	bind(p3, h2)
	for _, h := range []*model.Host{h1, h2} {
		if err := f.s.Remove(f.ctx, model.HostKind, h.ID, 0); err != nil {
			t.Fatalf("delete host: %v", err)
		}
	}
	for _, p := range []*model.Port{p2, p3} {
		if got := f.get(model.PortKind, p.ID).(*model.Port); got.HostID != "" || got.InterfaceName != "" {
			t.Errorf("port still bound to %q/%q after its host was deleted", got.HostID, got.InterfaceName)
		}
	}
}

func TestUnique(t *testing.T) {
	f := newFixture(t)
	tz := f.create(&model.TunnelZone{Name: "tz"})
	f.unchangedBy("a duplicate name", func() {
		_, err := f.s.Create(f.ctx, &model.TunnelZone{Name: "tz"})
		wantFieldError(t, err, "name", `"tz" is already used by tunnel-zone `+tz.GetMeta().ID)
	})
	// Renaming frees the old name.
	f.modify(model.TunnelZoneKind, tz.GetMeta().ID, func(o model.Object) { o.(*model.TunnelZone).Name = "tz2" })
	f.create(&model.TunnelZone{Name: "tz"})

	b := f.bridge("b")
	h1, h2 := f.host("h1"), f.host("h2")
	p1, p2, p3 := f.bridgePort(b.ID), f.bridgePort(b.ID), f.bridgePort(b.ID)
	bind := func(p *model.Port, h *model.Host) error {
		_, err := f.s.Modify(f.ctx, model.PortKind, p.ID, 0, func(o model.Object) error {
			o.(*model.Port).HostID, o.(*model.Port).InterfaceName = h.ID, "eth1"
			return nil
		})
		return err
	}
	if err := bind(p1, h1); err != nil {
		t.Fatal(err)
	}
	wantFieldError(t, bind(p2, h1), "interface_name", `"eth1" is already used by port `+p1.ID)
	if err := bind(p3, h2); err != nil {
		t.Fatalf("the same interface name on another host: %v", err)
	}
	// Unbinding frees the name on that host.
	f.modify(model.PortKind, p1.ID, func(o model.Object) { o.(*model.Port).HostID, o.(*model.Port).InterfaceName = "", "" })
	if err := bind(p2, h1); err != nil {
		t.Fatalf("after unbinding: %v", err)
	}
	// Every port got a distinct tunnel key.
	ports, _, err := f.s.List(f.ctx, model.PortKind, "", "")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[uint32]bool{}
	for _, o := range ports {
		keys[o.(*model.Port).TunnelKey] = true
	}
	if len(keys) != 3 || keys[0] {
		t.Errorf("tunnel keys %v: want 3 distinct non-zero keys", keys)
	}
}

func TestPeerLinks(t *testing.T) {
	f := newFixture(t)
	r1, r2, b := f.router("r1"), f.router("r2"), f.bridge("b")
	a := f.routerPort(r1.ID, "10.0.0.1/24")
	bp := f.bridgePort(b.ID)
	c := f.routerPort(r2.ID, "10.0.1.1/24")
	link := func(from, to string) error {
		_, err := f.s.Modify(f.ctx, model.PortKind, from, 0, func(o model.Object) error {
			o.(*model.Port).PeerID = to
			return nil
		})
		return err
	}
	peer := func(id string) string { return f.get(model.PortKind, id).(*model.Port).PeerID }

	if err := link(a.ID, bp.ID); err != nil {
		t.Fatal(err)
	}
	if peer(a.ID) != bp.ID || peer(bp.ID) != a.ID {
		t.Fatalf("A↔B not symmetric: A→%q B→%q", peer(a.ID), peer(bp.ID))
	}
	if err := link(a.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	if peer(a.ID) != c.ID || peer(c.ID) != a.ID || peer(bp.ID) != "" {
		t.Fatalf("relink A→C: A→%q C→%q B→%q, want A↔C and B unlinked", peer(a.ID), peer(c.ID), peer(bp.ID))
	}
	// B cannot take C while C is linked to A.
	wantConflict(t, link(bp.ID, c.ID), "already linked")
	if peer(bp.ID) != "" {
		t.Errorf("refused link left B linked to %q", peer(bp.ID))
	}
}

func TestRoutePortBelongsToRouter(t *testing.T) {
	f := newFixture(t)
	r1, r2 := f.router("r1"), f.router("r2")
	p2 := f.routerPort(r2.ID, "10.0.0.1/24")
	_, err := f.s.Create(f.ctx, &model.Route{RouterID: r1.ID, Dst: mustPrefix("0.0.0.0/0"), PortID: p2.ID})
	wantFieldError(t, err, "port_id", "is not a port of router "+r1.ID)
	rt := f.create(&model.Route{RouterID: r2.ID, Dst: mustPrefix("0.0.0.0/0"), PortID: p2.ID})
	// The route goes with its port.
	if err := f.s.Remove(f.ctx, model.PortKind, p2.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.gone(model.RouteKind, rt.GetMeta().ID)
}

func TestRulePositions(t *testing.T) {
	f := newFixture(t)
	c := f.chain("c")
	r1 := f.rule(c.ID, 0)
	r2 := f.rule(c.ID, 0)
	r3 := f.rule(c.ID, 1)
	r4 := f.rule(c.ID, 99) // past the end appends
	order := func() []string { return f.get(model.ChainKind, c.ID).(*model.Chain).RuleIDs }
	if got, want := order(), []string{r3.ID, r1.ID, r2.ID, r4.ID}; !slices.Equal(got, want) {
		t.Fatalf("rule_ids = %v, want %v", got, want)
	}
	f.modify(model.RuleKind, r4.ID, func(o model.Object) { o.(*model.Rule).Position = 2 })
	if got, want := order(), []string{r3.ID, r4.ID, r1.ID, r2.ID}; !slices.Equal(got, want) {
		t.Fatalf("after moving r4 to 2: rule_ids = %v, want %v", got, want)
	}
	if err := f.s.Remove(f.ctx, model.RuleKind, r3.ID, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := order(), []string{r4.ID, r1.ID, r2.ID}; !slices.Equal(got, want) {
		t.Fatalf("after deleting r3: rule_ids = %v, want %v", got, want)
	}
	// Listing the rules of a chain goes through the reverse index.
	rules, _, err := f.s.List(f.ctx, model.RuleKind, "chain_id", c.ID)
	if err != nil || len(rules) != 3 || rules[0].GetMeta().ID != r1.ID {
		t.Fatalf("list rules of the chain: %v %v, want 3 in creation order", rules, err)
	}
}

func TestSchemaVersion(t *testing.T) {
	f := newFixture(t)
	if err := f.s.Init(f.ctx); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if _, err := f.cli.Put(f.ctx, schemaKey, "2"); err != nil {
		t.Fatal(err)
	}
	err := f.s.Init(f.ctx)
	if err == nil || !strings.Contains(err.Error(), `version "2"`) || !strings.Contains(err.Error(), "supports version 1") {
		t.Fatalf("Init over version 2: %v", err)
	}
	if err := f.s.Ping(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBGPPeerPort(t *testing.T) {
	f := newFixture(t)
	r := f.router("edge")
	up1 := f.routerPort(r.ID, "198.51.100.2/30")
	up2 := f.routerPort(r.ID, "198.51.100.6/30")
	addr := netip.MustParseAddr("198.51.100.1")
	_, err := f.s.Create(f.ctx, &model.BGPPeer{RouterID: r.ID, ASN: 65001, Address: addr})
	wantFieldError(t, err, "router_id", "has no asn")
	if _, err := f.s.Modify(f.ctx, model.RouterKind, r.ID, 0, func(o model.Object) error {
		o.(*model.Router).ASN = 64512
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The port whose network holds the address is found.
	p := f.create(&model.BGPPeer{RouterID: r.ID, ASN: 65001, Address: addr}).(*model.BGPPeer)
	if p.PortID != up1.ID {
		t.Errorf("peer on port %s, want %s", p.PortID, up1.ID)
	}
	_, err = f.s.Create(f.ctx, &model.BGPPeer{RouterID: r.ID, ASN: 65001, Address: addr})
	wantFieldError(t, err, "address", "")
	_, err = f.s.Create(f.ctx, &model.BGPPeer{RouterID: r.ID, ASN: 65002, Address: netip.MustParseAddr("192.0.2.1")})
	wantFieldError(t, err, "port_id", "no port of router")
	_, err = f.s.Create(f.ctx, &model.BGPPeer{RouterID: r.ID, PortID: up2.ID, ASN: 65002, Address: netip.MustParseAddr("198.51.100.9")})
	wantFieldError(t, err, "address", "one hop away")
	_, err = f.s.Create(f.ctx, &model.BGPPeer{RouterID: r.ID, PortID: up2.ID, ASN: 65002, Address: netip.MustParseAddr("198.51.100.6")})
	wantFieldError(t, err, "address", "own address")
	other := f.create(&model.Router{Name: "other", ASN: 1}).(*model.Router)
	_, err = f.s.Create(f.ctx, &model.BGPPeer{RouterID: other.ID, PortID: up2.ID, ASN: 65002, Address: netip.MustParseAddr("198.51.100.5")})
	wantFieldError(t, err, "port_id", "is not a port of router")
	n := f.create(&model.BGPNetwork{RouterID: r.ID, Network: mustPrefix("203.0.113.0/24")})
	// Peers go with their port, networks with their router.
	if err := f.s.Remove(f.ctx, model.PortKind, up1.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.gone(model.BGPPeerKind, p.ID)
	if err := f.s.Remove(f.ctx, model.RouterKind, r.ID, 0); err == nil {
		t.Fatal("router with a port removed")
	}
	if err := f.s.Remove(f.ctx, model.PortKind, up2.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Remove(f.ctx, model.RouterKind, r.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.gone(model.BGPNetworkKind, n.GetMeta().ID)
}
