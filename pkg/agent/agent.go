// Package agent is nagare-agent: thin wiring of the feature packages
// beneath it over one datapath and one NSDB.
//
//	session   registration, and the one liveness lease everything else writes under
//	mirror    the topology mirror: immutable snapshots, exact invalidation
//	ports     bindings ↔ datapath ports, tunnels, taps appearing and going
//	learned   MAC and ARP/ND tables and their replication
//	slowpath  the miss handler: DHCP, simulate, install, execute, parking
//	statesync flow-state push/receive, sweep, persistence, NAT translations
//	lbhealth  the load balancers' health checks
//	uplink    physical networks' uplinks
//	gateway   which uplinks (exterior router ports) carry traffic: probes, hold-down
//	reach     which hosts the tunnels reach: lease, or else a datapath answering echoes
//	bgp       BGP speakers on the uplinks bound here (GoBGP)
//
// Each takes the narrow interfaces it needs, never the agent. Run builds
// them; every goroutine runs under Run's context and error group, so the
// agent stops as a whole, and the first failure stops it.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/nagare/nagare/pkg/agent/bgp"
	"github.com/nagare/nagare/pkg/agent/bgp/gobgp"
	"github.com/nagare/nagare/pkg/agent/gateway"
	"github.com/nagare/nagare/pkg/agent/lbhealth"
	"github.com/nagare/nagare/pkg/agent/learned"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/agent/ports"
	"github.com/nagare/nagare/pkg/agent/reach"
	"github.com/nagare/nagare/pkg/agent/session"
	"github.com/nagare/nagare/pkg/agent/slowpath"
	"github.com/nagare/nagare/pkg/agent/statesync"
	"github.com/nagare/nagare/pkg/agent/uplink"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"

	// The datapaths an agent offers (--datapath).
	_ "github.com/nagare/nagare/pkg/datapath/ebpf"
	_ "github.com/nagare/nagare/pkg/datapath/memory"
	_ "github.com/nagare/nagare/pkg/datapath/userspace"
)

// Config is nagare-agent's configuration (its flags).
type Config struct {
	HostName      string      // the host's name in the NSDB (default: hostname)
	EtcdEndpoints []string    // the NSDB
	EtcdTLS       *tls.Config // client certificate and CA of a secure NSDB (from joining); nil: plain
	// Claims is where the host's changes to the topology go (its
	// addresses and physical networks, uplinks, health-check ports): the
	// server's host-claim API for a joined agent, whose etcd role may not
	// write the topology; nil: the NSDB directly (hostclaim.New).
	Claims        hostclaim.Claims
	TunnelIP      netip.Addr    // this host's underlay address; default its tunnel-zone member address
	Datapath      string        // a registered datapath (datapath.Names); default userspace
	VXLANPort     uint16        // UDP port of VXLAN on every host (default 4789)
	UnderlayMTU   int           // MTU of the underlay (default 1500)
	MetricsListen string        // Prometheus endpoint, host:port; empty disables
	Pprof         bool          // also serve Go's profiles (/debug/pprof/) on MetricsListen
	LeaseTTL      time.Duration // liveness lease; the host shows alive=false this long after the agent dies
	Netns         string        // network namespace of the datapath (path); empty: the agent's own
	Log           *slog.Logger

	// Connection tracking and NAT (statesync): table bounds (zero: the
	// flowstate defaults), timeouts, and where the table is saved across
	// restarts (empty: not saved).
	ConntrackMax      int
	ConntrackZoneMax  int
	ConntrackTimeouts flowstate.Timeouts
	StateDir          string

	// PhysicalInterfaceMappings: physical network → host interface (uplink).
	PhysicalInterfaceMappings map[string]string

	// GatewayProbeInterval and GatewayProbeMultiplier time the probes of
	// the gateways over the tunnels (zero: 100 ms, 3 missed answers).
	GatewayProbeInterval   time.Duration
	GatewayProbeMultiplier int
}

// Options are what RunWith takes from its caller instead of making: a
// process may run many agents (simulated hypervisors) with in-memory
// datapaths, one NSDB connection and one metrics registry.
type Options struct {
	// Datapath replaces the one Config.Datapath names. Run stops it when
	// it returns (as Datapath.Run does).
	Datapath datapath.Datapath
	// NSDB replaces a connection to Config.EtcdEndpoints; it is not
	// closed.
	NSDB *nsdb.Store
	// Registerer receives the agent's metrics instead of a registry of
	// its own. Several agents sharing one must tell their metrics apart
	// (prometheus.WrapRegistererWith a host label). With MetricsListen,
	// it must also be a prometheus.Gatherer.
	Registerer prometheus.Registerer
	// HealthPlumbing replaces the health checks' namespaces (by default
	// veths in Config.Netns; none for a datapath of its own interfaces).
	HealthPlumbing lbhealth.Plumbing
	// Ready, if set, is told the host's id once it is registered.
	Ready func(hostID string)
}

func (c *Config) defaults(injected bool) error {
	if c.HostName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --host-name and no hostname: %w", err)
		}
		c.HostName = h
	}
	switch {
	case c.Datapath == "" && injected:
		c.Datapath = "injected"
	case c.Datapath == "":
		name, passed := datapath.Default()
		log := c.Log
		if log == nil {
			log = slog.Default()
		}
		for _, why := range passed {
			log.Info("datapath passed over", "why", why)
		}
		if name == "" {
			return errors.New("--datapath: no datapath of this binary can run here")
		}
		c.Datapath = name
	}
	if !injected {
		if _, err := datapath.Lookup(c.Datapath); err != nil {
			return fmt.Errorf("--datapath: %w", err)
		}
	}
	if c.VXLANPort == 0 {
		c.VXLANPort = 4789
	}
	if c.UnderlayMTU == 0 {
		c.UnderlayMTU = 1500
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if len(c.EtcdEndpoints) == 0 {
		c.EtcdEndpoints = []string{"http://127.0.0.1:2379"}
	}
	return nil
}

// ParsePhysicalInterfaceMappings reads --physical-interface-mappings,
// "physnet1:eth1,physnet2:eth2".
func ParsePhysicalInterfaceMappings(s string) (map[string]string, error) {
	return uplink.ParseMappings(s)
}

// Run runs the agent until ctx is done.
func Run(ctx context.Context, cfg Config) error { return RunWith(ctx, cfg, Options{}) }

// RunWith runs the agent with what opts provides until ctx is done; it
// returns nil when ctx ended it, and the first failure otherwise.
func RunWith(ctx context.Context, cfg Config, opts Options) error {
	if err := cfg.defaults(opts.Datapath != nil); err != nil {
		return err
	}
	log := cfg.Log
	reg, gatherer := opts.Registerer, prometheus.Gatherer(nil)
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	if cfg.MetricsListen != "" && gatherer == nil {
		return errors.New("--metrics-listen needs a metrics registry that can be gathered")
	}
	db := opts.NSDB
	if db == nil {
		var err error
		if db, err = nsdb.Dial(cfg.EtcdEndpoints, cfg.EtcdTLS); err != nil {
			return err
		}
		defer db.Close()
	}
	dp := opts.Datapath
	if dp == nil {
		var err error
		if dp, err = datapath.New(cfg.Datapath, datapath.Config{Logger: log, Netns: cfg.Netns, Host: cfg.HostName}); err != nil {
			return err
		}
	}
	defer dp.Close()

	claims := cfg.Claims
	if claims == nil {
		claims = hostclaim.New(db)
	}
	sess, err := session.Open(ctx, db, session.Config{HostName: cfg.HostName, Addresses: addresses(cfg.TunnelIP),
		Record: claims, LeaseTTL: cfg.LeaseTTL, Log: log})
	if err != nil {
		return err
	}
	host := sess.HostID()
	natBlocks := nsdb.NewNATBlocks(db, host, sess.Lease())
	defer natBlocks.Close()
	sess.OnLeaseChange(func(ctx context.Context, lease nsdb.LeaseID) {
		if n, err := natBlocks.SetLease(ctx, lease); err != nil || n > 0 {
			log.Warn("NAT blocks moved to the new lease", "conflicts", n, "err", err)
		}
	})
	a, err := wire(cfg, opts, host, sess, db, claims, dp, natBlocks, reg)
	if err != nil {
		return err
	}
	a.state.Load()
	log.Info("agent registered", "host", cfg.HostName, "host_id", host)
	if opts.Ready != nil {
		opts.Ready(host)
	}

	g, gctx := errgroup.WithContext(ctx)
	run := func(name string, f func(context.Context) error) {
		g.Go(func() error { return ended(gctx, name, f(gctx)) })
	}
	run("datapath", func(ctx context.Context) error {
		return dp.Run(ctx, missAndState{a.slow, a.state, a.gateways, a.reach})
	})
	run("liveness lease", sess.Run)
	run("topology watch", func(ctx context.Context) error { return a.mirror.Run(ctx, db) })
	run("host liveness watch", func(ctx context.Context) error {
		return db.WatchHostLiveness(ctx, func(l nsdb.Liveness) error {
			if err := a.live.Apply(l); err != nil {
				return err
			}
			// Hosts whose lease ended are unreachable once their
			// datapath stops answering too.
			return a.reach.Apply(l)
		})
	})
	run("tunnel reachability", a.reach.Run)
	run("learned tables", a.tables.Run)
	run("ports", a.ports.Run)
	run("flow state", a.state.Run)
	run("status", a.status.run)
	run("load balancer health", a.health.Run)
	run("physical networks", a.uplinks.Run)
	run("gateway liveness", a.gateways.Run)
	run("BGP", a.bgp.Run)
	if cfg.MetricsListen != "" {
		run("metrics", func(ctx context.Context) error { return serveMetrics(ctx, cfg.MetricsListen, gatherer, cfg.Pprof) })
	}
	err = g.Wait()
	// A clean shutdown saves the latest flow state.
	if serr := a.state.Save(true); serr != nil {
		log.Warn("save flow state", "dir", cfg.StateDir, "err", serr)
	}
	return err
}

// ended says why a component's goroutine returned: nothing, when the
// agent is stopping; otherwise the component stopped the agent.
func ended(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("stopped")
	}
	return fmt.Errorf("%s: %w", name, err)
}

func addresses(tunnelIP netip.Addr) []netip.Addr {
	if tunnelIP.IsValid() {
		return []netip.Addr{tunnelIP}
	}
	return nil
}

// components are the agent's feature packages, wired.
type components struct {
	mirror   *mirror.Mirror
	ports    *ports.Ports
	tables   *learned.Tables
	slow     *slowpath.Handler
	state    *statesync.Sync
	health   *lbhealth.Health
	uplinks  *uplink.Uplinks
	gateways *gateway.Gateways
	bgp      *bgp.Controller
	status   *statusPublisher
	live     *nsdb.LiveHosts // which hosts are alive, for lbhealth and uplink
	reach    *reach.Reach    // which hosts the tunnels reach, for the mirror
}

// wire builds the feature packages over the datapath and the NSDB.
func wire(cfg Config, opts Options, host string, sess *session.Session, db *nsdb.Store, claims hostclaim.Claims,
	dp datapath.Datapath, blocks flowstate.Blocks, reg prometheus.Registerer) (*components, error) {
	log := cfg.Log
	flows, err := newCountedFlows(dp, reg)
	if err != nil {
		return nil, err
	}
	a := &components{live: &nsdb.LiveHosts{}}
	offload, _ := dp.(datapath.ConntrackOffloader) // the kernel datapath tracks connections itself
	links, plumbing, vlans := namespace(dp, cfg, opts)
	if a.gateways, err = gateway.New(gateway.Config{HostID: host, Datapath: flows, Links: links, DB: db, Alive: a.live.Alive,
		OnLocal:  func(port string, up bool) { a.bgp.PortUp(port, up) },
		Interval: cfg.GatewayProbeInterval, Multiplier: cfg.GatewayProbeMultiplier, Registerer: reg, Log: log}); err != nil {
		return nil, err
	}
	speakers, why := bgpPlumbing(dp, cfg)
	if a.bgp, err = bgp.New(bgp.Config{HostID: host, Speakers: gobgp.Factory, Plumbing: speakers, NoPlumbing: why, Datapath: flows,
		DB: db, Lease: sess.Lease, UnderlayMTU: cfg.UnderlayMTU, ControlPlane: a.gateways.SetControlPlane, Registerer: reg,
		Log: log}); err != nil {
		return nil, err
	}
	a.state = statesync.New(statesync.Config{HostID: host, HostName: cfg.HostName, ConntrackMax: cfg.ConntrackMax,
		ConntrackZoneMax: cfg.ConntrackZoneMax, Timeouts: cfg.ConntrackTimeouts, StateDir: cfg.StateDir, Blocks: blocks,
		Datapath: flows, Offload: offload, DB: db, Lease: sess.Lease, Log: log})
	a.tables = learned.New(learned.Config{HostID: host, DB: db, Lease: sess.Lease, Flows: flows, Log: log,
		// Packets parked for a neighbor another host resolved go again.
		Resolved: func(router string, ip netip.Addr) { a.slow.ReleaseParked(router, ip) }})
	if a.slow, err = slowpath.New(slowpath.Config{HostID: host, UnderlayMTU: cfg.UnderlayMTU, Datapath: flows,
		MACs: a.tables.MACs(), Neighbors: neighbors{a.tables}, FlowState: a.state.Table(), State: a.state,
		Liveness: a.gateways, Punt: punters{a.bgp, a.gateways}, Registerer: reg, Log: log}); err != nil {
		return nil, err
	}
	a.ports = ports.New(ports.Config{HostID: host, TunnelIP: cfg.TunnelIP, VXLANPort: cfg.VXLANPort,
		UnderlayMTU: cfg.UnderlayMTU, Datapath: dp, Links: links, Log: log,
		OnChange: func(b *ports.Bindings) {
			a.slow.SetBindings(b.PortToDP)
			a.bgp.SetBindings(b.PortToDP)
			a.gateways.SetBindings(b.PortToDP, b.DPToPort)
		}})
	// A topology change reaches the bindings and the slow path before
	// the flows it made stale are invalidated: the packets that miss
	// again see it. The slow path first: a port's packets can miss as
	// soon as it is attached (a new port's first ones; after a restart,
	// any its adopted flows do not match), and are simulated with the
	// topology that bound it, not the previous one (at start the empty
	// one, where every port is unknown and every packet dropped).
	a.mirror = mirror.New(mirror.Config{HostID: host, Flows: flows, Log: log, Publish: func(s *mirror.Snapshot) {
		a.slow.SetTopology(s)
		a.ports.Sync(s)
		a.gateways.Sync(s)
		a.bgp.Sync(s)
	}})
	if a.reach, err = reach.New(reach.Config{HostID: host, Datapath: flows, Apply: a.mirror.ApplyLiveness, Revoked: db.HostRevoked,
		Addresses:  func(h string) []netip.Addr { return tunnelAddresses(a.mirror.Current(), h) },
		Registerer: reg, Log: log}); err != nil {
		return nil, err
	}
	if a.health, err = lbhealth.New(lbhealth.Config{HostID: host, UnderlayMTU: cfg.UnderlayMTU, DB: db, Claims: claims, Lease: sess.Lease,
		Alive: a.live.Alive, Topology: a.mirror.Current, Plumbing: plumbing, Registerer: reg, Log: log}); err != nil {
		return nil, err
	}
	a.uplinks = uplink.New(uplink.Config{HostID: host, Mappings: cfg.PhysicalInterfaceMappings, Claims: claims, VLANs: vlans,
		Alive: a.live.Alive, Topology: a.mirror.Current, Log: log})
	a.status = &statusPublisher{db: db, dp: dp, host: host, hostName: cfg.HostName, datapath: cfg.Datapath,
		lease: sess.Lease, state: a.state, slow: a.slow, log: log}
	for _, c := range []prometheus.Collector{dpCollector{dp}, a.state.Collector()} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return a, nil
}

// namespace is where the datapath's interfaces live: its own, for a
// datapath that makes them (the in-memory one), or the kernel's in
// Config.Netns, watched over netlink, where health checks are plumbed and
// VLAN subinterfaces made.
func namespace(dp datapath.Datapath, cfg Config, opts Options) (datapath.LinkSource, lbhealth.Plumbing, uplink.VLANs) {
	plumbing := opts.HealthPlumbing
	if own, ok := dp.(datapath.LinkSource); ok {
		return own, plumbing, nil
	}
	if plumbing == nil {
		plumbing = lbhealth.Netns{Path: cfg.Netns}
	}
	return ports.Netlink{Netns: cfg.Netns}, plumbing, uplink.Netns{Path: cfg.Netns}
}

// bgpPlumbing is how BGP speakers get their interface: a veth in the
// agent's namespace when that is the datapath's (GoBGP's sockets open
// there), none otherwise, with the reason the sessions report.
func bgpPlumbing(dp datapath.Datapath, cfg Config) (bgp.Plumbing, string) {
	if _, own := dp.(datapath.LinkSource); own {
		return nil, "this datapath has no kernel interfaces for a BGP speaker"
	}
	if cfg.Netns != "" {
		return nil, "BGP needs the agent to run in its datapath's network namespace (--netns is set)"
	}
	return bgp.Veth{}, ""
}

// punters offers a miss to each feature that takes control traffic, in
// order: the BGP speakers' sessions first (they copy the ARP answers
// they need), then the next-hop probes' answers.
type punters []slowpath.Punter

func (p punters) Punt(u *datapath.Upcall) bool {
	for _, x := range p {
		if x.Punt(u) {
			return true
		}
	}
	return false
}

// neighbors is the learned tables as the slow path reads and feeds them.
type neighbors struct{ *learned.Tables }

func (n neighbors) Lookup(router string, ip netip.Addr) (packet.MAC, bool) {
	return n.ARP().Lookup(router, ip)
}

// missAndState is the datapath's handler: misses go to the slow path,
// flow-state packets to state sync, echo replies to the reachability,
// other probes to the gateway liveness.
type missAndState struct {
	slow     *slowpath.Handler
	state    *statesync.Sync
	gateways *gateway.Gateways
	reach    *reach.Reach
}

func (h missAndState) Miss(u *datapath.Upcall)               { h.slow.Miss(u) }
func (h missAndState) State(from netip.Addr, payload []byte) { h.state.State(from, payload) }
func (h missAndState) Probe(from netip.Addr, payload []byte) {
	if !h.reach.Echo(from, payload) {
		h.gateways.Probe(from, payload)
	}
}

// tunnelAddresses are the underlay addresses of host's tunnel-zone
// memberships in s.
func tunnelAddresses(s *mirror.Snapshot, host string) []netip.Addr {
	var out []netip.Addr
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		if m := o.(*model.TunnelZoneMember); m.HostID == host && m.Address.IsValid() {
			out = append(out, m.Address)
		}
		return true
	})
	return out
}
