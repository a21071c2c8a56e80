// Package gateway decides, on every host, which uplinks carry traffic:
// the liveness the simulation's route choice reads (sim.Liveness), so
// that outbound flows spread over the live uplinks only and move within
// a fraction of a second when one dies.
//
// An uplink is an exterior router port: a router port bound to an
// interface of a gateway host (host host1 add binding interface eth1 port
// router0:port1), with routes through it that its BGP peers announced
// (pkg/agent/bgp) or that an operator made (static uplinks).
//
// On the gateway (local.go), an uplink is healthy while its interface is
// running (netlink), the agent reaches the NSDB, and its control plane
// answers: at least one BGP session established for a port with peers
// (BFD detects a dead upstream in 300 ms and resets the session), or a
// static route's next hop answering ARP probes (nexthop.go). It becomes
// unhealthy at once and healthy again only after a hold-down that grows
// when it flaps, so failback never flaps. A gateway cut off from the NSDB
// declares its uplinks down: it stops announcing (the BGP controller
// withdraws) instead of black-holing traffic while the others take over
// (its lease ends, and the other hosts stop accepting its tunnels). Cut
// off means alone: when the other gateways it reaches over the tunnels
// say they lost the NSDB too (their reports carry the flag), the NSDB is
// down or slow for everyone, and withdrawing every uplink at once would
// turn an outage of the control plane into one of the data plane; the
// gateways keep forwarding on the topology they have.
//
// Every other host probes the gateways over the tunnels (probe.go), the
// way OVN's chassis run BFD to their gateways: a request every 100 ms
// over the datapath's probe channel (packet.ProbeTunnelKey), answered
// with a report of the gateway's uplinks; three missed answers make all
// of the gateway's uplinks dead, and a gateway whose uplink changes sends
// its report to its recent probers at once. The NSDB's liveness lease is
// the backstop. Hosts probe only gateways (hosts with uplinks): at N
// hosts and G gateways that is 10·N·G small packets a second in all, and
// 10·N per gateway (a 1,000-host cloud with 4 gateways: 10,000 probes a
// second per gateway, about 1 MB/s each way).
//
// Liveness changes invalidate exactly the flows that read them
// (sim.PortLiveTag): the dead uplink's flows move, and only the flows
// that would choose a returning uplink move back. A host that finds every
// uplink toward a destination dead uses them anyway (the simulation fails
// open): if they are, nothing is lost; if the host is wrong — its own
// stall, its underlay — it keeps the outside.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/nagare/nagare/internal/backoff"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/sim"
)

// Datapath is what the gateways use of the datapath.
type Datapath interface {
	SendProbe(peer netip.Addr, payload []byte) error
	Invalidate(tags ...uint64) int
	Execute(inPort int32, frame []byte, actions []flow.Action) error
}

// NSDB is what the gateways read of the NSDB: whether it answers.
type NSDB interface {
	Ping(ctx context.Context) error
}

// Config wires the gateways' liveness on one host.
type Config struct {
	HostID   string
	Datapath Datapath
	// Links are the interfaces of the datapath's namespace, watched for
	// the uplinks' carrier.
	Links datapath.LinkSource
	DB    NSDB
	// Alive are the hosts holding their NSDB lease (nsdb.LiveHosts): the
	// backstop when probes cannot tell.
	Alive func() (map[string]bool, int64)
	// OnLocal is told when an uplink bound here goes up or down (after
	// the hold-down): the BGP controller announces or withdraws. Called
	// on Run's goroutine.
	OnLocal func(portID string, up bool)
	// Interval is the probe period (default 100 ms), Multiplier the
	// probes missed before a gateway is dead (default 3), HoldDown the
	// time an uplink must stay healthy before it carries traffic again
	// (default 1 s; doubled for every flap in the last minute, up to
	// 30 s). NSDBTimeout is how long the NSDB may not answer before this
	// host's uplinks are withdrawn, if another gateway still reaches it
	// (default 1.5 s: under the 3 s lease, whose end makes the others
	// refuse this host's tunnels).
	Interval    time.Duration
	Multiplier  int
	HoldDown    time.Duration
	NSDBTimeout time.Duration
	Registerer  prometheus.Registerer
	Log         *slog.Logger
}

// Gateways is the uplinks' liveness as this host sees it.
type Gateways struct {
	cfg Config
	met *metrics

	// dead is what the simulation reads: uplink port ids that are down.
	dead atomic.Pointer[map[string]bool]
	// synced is the snapshot Sync last read (Publish calls it one at a
	// time).
	synced uint64

	mu      sync.Mutex
	topo    *topology
	local   map[string]*local  // uplinks bound here, by port id
	remote  map[string]*remote // gateways probed, by host id
	probers map[netip.Addr]time.Time
	links   map[string]datapath.Link
	linksOK bool
	nsdbOK  bool      // the NSDB answered within NSDBTimeout
	nsdbAt  time.Time // last answer
	outage  bool      // the NSDB is lost here and at every other gateway
	control map[string]bool
	hops    *nextHops
	stalled bool // the heartbeat came late: judge nobody this round
	seq     uint32
	wake    chan struct{}
	buf     []uplinkState
}

// New returns the gateways' liveness: every uplink live until told
// otherwise.
func New(cfg Config) (*Gateways, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Multiplier <= 0 {
		cfg.Multiplier = 3
	}
	if cfg.HoldDown <= 0 {
		cfg.HoldDown = time.Second
	}
	if cfg.NSDBTimeout <= 0 {
		cfg.NSDBTimeout = 1500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	g := &Gateways{cfg: cfg, topo: &topology{}, local: map[string]*local{}, remote: map[string]*remote{},
		probers: map[netip.Addr]time.Time{}, links: map[string]datapath.Link{}, nsdbOK: true, nsdbAt: time.Now(),
		control: map[string]bool{}, wake: make(chan struct{}, 1)}
	g.hops = newNextHops(g)
	var err error
	if g.met, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	empty := map[string]bool{}
	g.dead.Store(&empty)
	return g, nil
}

// PortLive implements sim.Liveness.
func (g *Gateways) PortLive(portID string) bool { return !(*g.dead.Load())[portID] }

var _ sim.Liveness = (*Gateways)(nil)

// Sync takes a new topology (the mirror's Publish).
func (g *Gateways) Sync(s *mirror.Snapshot) {
	if !s.Reset && !s.ChangedSince(g.synced, model.BGPPeerKind.Name, model.RouteKind.Name,
		model.TunnelZoneMemberKind.Name, mirror.RouterPorts) {
		g.synced = s.Version
		return
	}
	g.synced = s.Version
	t := readTopology(s, g.cfg.HostID)
	g.mu.Lock()
	g.topo = t
	g.mu.Unlock()
	g.kick()
}

// SetControlPlane says whether the BGP sessions of an uplink bound here
// are up (at least one established). Uplinks without peers are judged by
// their static next hops instead.
func (g *Gateways) SetControlPlane(portID string, up bool) {
	g.mu.Lock()
	g.control[portID] = up
	g.mu.Unlock()
	g.kick()
}

func (g *Gateways) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Run probes, answers and decides until ctx is done.
func (g *Gateways) Run(ctx context.Context) error {
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.watchLinks(ctx) })
	eg.Go(func() error { return g.pingNSDB(ctx) })
	eg.Go(func() error { return g.loop(ctx) })
	return eg.Wait()
}

// loop is the heartbeat: every interval (and at once when something
// changed) it sends the probes, judges the uplinks and publishes.
func (g *Gateways) loop(ctx context.Context) error {
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			// After a pause of this agent's own (not scheduled, a GC),
			// the reports of that time may still be unread: nobody is
			// judged dead on this round.
			now := time.Now()
			g.mu.Lock()
			g.stalled = now.Sub(last) > 2*g.cfg.Interval
			g.mu.Unlock()
			last = now
			g.probe()
			g.mu.Lock()
			local := g.topo.local
			g.mu.Unlock()
			g.hops.send(local)
		case <-g.wake:
		}
		g.evaluate(time.Now())
	}
}

// watchLinks follows the interfaces' carrier.
func (g *Gateways) watchLinks(ctx context.Context) error {
	if g.cfg.Links == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	return backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}.Retry(ctx, func(ctx context.Context) error {
		if links, err := g.cfg.Links.Links(ctx); err == nil {
			g.mu.Lock()
			g.links = map[string]datapath.Link{}
			for _, l := range links {
				g.links[l.Name] = l
			}
			g.linksOK = true
			g.mu.Unlock()
			g.kick()
		}
		err := g.cfg.Links.WatchLinks(ctx, func(ev datapath.LinkEvent) {
			g.mu.Lock()
			if ev.Deleted {
				if cur, ok := g.links[ev.Name]; ok && cur.Index == ev.Index {
					delete(g.links, ev.Name)
				}
			} else {
				g.links[ev.Name] = ev.Link
			}
			g.mu.Unlock()
			g.kick()
		})
		if ctx.Err() != nil {
			return nil
		}
		return err
	}, func(attempt int, err error) {
		g.cfg.Log.Warn("link watch of the uplinks ended; subscribing again", "attempt", attempt, "err", err)
	})
}

// pingNSDB checks, while this host has uplinks, that the NSDB answers.
func (g *Gateways) pingNSDB(ctx context.Context) error {
	t := time.NewTicker(min(g.cfg.Interval*2, g.cfg.NSDBTimeout/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		g.mu.Lock()
		gateway := len(g.topo.local) > 0
		g.mu.Unlock()
		if !gateway || g.cfg.DB == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, g.cfg.NSDBTimeout/2)
		err := g.cfg.DB.Ping(pctx)
		cancel()
		now := time.Now()
		g.mu.Lock()
		was := g.nsdbOK
		if err == nil {
			g.nsdbOK, g.nsdbAt = true, now
		} else if now.Sub(g.nsdbAt) > g.cfg.NSDBTimeout {
			g.nsdbOK = false
		}
		changed := was != g.nsdbOK
		g.mu.Unlock()
		if changed {
			if err != nil {
				g.cfg.Log.Warn("the NSDB does not answer", "err", err)
			} else {
				g.cfg.Log.Info("the NSDB answers again")
			}
			g.kick()
		}
	}
}

// evaluate judges the local uplinks and the probed gateways and publishes
// what changed.
func (g *Gateways) evaluate(now time.Time) {
	g.mu.Lock()
	g.expireRemote(now)
	g.judgeOutage()
	changedLocal := g.evaluateLocal(now)
	dead := g.computeDead()
	report := g.reportLocked(0)
	probers := g.recentProbers(now)
	g.mu.Unlock()

	for _, c := range changedLocal {
		g.met.transitions.WithLabelValues(upDown(c.up)).Inc()
		if g.cfg.OnLocal != nil {
			g.cfg.OnLocal(c.portID, c.up)
		}
	}
	if len(changedLocal) > 0 {
		// The news goes out at once, not at the next probe.
		for _, p := range probers {
			_ = g.cfg.Datapath.SendProbe(p, report)
		}
	}
	g.publish(dead)
}

type change struct {
	portID string
	up     bool
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// computeDead lists the uplinks that carry no traffic now. g.mu is held.
func (g *Gateways) computeDead() map[string]bool {
	alive, rev := map[string]bool(nil), int64(0)
	if g.cfg.Alive != nil {
		alive, rev = g.cfg.Alive()
	}
	dead := map[string]bool{}
	for _, u := range g.topo.uplinks {
		switch {
		case u.host == g.cfg.HostID:
			if l := g.local[u.port]; l != nil && !l.up {
				dead[u.port] = true
			}
		case rev > 0 && !alive[u.host]:
			dead[u.port] = true // the lease says so, whatever the probes said
		default:
			if r := g.remote[u.host]; r != nil && (!r.reachable || r.reported[u.key] == reportedDown) {
				dead[u.port] = true
			}
		}
	}
	return dead
}

// publish swaps in the dead set and invalidates the flows whose choice
// read an uplink whose liveness changed.
func (g *Gateways) publish(dead map[string]bool) {
	old := *g.dead.Load()
	if maps.Equal(old, dead) {
		return
	}
	var tags []uint64
	for id := range old {
		if !dead[id] {
			tags = append(tags, sim.PortLiveTag(id))
		}
	}
	for id := range dead {
		if !old[id] {
			tags = append(tags, sim.PortLiveTag(id))
		}
	}
	g.dead.Store(&dead)
	n := g.cfg.Datapath.Invalidate(tags...)
	ids := slices.Sorted(maps.Keys(dead))
	g.met.deadUplinks.Set(float64(len(dead)))
	g.cfg.Log.Info("uplink liveness changed", "dead", ids, "flows_invalidated", n)
}

// Dead lists the uplinks this host does not use now (for status and tests).
func (g *Gateways) Dead() []string { return slices.Sorted(maps.Keys(*g.dead.Load())) }

// LocalUp reports whether an uplink bound here carries traffic.
func (g *Gateways) LocalUp(portID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.local[portID]
	return l != nil && l.up
}

// topology is what the gateways read of a snapshot.
type topology struct {
	uplinks []uplink
	// local are the uplinks bound here.
	local map[string]uplink
	// gateways are the other hosts with uplinks, with their tunnel
	// address.
	gateways map[string]netip.Addr
}

// uplink is an exterior router port.
type uplink struct {
	port, router, host, iface string
	key                       uint32
	bgp                       bool // has BGP peers: its sessions judge it
	addr                      netip.Addr
	mac                       [6]byte
	network                   netip.Prefix
	nextHops                  []netip.Addr // static routes' gateways through it
}

func readTopology(s *mirror.Snapshot, me string) *topology {
	t := &topology{local: map[string]uplink{}, gateways: map[string]netip.Addr{}}
	peers := map[string]bool{}
	hops := map[string][]netip.Addr{}
	tunnel := map[string]netip.Addr{}
	var zoneOf = map[string]string{}
	s.Each(model.BGPPeerKind, func(o model.Object) bool {
		peers[o.(*model.BGPPeer).PortID] = true
		return true
	})
	s.Each(model.RouteKind, func(o model.Object) bool {
		x := o.(*model.Route)
		if !x.Learned && x.Type == model.RouteNormal && x.Gateway.IsValid() && !slices.Contains(hops[x.PortID], x.Gateway) {
			hops[x.PortID] = append(hops[x.PortID], x.Gateway)
		}
		return true
	})
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		// The first zone (by id) a host is in: where its tunnels end.
		x := o.(*model.TunnelZoneMember)
		if z, ok := zoneOf[x.HostID]; !ok || x.TunnelZoneID < z {
			zoneOf[x.HostID], tunnel[x.HostID] = x.TunnelZoneID, x.Address
		}
		return true
	})
	s.Each(model.PortKind, func(o model.Object) bool {
		p := o.(*model.Port)
		if p.RouterID == "" || p.HostID == "" || p.InterfaceName == "" {
			return true
		}
		u := uplink{port: p.ID, router: p.RouterID, host: p.HostID, iface: p.InterfaceName, key: p.TunnelKey,
			bgp: peers[p.ID], addr: p.Address, mac: p.MAC, network: p.Network}
		if !u.bgp {
			for _, h := range hops[p.ID] {
				if p.Network.Contains(h) {
					u.nextHops = append(u.nextHops, h)
				}
			}
		}
		t.uplinks = append(t.uplinks, u)
		if p.HostID == me {
			t.local[p.ID] = u
		} else if a, ok := tunnel[p.HostID]; ok {
			t.gateways[p.HostID] = a
		}
		return true
	})
	slices.SortFunc(t.uplinks, func(a, b uplink) int {
		if a.port < b.port {
			return -1
		}
		if a.port > b.port {
			return 1
		}
		return 0
	})
	return t
}

func (u uplink) String() string { return fmt.Sprintf("%s (%s on %s)", u.port, u.iface, u.host) }
