package uplink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

func TestParsePhysicalInterfaceMappings(t *testing.T) {
	cases := []struct {
		in   string
		want map[string]string
		err  bool
	}{
		{"", map[string]string{}, false},
		{"physnet1:eth1", map[string]string{"physnet1": "eth1"}, false},
		{" physnet1:eth1 , physnet2:bond0.7 ", map[string]string{"physnet1": "eth1", "physnet2": "bond0.7"}, false},
		{"physnet1", nil, true},
		{"physnet1:", nil, true},
		{":eth1", nil, true},
		{"physnet1:eth1,physnet1:eth2", nil, true},
		{"physnet1:eth1,physnet2:eth1", nil, true},
		{"physnet1:averyveryverylongname", nil, true},
		{"phys net:eth1", nil, true},
	}
	for _, c := range cases {
		got, err := ParseMappings(c.in)
		if (err != nil) != c.err || (!c.err && !maps.Equal(got, c.want)) {
			t.Errorf("%q: got %v, %v; want %v (error %v)", c.in, got, err, c.want, c.err)
		}
	}
}

func TestVLANInterfaceName(t *testing.T) {
	for _, c := range [][3]string{{"eth1", "100", "eth1.100"}, {"enp175s0f1np1", "4094", "enp175s0f1.4094"}, {"eth1", "7", "eth1.7"}} {
		var vid uint16
		fmt.Sscan(c[1], &vid)
		if got := vlanInterfaceName(c[0], vid); got != c[2] || len(got) > 15 {
			t.Errorf("vlanInterfaceName(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}

func TestClaimUplinks(t *testing.T) {
	const a, b, c = "host-a", "host-b", "host-c"
	port := func(id, phys string, vlan uint16, host string) *model.Port {
		p := &model.Port{Meta: model.Meta{ID: id}, BridgeID: "br-" + id, PhysicalNetwork: phys, PhysicalVLAN: vlan, HostID: host}
		if host != "" {
			p.InterfaceName = "x"
		}
		return p
	}
	nets := map[string][]string{a: {"physnet1"}, b: {"physnet1", "physnet2"}, c: {}}
	all := map[string]bool{a: true, b: true, c: true}
	m := map[string]map[string]string{a: {"physnet1": "eth1"}, b: {"physnet1": "eth9", "physnet2": "eth2"}, c: {}}
	claims := func(me string, ports []*model.Port, alive map[string]bool, hostNets map[string][]string) map[string]string {
		out := map[string]string{}
		for _, cl := range claimUplinks(me, m[me], uplinkInputs{ports: ports, hostNets: hostNets}, alive) {
			out[cl.port.ID] = cl.iface
		}
		return out
	}
	// Unbound uplinks: every one is claimed by exactly one of the hosts
	// mapping its physical network, and they spread.
	var ports []*model.Port
	for i := range 40 {
		ports = append(ports, port(fmt.Sprintf("p%02d", i), "physnet1", 0, ""))
	}
	ca, cb, cc := claims(a, ports, all, nets), claims(b, ports, all, nets), claims(c, ports, all, nets)
	if len(cc) != 0 {
		t.Errorf("a host mapping nothing claims %v", cc)
	}
	for _, p := range ports {
		if (ca[p.ID] != "") == (cb[p.ID] != "") {
			t.Errorf("%s: claimed by a %q and b %q; want exactly one", p.ID, ca[p.ID], cb[p.ID])
		}
	}
	if len(ca) == 0 || len(cb) == 0 {
		t.Errorf("40 uplinks all on one host: a %d, b %d", len(ca), len(cb))
	}
	if ca[ports[0].ID] != "" && ca[ports[0].ID] != "eth1" || cb[ports[0].ID] != "" && cb[ports[0].ID] != "eth9" {
		t.Errorf("claims bind the host's own interface: a %v b %v", ca[ports[0].ID], cb[ports[0].ID])
	}

	for _, tc := range []struct {
		name   string
		p      *model.Port
		alive  map[string]bool
		nets   map[string][]string
		me     string
		iface  string // "" = not claimed by me
		claims bool
	}{
		{"sticky on an alive holder", port("q", "physnet1", 0, b), all, nets, a, "", false},
		{"holder keeps it", port("q", "physnet1", 0, b), all, nets, b, "eth9", true},
		{"holder dead: the other takes it", port("q", "physnet1", 0, b), map[string]bool{a: true, c: true}, nets, a, "eth1", true},
		{"holder no longer maps it", port("q", "physnet1", 0, b), all, map[string][]string{a: {"physnet1"}, b: {"physnet2"}}, a, "eth1", true},
		{"holder on another physnet only", port("q", "physnet2", 0, b), all, nets, a, "", false},
		{"vlan subinterface", port("q", "physnet2", 100, ""), all, nets, b, "eth2.100", true},
		{"unmapped physnet", port("q", "physnet3", 0, ""), all, nets, b, "", false},
		{"nobody alive maps it", port("q", "physnet2", 0, ""), map[string]bool{a: true}, nets, a, "", false},
		{"dead self does not claim", port("q", "physnet2", 0, ""), map[string]bool{a: true}, nets, b, "", false},
	} {
		got := claims(tc.me, []*model.Port{tc.p}, tc.alive, tc.nets)
		if iface, ok := got["q"]; ok != tc.claims || iface != tc.iface {
			t.Errorf("%s: %s claims %v, want %q (claimed %v)", tc.name, tc.me, got, tc.iface, tc.claims)
		}
	}
}

// TestUplinkFailover runs the claim loops of two gateway hosts against a
// real etcd, claiming through package hostclaim: one binds the uplink;
// when its lease ends the other takes it; when the first comes back the
// binding stays where it is.
func TestUplinkFailover(t *testing.T) {
	st := nsdb.New(nsdbtest.Start(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	claims := hostclaim.New(st)
	br, err := st.Create(ctx, &model.Bridge{Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := st.Create(ctx, &model.Port{BridgeID: br.GetMeta().ID, PhysicalNetwork: "physnet1"})
	if err != nil {
		t.Fatal(err)
	}
	// The topology as a mirror would have it: read afresh, its version
	// the store's revision (any write may matter).
	topology := func() *mirror.Snapshot {
		var objs []model.Object
		var rev int64
		for _, k := range []*model.Kind{model.PortKind, model.HostKind} {
			os, r, _ := st.List(ctx, k, "", "")
			objs, rev = append(objs, os...), r
		}
		return mirror.ObjectSnapshot(uint64(rev), objs...)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	type gw struct {
		id     string
		lease  nsdb.LeaseID
		cancel context.CancelFunc
	}
	start := func(name, iface string) *gw {
		h, err := st.Create(ctx, &model.Host{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		g := &gw{id: h.GetMeta().ID}
		if g.lease, err = st.GrantLease(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := st.SetHostAlive(ctx, g.id, g.lease); err != nil {
			t.Fatal(err)
		}
		gctx, gcancel := context.WithCancel(ctx)
		g.cancel = gcancel
		live := &nsdb.LiveHosts{}
		go func() { _ = st.WatchHostLiveness(gctx, live.Apply) }()
		u := New(Config{HostID: g.id, Mappings: map[string]string{"physnet1": iface}, Claims: claims, Alive: live.Alive, Topology: topology, Log: log})
		go func() { _ = u.Run(gctx) }()
		return g
	}
	boundTo := func(want *gw, iface string) {
		t.Helper()
		var p *model.Port
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			o, err := st.Get(ctx, model.PortKind, up.GetMeta().ID)
			if err != nil {
				t.Fatal(err)
			}
			if p = o.(*model.Port); p.HostID == want.id && p.InterfaceName == iface {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("uplink bound to %s %q, want %s %q", p.HostID, p.InterfaceName, want.id, iface)
	}
	g1 := start("gw1", "eth1")
	boundTo(g1, "eth1")
	g2 := start("gw2", "eth2")
	time.Sleep(time.Second) // g2 may win the hash: it must not take a live holder's uplink
	boundTo(g1, "eth1")
	if h, _ := st.Get(ctx, model.HostKind, g2.id); len(h.(*model.Host).PhysicalNetworks) != 1 {
		t.Errorf("gw2 did not publish its mapping: %+v", h)
	}

	g1.cancel() // the agent dies: its lease ends
	if err := st.RevokeLease(ctx, g1.lease); err != nil {
		t.Fatal(err)
	}
	boundTo(g2, "eth2")

	start("gw1b", "eth1") // back (as a new host): the binding stays
	time.Sleep(time.Second)
	boundTo(g2, "eth2")
}
