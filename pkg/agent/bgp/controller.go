// Package bgp speaks BGP on the uplinks bound to this host: the ports of
// a router with an ASN that have BGP peers and are bound to an interface
// here (host host1 add binding interface eth1 port router0:port1).
//
// Per such port the controller runs one Speaker (GoBGP, package gobgp)
// from the port's own address, MidoNet's design with GoBGP in place of
// Quagga: the speaker's sockets live on a speaker interface of the host
// (a veth whose end carries the port's MAC and address, Plumbing), whose
// other end the datapath binds; the slow path hands it the sessions'
// packets — TCP 179, BFD, the ARP answers to the port — before any
// simulation (Punt), and what the speaker sends leaves by the uplink.
//
// What the peers announce becomes learned routes through the port
// (nsdb.LearnedRoute, under this host's liveness lease, so that they go
// with it), minus what the router must not learn: its own BGP networks
// and port subnets announced back (counted and logged), routes whose next
// hop is not on the port's network, and prefixes that flap (dampened).
// The router's BGP networks are announced while the gateway's liveness
// says the uplink is up (pkg/agent/gateway: its carrier, its sessions,
// the NSDB), and withdrawn as soon as it is not: a gateway cut off from
// the NSDB stops attracting traffic instead of black-holing it.
//
// The session timers default to fast ones (keepalive 1 s, hold 3 s) and
// BFD at 100 ms × 3 detects a dead upstream in 300 ms; a peer over its
// prefix limit is shut down and let back after a growing pause.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/agent/bgp/bfd"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// NSDB is what the controller writes: learned routes and session states,
// under the host's lease.
type NSDB interface {
	UpdateLearnedRoutes(ctx context.Context, put, del []nsdb.LearnedRoute, lease nsdb.LeaseID) error
	PutBGPPeerStatus(ctx context.Context, peerID string, st nsdb.BGPPeerStatus, lease nsdb.LeaseID) error
	TakeBackBGPPeerStatus(ctx context.Context, hostID, peerID string) error
}

// Datapath is what the controller uses of the datapath: the speaker
// interfaces' ports and the sessions' flows.
type Datapath interface {
	AddPort(cfg datapath.PortConfig) error
	RemovePort(portID string) error
	Install(spec *datapath.FlowSpec) error
	Invalidate(tags ...uint64) int
	Execute(inPort int32, frame []byte, actions []flow.Action) error
}

// Plumbing makes the speaker interfaces.
type Plumbing interface {
	// Open makes the speaker interface of an uplink port and returns the
	// name of its other end, for the datapath to bind.
	Open(p SpeakerPort) (datapathEnd string, err error)
	// Close removes a speaker interface made by Open.
	Close(name string) error
}

// SpeakerPort is what a speaker interface carries.
type SpeakerPort struct {
	// Name is the speaker's end ("nbs" + 12 hex digits of the port id).
	Name string
	MAC  packet.MAC
	Addr netip.Addr
	// Uplink is the uplink's interface, whose host stack must not answer
	// for the port's address.
	Uplink string
	MTU    int
}

// Config wires the controller.
type Config struct {
	HostID   string
	Speakers Factory
	// Plumbing is nil where the speaker cannot have a kernel interface
	// (an in-memory datapath; an agent outside its datapath's namespace):
	// sessions then report why they do not run.
	Plumbing    Plumbing
	NoPlumbing  string // the reason, when Plumbing is nil
	Datapath    Datapath
	DB          NSDB
	Lease       func() nsdb.LeaseID
	UnderlayMTU int
	// ControlPlane is told whether an uplink's sessions are up (at least
	// one established): the gateway liveness judges the uplink by it.
	ControlPlane func(portID string, up bool)
	// PeerPort replaces the peers' BGP port 179, and NoBind leaves the
	// sessions unbound from the speaker interface (tests that run their
	// peers over loopback).
	PeerPort   uint16
	NoBind     bool
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Controller runs the speakers of this host's uplinks.
type Controller struct {
	cfg   Config
	met   *metrics
	steer atomic.Pointer[steerTable]
	wake  chan struct{}
	// synced is the snapshot Sync last read (Publish calls it one at a
	// time).
	synced uint64

	mu       sync.Mutex
	topo     map[string]*portConf // desired, by port id
	topoNew  bool
	ports    map[string]*portSpeaker // running, by port id
	bindings map[string]int32        // port id → datapath index
	up       map[string]bool         // uplinks the gateway says are up
	nextDP   int32
	written  map[string]nsdb.LearnedRoute // published learned routes, by key
	lease    nsdb.LeaseID                 // they were written under
	statuses map[string]nsdb.BGPPeerStatus
	dirty    bool

	bfdMu     sync.Mutex
	bfdEvents []bfdEvent
}

// speakerIndexBase numbers the speaker interfaces' datapath ports apart
// from the bound ports (pkg/agent/ports counts from 0).
const speakerIndexBase = 1 << 30

// New returns a controller with nothing to speak for yet.
func New(cfg Config) (*Controller, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	if cfg.NoPlumbing == "" {
		cfg.NoPlumbing = "this datapath has no kernel interface for a BGP speaker"
	}
	c := &Controller{cfg: cfg, wake: make(chan struct{}, 1), topo: map[string]*portConf{}, ports: map[string]*portSpeaker{},
		bindings: map[string]int32{}, up: map[string]bool{}, nextDP: speakerIndexBase,
		written: map[string]nsdb.LearnedRoute{}, statuses: map[string]nsdb.BGPPeerStatus{}}
	var err error
	if c.met, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	c.steer.Store(&steerTable{})
	return c, nil
}

func (c *Controller) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Sync takes a new topology (the mirror's Publish; it does not block).
func (c *Controller) Sync(s *mirror.Snapshot) {
	if !s.Reset && !s.ChangedSince(c.synced, model.RouterKind.Name, mirror.RouterPorts,
		model.BGPPeerKind.Name, model.BGPNetworkKind.Name) {
		c.synced = s.Version
		return
	}
	c.synced = s.Version
	t := readPorts(s, c.cfg.HostID)
	c.mu.Lock()
	c.topo, c.topoNew = t, true
	c.mu.Unlock()
	c.kick()
}

// SetBindings takes the ports attached to the datapath (the uplinks'
// datapath indexes, which the steering needs).
func (c *Controller) SetBindings(portToDP map[string]int32) {
	c.mu.Lock()
	c.bindings = portToDP
	c.rebuildSteer()
	c.mu.Unlock()
}

// PortUp is the gateway's verdict on an uplink bound here: announce and
// publish what was learned while up, withdraw both at once when down.
func (c *Controller) PortUp(portID string, up bool) {
	c.mu.Lock()
	if up {
		c.up[portID] = true
	} else {
		delete(c.up, portID)
	}
	c.dirty = true
	c.mu.Unlock()
	c.kick()
}

// Run speaks until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	defer c.stopAll()
	var lastStatus time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-c.wake:
		}
		c.reconcile(ctx)
		c.applyBFD(ctx)
		c.announce(ctx)
		c.flushLearned(ctx)
		if time.Since(lastStatus) >= time.Second {
			c.publishStatus(ctx)
			c.reenable(ctx)
			lastStatus = time.Now()
		}
	}
}

// portConf is what the topology wants of one uplink bound here.
type portConf struct {
	portID, routerID string
	iface            string
	addr             netip.Addr
	network          netip.Prefix
	mac              packet.MAC
	asn              uint32
	// own are the prefixes the router must not learn from its peers: its
	// BGP networks and port subnets.
	own      []netip.Prefix
	networks []netip.Prefix
	peers    map[string]*model.BGPPeer // by peer id
}

// identity is what a running speaker cannot change without a restart.
func (p *portConf) identity() string {
	return fmt.Sprintf("%d %s %s %s %s", p.asn, p.addr, p.network, p.mac, p.iface)
}

func readPorts(s *mirror.Snapshot, me string) map[string]*portConf {
	routers := map[string]*model.Router{}
	var ports []*model.Port
	peers := map[string]map[string]*model.BGPPeer{}
	nets := map[string][]netip.Prefix{}
	subnets := map[string][]netip.Prefix{}
	s.Each(model.RouterKind, func(o model.Object) bool {
		routers[o.GetMeta().ID] = o.(*model.Router)
		return true
	})
	s.Each(model.PortKind, func(o model.Object) bool {
		if x := o.(*model.Port); x.RouterID != "" {
			ports = append(ports, x)
			if x.Network.IsValid() {
				subnets[x.RouterID] = append(subnets[x.RouterID], x.Network)
			}
		}
		return true
	})
	s.Each(model.BGPPeerKind, func(o model.Object) bool {
		x := o.(*model.BGPPeer)
		if peers[x.PortID] == nil {
			peers[x.PortID] = map[string]*model.BGPPeer{}
		}
		peers[x.PortID][x.ID] = x
		return true
	})
	s.Each(model.BGPNetworkKind, func(o model.Object) bool {
		x := o.(*model.BGPNetwork)
		nets[x.RouterID] = append(nets[x.RouterID], x.Network)
		return true
	})
	out := map[string]*portConf{}
	for _, p := range ports {
		r := routers[p.RouterID]
		if p.HostID != me || p.InterfaceName == "" || r == nil || r.ASN == 0 || len(peers[p.ID]) == 0 || !p.Address.IsValid() {
			continue
		}
		n := slices.Clone(nets[p.RouterID])
		slices.SortFunc(n, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
		out[p.ID] = &portConf{portID: p.ID, routerID: p.RouterID, iface: p.InterfaceName, addr: p.Address, network: p.Network,
			mac: p.MAC, asn: r.ASN, own: append(slices.Clone(n), subnets[p.RouterID]...), networks: n, peers: peers[p.ID]}
	}
	return out
}

// reconcile brings the speakers in line with the topology.
func (c *Controller) reconcile(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	retry := false
	for id, ps := range c.ports {
		if ps.failed != "" {
			retry = true
		}
		if want, ok := c.topo[id]; !ok || want.identity() != ps.conf.identity() {
			c.stopLocked(ps, "uplink changed")
		}
	}
	if !c.topoNew && !retry {
		return
	}
	c.topoNew = false
	for id, want := range c.topo {
		ps := c.ports[id]
		if ps == nil {
			ps = &portSpeaker{c: c, conf: want, peers: map[netip.Addr]peerState{}, rib: map[netip.Prefix]learnedPath{},
				damp: map[netip.Prefix]*damping{}}
			c.ports[id] = ps
			c.startLocked(ctx, ps)
		}
		if ps.speaker != nil {
			ps.syncPeers(ctx, want)
		}
		ps.conf = want
		c.dirty = true
	}
	c.rebuildSteer()
}

// startLocked plumbs and starts a port's speaker; a failure is reported
// in the peers' status and tried again later.
func (c *Controller) startLocked(ctx context.Context, ps *portSpeaker) {
	p := ps.conf
	fail := func(why string, err error) {
		ps.failed = why
		if err != nil {
			ps.failed += ": " + err.Error()
		}
		if !ps.warned {
			c.cfg.Log.Warn("cannot speak BGP for an uplink; retrying", "port", p.portID, "why", ps.failed)
			ps.warned = true
		}
	}
	if c.cfg.Plumbing == nil {
		fail(c.cfg.NoPlumbing, nil)
		return
	}
	name := SpeakerInterface(p.portID)
	end, err := c.cfg.Plumbing.Open(SpeakerPort{Name: name, MAC: p.mac, Addr: p.addr, Uplink: p.iface, MTU: c.cfg.UnderlayMTU})
	if err != nil {
		fail("speaker interface", err)
		return
	}
	ps.ifname = name
	ps.dp = c.nextDP
	c.nextDP++
	ps.dpPortID = "bgp-speaker:" + p.portID
	if err := c.cfg.Datapath.AddPort(datapath.PortConfig{PortID: ps.dpPortID, Index: ps.dp, Interface: end,
		MTU: c.cfg.UnderlayMTU}); err != nil {
		_ = c.cfg.Plumbing.Close(name)
		ps.ifname = ""
		fail("bind the speaker interface", err)
		return
	}
	bind := name
	if c.cfg.NoBind {
		bind = ""
	}
	port := p.portID
	r, err := startBFD(p.addr, bind, c.cfg.Log.With("port", p.portID), func(peer netip.Addr, old, cur bfd.State) {
		c.bfdChanged(bfdEvent{port: port, peer: peer, old: old, cur: cur})
	})
	if err != nil {
		c.unplumb(ps)
		fail("start BFD", err)
		return
	}
	ps.bfd = r
	sp, err := c.cfg.Speakers(SpeakerConfig{ASN: p.asn, RouterID: routerID(p), Address: p.addr,
		Interface: bind, Log: c.cfg.Log.With("port", p.portID)}, portEvents{c, p.portID})
	if err == nil {
		err = sp.Start(ctx)
	}
	if err != nil {
		c.unplumb(ps)
		fail("start the speaker", err)
		return
	}
	ps.speaker, ps.failed, ps.warned = sp, "", false
	c.cfg.Log.Info("speaking BGP for an uplink", "port", p.portID, "interface", p.iface, "address", p.addr, "asn", p.asn,
		"peers", len(p.peers))
}

// routerID is the speaker's BGP identifier: the port's IPv4 address, or
// one made of its id for an IPv6-only port.
func routerID(p *portConf) netip.Addr {
	if p.addr.Is4() {
		return p.addr
	}
	var b [4]byte
	for i := range len(p.portID) {
		b[i%4] ^= p.portID[i]
	}
	b[0] = 10
	return netip.AddrFrom4(b)
}

// SpeakerInterface names a port's speaker interface (15 characters at
// most, as the kernel wants).
func SpeakerInterface(portID string) string { return "nbs" + strings.ReplaceAll(portID, "-", "")[:12] }

// stopLocked stops a speaker and forgets what it learned and said.
func (c *Controller) stopLocked(ps *portSpeaker, why string) {
	if ps.speaker != nil {
		ps.speaker.Stop()
		c.cfg.Log.Info("stopped speaking BGP for an uplink", "port", ps.conf.portID, "why", why)
	}
	c.unplumb(ps)
	delete(c.ports, ps.conf.portID)
	if ps.controlUp && c.cfg.ControlPlane != nil {
		go c.cfg.ControlPlane(ps.conf.portID, false) // its lock must not nest in ours
	}
	c.dirty = true
	c.rebuildSteer()
}

func (c *Controller) unplumb(ps *portSpeaker) {
	if ps.bfd != nil {
		ps.bfd.stop()
		ps.bfd = nil
	}
	if ps.dpPortID != "" {
		if err := c.cfg.Datapath.RemovePort(ps.dpPortID); err != nil && !errors.Is(err, datapath.ErrUnknownPort) {
			c.cfg.Log.Warn("unbind a speaker interface", "port", ps.conf.portID, "err", err)
		}
		ps.dpPortID = ""
	}
	if ps.ifname != "" && c.cfg.Plumbing != nil {
		if err := c.cfg.Plumbing.Close(ps.ifname); err != nil {
			c.cfg.Log.Warn("remove a speaker interface", "interface", ps.ifname, "err", err)
		}
		ps.ifname = ""
	}
}

// stopAll ends the sessions when the agent stops. The speaker interfaces,
// their datapath ports and the flows that steer to them stay, as a pinned
// datapath's flows do, for the next agent to take over (Veth.Open reuses
// the pair): it speaks again as soon as it starts, without waiting for
// stale steering flows to age out.
func (c *Controller) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ps := range c.ports {
		if ps.speaker != nil {
			ps.speaker.Stop()
			c.cfg.Log.Info("stopped speaking BGP for an uplink", "port", id, "why", "agent stopping")
		}
		if ps.bfd != nil {
			ps.bfd.stop()
			ps.bfd = nil
		}
		delete(c.ports, id)
	}
}

// announce advertises the router's networks on the uplinks that are up
// and withdraws them from the others.
func (c *Controller) announce(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ps := range c.ports {
		if ps.speaker == nil {
			continue
		}
		want := []netip.Prefix(nil)
		if c.up[id] {
			want = ps.conf.networks
		}
		var add, del []netip.Prefix
		for _, n := range want {
			if !slices.Contains(ps.announced, n) {
				add = append(add, n)
			}
		}
		for _, n := range ps.announced {
			if !slices.Contains(want, n) {
				del = append(del, n)
			}
		}
		if len(del) > 0 {
			if err := ps.speaker.Withdraw(ctx, del); err != nil {
				c.cfg.Log.Warn("withdraw BGP networks", "port", id, "err", err)
				continue
			}
			c.cfg.Log.Info("BGP networks withdrawn", "port", id, "networks", del)
		}
		if len(add) > 0 {
			if err := ps.speaker.Advertise(ctx, add); err != nil {
				c.cfg.Log.Warn("announce BGP networks", "port", id, "err", err)
				continue
			}
			c.cfg.Log.Info("BGP networks announced", "port", id, "networks", add)
		}
		ps.announced = slices.Clone(want)
	}
}

// Ports lists the uplinks this host speaks for, for tests and status.
func (c *Controller) Ports() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.ports))
}
