package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// Hosts are in-memory datapaths on one underlay hub: probes and reports
// cross real (in-memory) VXLAN tunnels with the probe key.

const (
	router = "00000000-0000-4000-8000-0000000000a0"
	u1     = "00000000-0000-4000-8000-0000000000b1" // BGP uplink on gw1
	u2     = "00000000-0000-4000-8000-0000000000b2" // uplink on gw2 without a control plane
	u3     = "00000000-0000-4000-8000-0000000000b3" // static uplink on gw2 (next hop 10.3.0.1)
)

var (
	addrs = map[string]netip.Addr{"gw1": netip.MustParseAddr("10.99.0.1"), "gw2": netip.MustParseAddr("10.99.0.2"),
		"hv": netip.MustParseAddr("10.99.0.3")}
	fast = Config{Interval: 40 * time.Millisecond, Multiplier: 3, HoldDown: 100 * time.Millisecond, NSDBTimeout: 100 * time.Millisecond}
)

func topo(t *testing.T) *mirror.Snapshot {
	t.Helper()
	port := func(id, host, iface, cidr string, key uint32, mac byte) *model.Port {
		p := netip.MustParsePrefix(cidr)
		return &model.Port{Meta: model.Meta{ID: id}, RouterID: router, State: model.StateUp, HostID: host, InterfaceName: iface,
			Address: p.Addr(), Network: p.Masked(), TunnelKey: key, MAC: packet.MAC{2, 0, 0, 0, 0, mac}}
	}
	objs := []model.Object{
		&model.TunnelZone{Meta: model.Meta{ID: "tz"}, Name: "tz", Type: model.TunnelVXLAN},
		&model.Router{Meta: model.Meta{ID: router}, State: model.StateUp, ASN: 64512},
		port(u1, "gw1", "eth1", "10.1.0.2/24", 1001, 1),
		port(u2, "gw2", "eth2", "10.2.0.2/24", 1002, 2),
		port(u3, "gw2", "eth3", "10.3.0.2/24", 1003, 3),
		&model.BGPPeer{Meta: model.Meta{ID: "peer1"}, RouterID: router, PortID: u1, ASN: 65001, Address: netip.MustParseAddr("10.1.0.1")},
		&model.Route{Meta: model.Meta{ID: "static3"}, RouterID: router, Type: model.RouteNormal, Dst: netip.MustParsePrefix("0.0.0.0/0"),
			Gateway: netip.MustParseAddr("10.3.0.1"), PortID: u3, Weight: 100},
	}
	for h, a := range addrs {
		objs = append(objs, &model.Host{Meta: model.Meta{ID: h}, Name: h},
			&model.TunnelZoneMember{Meta: model.Meta{ID: "tzm-" + h}, TunnelZoneID: "tz", HostID: h, Address: a})
	}
	s, err := mirror.NewSnapshot(1, objs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// node is one host: its in-memory datapath and its Gateways.
type node struct {
	name   string
	host   *memory.Host
	dp     *memory.Datapath
	g      *Gateways
	nsdb   atomic.Bool // false: the NSDB does not answer
	ups    chan change
	passed atomic.Int64 // ARP replies the gateway let through to the simulation
	cancel context.CancelFunc
	done   chan struct{}
}

// pinger is the NSDB's availability as this host sees it.
type pinger struct{ n *node }

func (p pinger) Ping(ctx context.Context) error {
	if !p.n.nsdb.Load() {
		<-ctx.Done()
		return errors.New("unreachable")
	}
	return nil
}

// handler routes the datapath's upcalls as the agent does.
type handler struct{ n *node }

func (h handler) Miss(u *datapath.Upcall) {
	if !h.n.g.Punt(u) && u.Pkt.IsARPReply() {
		h.n.passed.Add(1)
	}
}

func (h handler) Probe(from netip.Addr, payload []byte) { h.n.g.Probe(from, payload) }

func newNode(t *testing.T, hub *memory.Hub, name string, ifaces ...string) *node {
	t.Helper()
	n := &node{name: name, host: memory.NewHost(hub), ups: make(chan change, 64), done: make(chan struct{})}
	n.nsdb.Store(true)
	n.dp = memory.New(datapath.Config{}, n.host)
	var peers []netip.Addr
	for h, a := range addrs {
		if h != name {
			peers = append(peers, a)
		}
	}
	if err := n.dp.SetTunnels(datapath.TunnelConfig{LocalIP: addrs[name], VXLAN: true, Peers: peers}); err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if _, err := n.host.AddInterface(i); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fast
	cfg.HostID, cfg.Datapath, cfg.Links, cfg.DB = name, n.dp, n.dp, pinger{n}
	cfg.OnLocal = func(port string, up bool) { n.ups <- change{port, up} }
	cfg.Log = slog.New(slog.DiscardHandler)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.g = g
	g.Sync(topo(t))
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { _ = n.dp.Run(ctx, handler{n}) }()
	go func() { defer close(n.done); _ = g.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

// stop kills the host's agent: no more probes or answers.
func (n *node) stop() {
	n.cancel()
	<-n.done
	_ = n.dp.Close()
}

func within(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func TestGatewayLiveness(t *testing.T) {
	hub := memory.NewHub()
	gw1 := newNode(t, hub, "gw1", "eth1")
	gw2 := newNode(t, hub, "gw2", "eth2") // eth3 (the static uplink) is missing: dead
	hv := newNode(t, hub, "hv")

	// A flow on hv that chose u1 carries its liveness tag.
	if _, err := hv.host.AddInterface("vm"); err != nil {
		t.Fatal(err)
	}
	if err := hv.dp.AddPort(datapath.PortConfig{PortID: "vm", Index: 1, Interface: "vm", TunnelKey: 7}); err != nil {
		t.Fatal(err)
	}
	flowVia := func() {
		if err := hv.dp.Install(&datapath.FlowSpec{Key: flow.Key{InPort: 1, EtherType: 0x0800}, Tags: []uint64{sim.PortLiveTag(u1)},
			Actions: []flow.Action{{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: addrs["gw1"], TunnelKey: 1001}}}); err != nil {
			t.Fatal(err)
		}
	}
	flows := func() int { return int(hv.dp.Stats().Flows) }

	// u1's sessions are not up yet: gw1 says so, hv does not use it; u2
	// has no control plane and comes up after its hold-down.
	within(t, "u1 dead on hv while its sessions are down", time.Second, func() bool { return !hv.g.PortLive(u1) })
	within(t, "u2 up on gw2", time.Second, func() bool { return gw2.g.LocalUp(u2) })
	within(t, "u2 live on hv", time.Second, func() bool { return hv.g.PortLive(u2) })
	if gw2.g.LocalUp(u3) {
		t.Error("the static uplink without its interface is up")
	}
	gw1.g.SetControlPlane(u1, true)
	if c := <-gw1.ups; c.portID != u1 || !c.up {
		t.Fatalf("gw1 told %+v", c)
	}
	within(t, "u1 live on hv", time.Second, func() bool { return hv.g.PortLive(u1) })
	flowVia()
	if flows() != 1 {
		t.Fatal("flow not installed")
	}

	// The link goes down: gw1 withdraws at once and tells hv without
	// waiting for the next probe.
	start := time.Now()
	if err := gw1.host.SetUp("eth1", false); err != nil {
		t.Fatal(err)
	}
	within(t, "u1 dead on hv after link down", 200*time.Millisecond, func() bool { return !hv.g.PortLive(u1) })
	t.Logf("link down seen on hv after %s", time.Since(start))
	if c := <-gw1.ups; c.up {
		t.Fatal("gw1 did not report u1 down")
	}
	within(t, "the flow through u1 invalidated", time.Second, func() bool { return flows() == 0 })
	if !hv.g.PortLive(u2) {
		t.Error("u2 died with u1")
	}
	// Back up: after the hold-down, not before.
	if err := gw1.host.SetUp("eth1", true); err != nil {
		t.Fatal(err)
	}
	back := within(t, "u1 back", 2*time.Second, func() bool { return hv.g.PortLive(u1) })
	if back < fast.HoldDown {
		t.Errorf("u1 back after %s, before its hold-down of %s", back, fast.HoldDown)
	}
	<-gw1.ups

	// A flapping uplink is held down longer every time.
	var holds []time.Duration
	for range 3 {
		gw1.g.SetControlPlane(u1, false)
		<-gw1.ups
		gw1.g.SetControlPlane(u1, true)
		start := time.Now()
		<-gw1.ups
		holds = append(holds, time.Since(start))
	}
	if holds[2] < 3*fast.HoldDown {
		t.Errorf("hold-downs while flapping %v: not growing", holds)
	}

	// gw2 loses the NSDB: it withdraws its uplink (hv stops using it)
	// and takes it back when the NSDB answers again.
	gw2.nsdb.Store(false)
	within(t, "u2 dead on hv after gw2 lost the NSDB", time.Second, func() bool { return !hv.g.PortLive(u2) })
	gw2.nsdb.Store(true)
	within(t, "u2 back after the NSDB", 2*time.Second, func() bool { return hv.g.PortLive(u2) })
	// The NSDB fails for both gateways: an outage of the control plane,
	// not a partition; they keep forwarding.
	gw1.nsdb.Store(false)
	gw2.nsdb.Store(false)
	time.Sleep(5 * fast.NSDBTimeout)
	if !hv.g.PortLive(u1) || !hv.g.PortLive(u2) || !gw1.g.LocalUp(u1) || !gw2.g.LocalUp(u2) {
		t.Errorf("the NSDB down for every gateway: u1 live %v, u2 live %v", hv.g.PortLive(u1), hv.g.PortLive(u2))
	}
	gw1.nsdb.Store(true)
	gw2.nsdb.Store(true)

	// gw1's agent dies: hv notices in three missed probes.
	flowVia()
	start = time.Now()
	gw1.stop()
	took := within(t, "u1 dead on hv after gw1 died", 500*time.Millisecond, func() bool { return !hv.g.PortLive(u1) })
	t.Logf("dead gateway seen after %s (detection time %s)", took, fast.Interval*time.Duration(fast.Multiplier))
	if took < fast.Interval*time.Duration(fast.Multiplier-1) {
		t.Errorf("gw1 declared dead after %s, before three probes could be missed", took)
	}
	within(t, "flow through the dead gateway invalidated", time.Second, func() bool { return flows() == 0 })
	if !hv.g.PortLive(u2) {
		t.Error("u2 died with gw1")
	}
}

// A static uplink lives while its next hop answers ARP, and the answers
// that repeat what the router knows do not reach the simulation.
func TestStaticNextHop(t *testing.T) {
	hub := memory.NewHub()
	gw2 := newNode(t, hub, "gw2", "eth2", "eth3")
	eth3, ok := gw2.host.Interface("eth3")
	if !ok {
		t.Fatal("no eth3")
	}
	if err := gw2.dp.AddPort(datapath.PortConfig{PortID: u3, Index: 3, Interface: "eth3", TunnelKey: 1003}); err != nil {
		t.Fatal(err)
	}
	gw2.g.SetBindings(map[string]int32{u3: 3}, map[int32]string{3: u3})
	upstream := packet.MAC{2, 0, 0, 0, 0xee, 3}
	var answering atomic.Bool
	answering.Store(true)
	var requests atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		buf := make([]byte, 128)
		for {
			f, err := eth3.Recv(ctx)
			if err != nil {
				return
			}
			var p packet.Parsed
			p.Decode(f)
			if !p.IsARPRequest() || p.ARPTargetIP != netip.MustParseAddr("10.3.0.1") {
				continue
			}
			requests.Add(1)
			if !answering.Load() {
				continue
			}
			n, err := packet.BuildARPReply(buf, &p, upstream)
			if err == nil {
				_ = eth3.Send(append([]byte(nil), buf[:n]...))
			}
		}
	}()
	within(t, "static uplink up", 2*time.Second, func() bool { return gw2.g.LocalUp(u3) })
	// The datapath saw every answer as a miss; all but the first were
	// taken by the gateway (no learning, no NSDB write per probe).
	within(t, "8 probes answered", 2*time.Second, func() bool { return requests.Load() >= 8 })
	if p := gw2.passed.Load(); p != 1 {
		t.Errorf("%d answers passed to the simulation, want the first one only", p)
	}
	answering.Store(false)
	took := within(t, "static uplink down when its next hop is silent", time.Second, func() bool { return !gw2.g.LocalUp(u3) })
	t.Logf("silent next hop detected after %s", took)
	answering.Store(true)
	within(t, "static uplink back", 2*time.Second, func() bool { return gw2.g.LocalUp(u3) })
}

func TestPuntPassesNewsOnly(t *testing.T) {
	g, err := New(Config{HostID: "gw", Datapath: memory.New(datapath.Config{}, memory.NewHost(memory.NewHub()))})
	if err != nil {
		t.Fatal(err)
	}
	g.SetBindings(map[string]int32{u3: 3}, map[int32]string{3: u3})
	g.hops.active.Store(true)
	reply := func(mac packet.MAC) *datapath.Upcall {
		var req packet.Parsed
		buf := make([]byte, 64)
		n, _ := packet.BuildARPRequest(buf, packet.MAC{2, 0, 0, 0, 0, 3}, netip.MustParseAddr("10.3.0.2"), netip.MustParseAddr("10.3.0.1"))
		req.Decode(buf[:n])
		out := make([]byte, 64)
		m, _ := packet.BuildARPReply(out, &req, mac)
		u := &datapath.Upcall{InPort: 3, Pkt: &packet.Parsed{}}
		u.Pkt.Decode(out[:m])
		return u
	}
	a, b := packet.MAC{2, 0, 0, 0, 0xee, 1}, packet.MAC{2, 0, 0, 0, 0xee, 2}
	for i, c := range []struct {
		mac   packet.MAC
		taken bool
	}{{a, false}, {a, true}, {a, true}, {b, false}, {b, true}} {
		if got := g.Punt(reply(c.mac)); got != c.taken {
			t.Errorf("reply %d from %s: taken %v, want %v", i, c.mac, got, c.taken)
		}
	}
	u := reply(a)
	u.InPort = 9 // not an uplink
	if g.Punt(u) {
		t.Error("a reply on another port was taken")
	}
}
