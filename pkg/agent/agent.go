// Package agent is nagare-agent: it registers its host in the NSDB, mirrors
// the virtual topology from etcd, binds the virtual ports assigned to this
// host to their interfaces in the datapath, and handles the datapath's
// misses by simulating the packet through the topology (pkg/sim) and
// installing the resulting flow. DHCP is answered here, before simulation.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// Config is nagare-agent's configuration (its flags).
type Config struct {
	HostName      string        // the host's name in the NSDB (default: hostname)
	EtcdEndpoints []string      // the NSDB
	TunnelIP      netip.Addr    // this host's underlay address; default its tunnel-zone member address
	Datapath      string        // "userspace" or "ebpf"
	VXLANPort     uint16        // UDP port of VXLAN on every host (default 4789)
	UnderlayMTU   int           // MTU of the underlay (default 1500)
	MetricsListen string        // Prometheus endpoint, host:port; empty disables
	LeaseTTL      time.Duration // liveness lease; the host shows alive=false this long after the agent dies
	Netns         string        // network namespace of the datapath (path); empty: the agent's own
	Log           *slog.Logger

	// Connection tracking and NAT (flowstate.go): table bounds (zero:
	// the flowstate defaults), timeouts, and where the table is saved
	// across restarts (empty: not saved).
	ConntrackMax      int
	ConntrackZoneMax  int
	ConntrackTimeouts flowstate.Timeouts
	StateDir          string

	// PhysicalInterfaceMappings: physical network → host interface (physnet.go).
	PhysicalInterfaceMappings map[string]string
}

func (c *Config) defaults() error {
	if c.HostName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --host-name and no hostname: %w", err)
		}
		c.HostName = h
	}
	if c.Datapath == "" {
		c.Datapath = "userspace"
	}
	if c.Datapath != "userspace" && c.Datapath != "ebpf" {
		return fmt.Errorf("--datapath %q: want userspace or ebpf", c.Datapath)
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

// Agent is a running nagare-agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	cli    *clientv3.Client
	store  *nsdb.Store
	hostID string
	dp     datapath.Datapath
	macs   *macTable
	arp    *arpTable
	nbrs   *neighbors // replicates arp through the NSDB
	met    *metrics
	park   *parking
	fs     *flowstate.Table // connection tracking and NAT, shared by every Simulator
	blocks flowstate.Blocks // NAT port blocks: natb, or a MemBlocks in unit tests
	natb   *nsdb.NATBlocks  // the NSDB-backed blocks
	state  stateCounters
	saver  stateSaver // persist.go

	view    atomic.Pointer[view] // what the miss path reads
	workers sync.Pool            // *worker

	mu     sync.Mutex // the control loop's state below
	objs   map[string]model.Object
	bound  map[string]boundPort // port id → datapath port
	nextDP int32
	tun    datapath.TunnelConfig
	dhcp   map[string]*dhcpServer // bridge id → server (kept across rebuilds: leases)
	// memberStatus is the pool members' health (nsdb state keys), copied
	// into the mirror's members' derived Status.
	memberStatus map[string]string
}

// Run runs the agent until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	a := &Agent{cfg: cfg, log: cfg.Log, objs: map[string]model.Object{}, bound: map[string]boundPort{},
		dhcp: map[string]*dhcpServer{}, memberStatus: map[string]string{}}
	var err error
	a.cli, err = clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("connect to the NSDB %v: %w", cfg.EtcdEndpoints, err)
	}
	defer a.cli.Close()
	a.store = nsdb.New(a.cli)
	a.dp, err = newDatapath(&cfg)
	if err != nil {
		return err
	}
	defer a.dp.Close()
	a.met = newMetrics(a)
	a.arp = newARPTable()
	a.nbrs = newNeighbors(a)
	a.park = newParking()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lease, err := a.register(ctx)
	if err != nil {
		return err
	}
	a.macs = newMACTable(a.cli, a.hostID, lease, a.dp, a.log)
	a.natb = nsdb.NewNATBlocks(a.store, a.hostID, lease)
	defer a.natb.Close()
	a.blocks = a.natb
	a.fs = a.newFlowState()
	a.loadState()
	go runNATPublisher(ctx, a.store, a.hostID, a.fs, lease)
	a.view.Store(&view{topo: emptyTopology(), dpToPort: map[int32]string{}, portToDP: map[string]int32{}})
	a.log.Info("agent registered", "host", cfg.HostName, "host_id", a.hostID)

	errc := make(chan error, 12) // one per goroutine below
	run := func(name string, f func(context.Context) error) {
		go func() {
			err := f(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", name, err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	run("datapath", func(ctx context.Context) error { return a.dp.Run(ctx, dpHandler{a}) })
	run("flow state sweeper", a.sweepState)
	if cfg.StateDir != "" {
		run("flow state saver", a.saveStateLoop)
	}
	run("topology watch", func(ctx context.Context) error { return a.store.Watch(ctx, a.apply) })
	run("member status watch", func(ctx context.Context) error { return a.store.WatchMemberStatus(ctx, a.applyMemberStatus) })
	run("mac table", a.macs.run)
	run("neighbor table", a.nbrs.run)
	run("reconcile", a.reconcileLoop)
	run("status", a.publishStatus)
	run("load balancer health", a.runHealth) // lb.go
	run("physical networks", a.runPhysicalNetworks)
	// A clean shutdown saves the latest flow state.
	defer func() {
		if err := a.saveState(true); err != nil {
			a.log.Warn("save flow state", "dir", cfg.StateDir, "err", err)
		}
	}()
	if cfg.MetricsListen != "" {
		run("metrics", func(ctx context.Context) error { return a.met.serve(ctx, cfg.MetricsListen) })
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if err == nil {
			return nil
		}
		return err
	}
}

// register finds or creates this host's record and keeps its liveness key
// alive on a lease: when the agent dies, etcd deletes the key after
// LeaseTTL and every reader sees alive=false.
func (a *Agent) register(ctx context.Context) (clientv3.LeaseID, error) {
	var addrs []netip.Addr
	if a.cfg.TunnelIP.IsValid() {
		addrs = append(addrs, a.cfg.TunnelIP)
	}
	for attempt := 0; ; attempt++ {
		hosts, _, err := a.store.List(ctx, model.HostKind, "name", a.cfg.HostName)
		if err != nil {
			return 0, fmt.Errorf("look up host %q in the NSDB: %w", a.cfg.HostName, err)
		}
		if len(hosts) > 0 {
			a.hostID = hosts[0].GetMeta().ID
			if len(addrs) > 0 {
				_, err = a.store.Modify(ctx, model.HostKind, a.hostID, 0, func(o model.Object) error {
					o.(*model.Host).Addresses = addrs
					return nil
				})
			}
			if err != nil {
				return 0, fmt.Errorf("update host %q: %w", a.cfg.HostName, err)
			}
			break
		}
		h, err := a.store.Create(ctx, &model.Host{Name: a.cfg.HostName, Addresses: addrs})
		if err == nil {
			a.hostID = h.GetMeta().ID
			break
		}
		if attempt > 3 { // another agent with our name raced us: list again
			return 0, fmt.Errorf("register host %q: %w", a.cfg.HostName, err)
		}
	}
	lease, err := a.grantLease(ctx)
	if err != nil {
		return 0, err
	}
	go a.keepAlive(ctx, lease)
	return lease, nil
}

func (a *Agent) grantLease(ctx context.Context) (clientv3.LeaseID, error) {
	g, err := a.cli.Grant(ctx, int64((a.cfg.LeaseTTL+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant liveness lease: %w", err)
	}
	if err := a.store.SetHostAlive(ctx, a.hostID, g.ID); err != nil {
		return 0, fmt.Errorf("publish liveness: %w", err)
	}
	return g.ID, nil
}

// keepAlive refreshes the lease; if it is lost (etcd unreachable longer
// than the TTL) it takes a new one, so the host comes back alive by itself.
func (a *Agent) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	for ctx.Err() == nil {
		ch, err := a.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("liveness lease lost; registering again", "err", err)
		for ctx.Err() == nil {
			if lease, err = a.grantLease(ctx); err == nil {
				a.macs.setLease(lease)
				if n, err := a.natb.SetLease(ctx, lease); err != nil || n > 0 {
					a.log.Warn("NAT blocks moved to the new lease", "conflicts", n, "err", err)
				}
				break
			}
			time.Sleep(time.Second)
		}
	}
}

// HostID is this agent's host id (for tests and logs).
func (a *Agent) HostID() string { return a.hostID }

// emptyTopology is the view before the first snapshot arrives.
func emptyTopology() *sim.Topology {
	t, err := sim.Build(nil)
	if err != nil {
		panic("sim.Build(nil): " + err.Error())
	}
	return t
}
