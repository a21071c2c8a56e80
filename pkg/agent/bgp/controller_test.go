package bgp_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nagare/nagare/pkg/agent/bgp"
	"github.com/nagare/nagare/pkg/agent/bgp/gobgp"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/packet"
)

// The controller runs the real GoBGP speaker against a real GoBGP
// upstream over loopback (the uplink's address is 127.0.0.1, the peer's
// 127.0.0.2): sessions, learned routes in the NSDB, announcements, the
// filters and the damping. The speaker interface and the steering need
// namespaces and are exercised end to end (test/e2e, with FRR).

const (
	router = "00000000-0000-4000-8000-0000000000a0"
	uplink = "00000000-0000-4000-8000-0000000000b1"
	peerID = "00000000-0000-4000-8000-0000000000c1"
)

var (
	ours   = netip.MustParseAddr("127.0.0.1")
	theirs = netip.MustParseAddr("127.0.0.2")
	tenant = netip.MustParsePrefix("203.0.113.0/24")
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// memPlumbing makes the speaker interface's datapath end on an
// in-memory host (the speaker itself talks over loopback).
type memPlumbing struct{ host *memory.Host }

func (m memPlumbing) Open(p bgp.SpeakerPort) (string, error) {
	end := "nbd" + strings.TrimPrefix(p.Name, "nbs")
	_, err := m.host.AddInterface(end)
	return end, err
}

func (m memPlumbing) Close(name string) error {
	return m.host.DeleteInterface("nbd" + strings.TrimPrefix(name, "nbs"))
}

func snapshot(t *testing.T, version uint64, withPeer bool) *mirror.Snapshot {
	t.Helper()
	objs := []model.Object{
		&model.Router{Meta: model.Meta{ID: router}, State: model.StateUp, ASN: 64512},
		&model.Port{Meta: model.Meta{ID: uplink}, RouterID: router, State: model.StateUp, HostID: "gw1", InterfaceName: "eth1",
			Address: ours, Network: netip.MustParsePrefix("127.0.0.0/8"), MAC: packet.MAC{2, 0, 0, 0, 0, 1}, TunnelKey: 11},
		&model.Port{Meta: model.Meta{ID: "00000000-0000-4000-8000-0000000000b2"}, RouterID: router, State: model.StateUp,
			Address: netip.MustParseAddr("10.0.0.1"), Network: netip.MustParsePrefix("10.0.0.0/24"), TunnelKey: 12},
		&model.BGPNetwork{Meta: model.Meta{ID: "00000000-0000-4000-8000-0000000000d1"}, RouterID: router, Network: tenant},
	}
	if withPeer {
		objs = append(objs, &model.BGPPeer{Meta: model.Meta{ID: peerID}, RouterID: router, PortID: uplink, ASN: 65001, Address: theirs,
			KeepAlive: 1, HoldTime: 3, BFD: "off", MaxPrefixes: 50})
	}
	s, err := mirror.NewSnapshot(version, objs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type upstream struct{ s *server.BgpServer }

func newUpstream(t *testing.T, listen, ourPort int) *upstream {
	t.Helper()
	s := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), nil))
	done := make(chan struct{})
	go func() { defer close(done); s.Serve() }()
	t.Cleanup(func() { s.Stop(); <-done })
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65001, RouterId: "10.255.0.1",
		ListenPort: int32(listen), ListenAddresses: []string{theirs.String()}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: ours.String(), PeerAsn: 64512},
		Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 3, KeepaliveInterval: 1}},
		Transport: &api.Transport{RemotePort: uint32(ourPort), LocalAddress: theirs.String()},
	}}); err != nil {
		t.Fatal(err)
	}
	return &upstream{s: s}
}

func (u *upstream) path(t *testing.T, pfx string, nh netip.Addr) *apiutil.Path {
	t.Helper()
	nlri, err := gbgp.NewIPAddrPrefix(netip.MustParsePrefix(pfx))
	if err != nil {
		t.Fatal(err)
	}
	a, err := gbgp.NewPathAttributeNextHop(nh)
	if err != nil {
		t.Fatal(err)
	}
	return &apiutil.Path{Family: gbgp.RF_IPv4_UC, Nlri: nlri, Attrs: []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(0), a}}
}

func (u *upstream) announce(t *testing.T, pfx string, nh netip.Addr) {
	t.Helper()
	if _, err := u.s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{u.path(t, pfx, nh)}}); err != nil {
		t.Fatal(err)
	}
}

func (u *upstream) withdraw(t *testing.T, pfx string, nh netip.Addr) {
	t.Helper()
	if err := u.s.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{u.path(t, pfx, nh)}}); err != nil {
		t.Fatal(err)
	}
}

// has reports whether the upstream learned pfx from us (it announces
// the same prefix itself, as a hijacker would).
func (u *upstream) has(t *testing.T, pfx netip.Prefix) bool {
	t.Helper()
	found := false
	err := u.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gbgp.RF_IPv4_UC},
		func(n gbgp.NLRI, paths []*apiutil.Path) {
			if p, ok := n.(*gbgp.IPAddrPrefix); !ok || p.Prefix != pfx {
				return
			}
			for _, path := range paths {
				found = found || path.PeerAddress == ours
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// controlPlane records what the controller tells the gateway liveness.
type controlPlane struct {
	mu sync.Mutex
	up map[string]bool
}

func (c *controlPlane) set(port string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up[port] = up
}

func (c *controlPlane) get(port string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up[port]
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func learned(t *testing.T, db *nsdbmem.Store) []string {
	t.Helper()
	rs, err := db.LearnedRoutes(context.Background(), router)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Dst.String()+" via "+r.Gateway.String())
	}
	slices.Sort(out)
	return out
}

func TestController(t *testing.T) {
	// The upstream tries to connect too, to a port nothing listens on:
	// our speaker only connects.
	ourPort, theirPort := freePort(t), freePort(t)
	up := newUpstream(t, theirPort, ourPort)
	db := nsdbmem.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lease, err := db.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var curLease = lease
	var leaseMu sync.Mutex
	host := memory.NewHost(memory.NewHub())
	dp := memory.New(datapath.Config{}, host)
	cp := &controlPlane{up: map[string]bool{}}
	reg := prometheus.NewRegistry()
	c, err := bgp.New(bgp.Config{HostID: "gw1", Speakers: gobgp.Factory, Plumbing: memPlumbing{host}, Datapath: dp, DB: db,
		Lease:        func() nsdb.LeaseID { leaseMu.Lock(); defer leaseMu.Unlock(); return curLease },
		ControlPlane: cp.set, PeerPort: uint16(theirPort), NoBind: true,
		Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	c.Sync(snapshot(t, 1, true))
	eventually(t, "session up", func() bool { return cp.get(uplink) })
	if got := c.Ports(); !slices.Equal(got, []string{uplink}) {
		t.Fatalf("speaking for %v", got)
	}
	// The router learns the default route and a network; not its own
	// network, nor a more specific part of it, nor an off-link next hop.
	up.announce(t, "0.0.0.0/0", theirs)
	up.announce(t, "192.0.2.0/24", theirs)
	up.announce(t, "203.0.113.0/24", theirs)
	up.announce(t, "203.0.113.128/25", theirs)
	up.announce(t, "10.0.0.0/24", theirs)
	up.announce(t, "198.51.100.0/24", netip.MustParseAddr("192.0.2.77"))
	eventually(t, "own and off-link routes rejected", func() bool {
		return testutil.ToFloat64(metric(t, reg, "nagare_bgp_routes_rejected_total")) >= 4
	})
	// Nothing is published, nor announced, before the gateway says the
	// uplink is up.
	time.Sleep(300 * time.Millisecond)
	if got := learned(t, db); len(got) != 0 {
		t.Fatalf("published before the uplink is up: %v", got)
	}
	if up.has(t, tenant) {
		t.Fatal("announced before the uplink is up")
	}
	c.PortUp(uplink, true)
	want := []string{"0.0.0.0/0 via 127.0.0.2", "192.0.2.0/24 via 127.0.0.2"}
	eventually(t, "learned routes published", func() bool { return slices.Equal(learned(t, db), want) })
	eventually(t, "tenant network announced", func() bool { return up.has(t, tenant) })
	eventually(t, "session state published", func() bool {
		st, err := db.BGPPeerStatuses(ctx)
		s := st[peerID]
		if err != nil {
			t.Log(err)
			return false
		}
		// Received counts what the peer announces, rejected or not.
		return s.State == "established" && s.HostID == "gw1" && s.Received == 6 && s.Sent == 1 && !s.Since.IsZero()
	})

	// A withdrawal reaches the NSDB.
	up.withdraw(t, "192.0.2.0/24", theirs)
	eventually(t, "withdrawal published", func() bool { return slices.Equal(learned(t, db), want[:1]) })

	// A prefix flapping ten times a second is suppressed: it does not
	// come back while it flaps.
	for i := range 10 {
		if i%2 == 0 {
			up.announce(t, "198.18.0.0/15", theirs)
		} else {
			up.withdraw(t, "198.18.0.0/15", theirs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	up.announce(t, "198.18.0.0/15", theirs)
	eventually(t, "flapping prefix dampened", func() bool {
		return testutil.ToFloat64(metric(t, reg, "nagare_bgp_routes_dampened_total")) == 1
	})
	time.Sleep(300 * time.Millisecond)
	if got := learned(t, db); !slices.Equal(got, want[:1]) {
		t.Fatalf("a suppressed prefix is published: %v", got)
	}

	// A new lease (the agent lost and retook its own): everything is
	// written again under it.
	newLease, err := db.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	leaseMu.Lock()
	curLease = newLease
	leaseMu.Unlock()
	if err := db.RevokeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	eventually(t, "routes rewritten under the new lease", func() bool { return slices.Equal(learned(t, db), want[:1]) })

	// The gateway says the uplink is down (link down, NSDB lost): the
	// learned routes and the announcement go at once.
	c.PortUp(uplink, false)
	eventually(t, "learned routes withdrawn", func() bool { return len(learned(t, db)) == 0 })
	eventually(t, "tenant network withdrawn", func() bool { return !up.has(t, tenant) })

	// The peer is deleted: the session ends and its state is taken back.
	c.Sync(snapshot(t, 2, false))
	eventually(t, "speaker stopped", func() bool { return len(c.Ports()) == 0 })
	eventually(t, "session state taken back", func() bool {
		st, err := db.BGPPeerStatuses(ctx)
		if err != nil {
			t.Log(err)
			return false
		}
		_, ok := st[peerID]
		return !ok
	})
	if cp.get(uplink) {
		t.Error("control plane still up without a speaker")
	}
}

func metric(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	return gathered{g, name}
}

// gathered sums a metric family from a registry, for testutil.ToFloat64.
type gathered struct {
	g    prometheus.Gatherer
	name string
}

func (g gathered) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc(g.name, "sum", nil, nil)
}

func (g gathered) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.g.Gather()
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "sum", nil, nil), prometheus.UntypedValue, sum)
}
