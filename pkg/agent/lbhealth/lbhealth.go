// Package lbhealth schedules the load balancers' health checks, the way
// MidoNet ran HAProxy: for every router with a load balancer, exactly one
// alive agent (the rendezvous hash of the router id over the alive hosts)
// is responsible for its members' statuses. When some pool has a health
// monitor, that agent gives the router a health-check port —
// 169.254.255.1/30, with a route for 169.254.255.0/30, bound to itself;
// package hostclaim makes it, directly or through the server, under the
// same rendezvous rule — and plugs into it a check namespace (Plumbing)
// whose end is 169.254.255.2/30 with a default route via .1. Checks are sockets opened
// in that namespace: they cross the virtual router to the member like a
// client's traffic would, so a member the router cannot reach is down.
//
// Link-local 169.254.255.0/30 cannot clash with tenant subnets (and every
// router has its own namespace, so the same addresses serve all routers);
// members answer through their default route, the router. The port is
// recognised by that address: no extra field marks it. IPv6 members are
// not checked (no status is written for them, so they stay in rotation).
//
// Statuses are written under the agent's liveness lease: when the checker
// dies they vanish (the member counts as unchecked, which the simulation
// balances on) until the next responsible agent, which sees the host die
// through the same lease, checks again. Nothing stays "down" for a dead
// checker.
package lbhealth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/agent/health"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// retryAfter is how long a failed round (etcd, netlink) waits before the
// next attempt when nothing else changes.
const retryAfter = 5 * time.Second

// NSDB is where health checking writes the members' statuses.
type NSDB interface {
	PutMemberStatus(ctx context.Context, hostID, memberID, status string, lease nsdb.LeaseID) error
	TakeBackMemberStatus(ctx context.Context, hostID, memberID string) error
}

// Plumbing makes the check namespaces.
type Plumbing interface {
	// Open makes a check namespace wired to the datapath's namespace by
	// interface ifname (which the health-check port binds), its end
	// configured as 169.254.255.2/30 with MTU mtu and a default route
	// via 169.254.255.1.
	Open(ifname string, mtu int) (Checker, error)
}

// Checker is one router's check namespace.
type Checker interface {
	// Dial opens a connection from the namespace.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// Close removes the namespace and its interfaces.
	Close() error
}

// Claims makes and removes the routers' health-check ports
// (hostclaim.Claims: the NSDB directly, or the server for a joined agent).
type Claims interface {
	EnsureHealthPort(ctx context.Context, hostID, routerID string) (portID string, err error)
	RemoveHealthPort(ctx context.Context, hostID, portID string) error
}

// Config wires health checking.
type Config struct {
	HostID      string
	UnderlayMTU int
	DB          NSDB
	Claims      Claims
	Lease       func() nsdb.LeaseID
	// Alive are the hosts alive now, and a revision of that knowledge
	// (nsdb.LiveHosts).
	Alive func() (map[string]bool, int64)
	// Topology is the latest topology snapshot.
	Topology func() *mirror.Snapshot
	// Plumbing makes the check namespaces; nil when the datapath has none
	// to wire (the in-memory one): members are then not checked here.
	Plumbing   Plumbing
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Health is the agent's health checking. Only Run's goroutine touches
// routers and retryAt; the scheduler hooks take mu.
type Health struct {
	cfg     Config
	routers map[string]*checking // routers whose checks run here
	retryAt time.Time            // a round failed: run again then, even without changes

	mu      sync.Mutex
	want    map[string]string // member id → status this agent is responsible for
	written map[string]written
	kick    chan struct{} // a status changed: write it now

	checks      *prometheus.CounterVec
	transitions *prometheus.CounterVec
}

type written struct {
	status string
	lease  nsdb.LeaseID
}

// checking is one router's checks here: its namespace, and the scheduler
// of its members' checks.
type checking struct {
	ns     Checker
	sched  *health.Scheduler
	cancel context.CancelFunc
}

// plan is what one round decides from the topology and liveness.
type plan struct {
	targets map[string][]health.Target // router id → members to check (owned routers with monitors)
	status  map[string]string          // member id → no_monitor, for owned routers
	ports   map[string]*model.Port     // router id → its health-check port(s), first kept
	extra   []*model.Port              // duplicate health-check ports to remove
	routes  map[string]bool            // port id → has its route
	owned   map[string]bool            // router id → responsible here
}

// New returns health checking and registers its metrics.
func New(cfg Config) (*Health, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Health{cfg: cfg, routers: map[string]*checking{}, want: map[string]string{}, written: map[string]written{},
		kick: make(chan struct{}, 1)}
	h.checks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_health_checks_total",
		Help: "Health checks of load balancer members run by this agent, by result."}, []string{"result"})
	h.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_health_transitions_total",
		Help: "Changes of a member's health status seen by this agent, by new status."}, []string{"status"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{h.checks, h.transitions} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// Run checks until ctx is done: a round runs whenever the topology or
// the live hosts changed (or a failed round's retry is due), and the
// statuses are written as the checks decide them.
func (h *Health) Run(ctx context.Context) error {
	defer h.shutdown()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var seen uint64
	seenAlive := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-h.kick:
		}
		snap := h.cfg.Topology()
		alive, rev := h.cfg.Alive()
		if snap.ChangedSince(seen, planKeys...) || rev != seenAlive || (!h.retryAt.IsZero() && time.Now().After(h.retryAt)) {
			seen, seenAlive = snap.Version, rev
			h.reconcile(ctx, snap, alive)
		} else {
			seen = snap.Version
		}
		h.writeStatuses(ctx)
	}
}

// planKeys are what a plan reads: when none of them changed, neither did
// the plan (a VM's port coming or going changes nothing here).
var planKeys = []string{model.RouterKind.Name, model.LoadBalancerKind.Name, model.HealthMonitorKind.Name,
	model.PoolKind.Name, model.PoolMemberKind.Name, model.RouteKind.Name, mirror.RouterPorts}

// plan decides from the topology and the live hosts what this agent
// must do.
func (h *Health) plan(objs objectSource, alive map[string]bool) *plan {
	hosts := make([]string, 0, len(alive))
	for id := range alive {
		hosts = append(hosts, id)
	}
	slices.Sort(hosts)

	p := &plan{targets: map[string][]health.Target{}, status: map[string]string{},
		ports: map[string]*model.Port{}, routes: map[string]bool{}, owned: map[string]bool{}}
	var routers []*model.Router
	lbs := map[string]*model.LoadBalancer{}
	monitors := map[string]*model.HealthMonitor{}
	pools := map[string][]*model.Pool{}         // lb id → pools
	members := map[string][]*model.PoolMember{} // pool id → members
	// Only the kinds a plan reads, and ports (thousands, VMs') only when
	// a router may have a health-check port: every host coming or going
	// makes a new plan, and with a thousand hosts that is often.
	kinds := []*model.Kind{model.RouterKind, model.LoadBalancerKind, model.HealthMonitorKind, model.PoolKind,
		model.PoolMemberKind, model.RouteKind, model.PortKind}
	for _, k := range kinds {
		if k == model.PortKind && len(routers) == 0 {
			break // a router port without its router does not exist
		}
		objs.Each(k, func(o model.Object) bool {
			switch x := o.(type) {
			case *model.Router:
				routers = append(routers, x)
			case *model.LoadBalancer:
				lbs[x.ID] = x
			case *model.HealthMonitor:
				monitors[x.ID] = x
			case *model.Pool:
				pools[x.LoadBalancerID] = append(pools[x.LoadBalancerID], x)
			case *model.PoolMember:
				members[x.PoolID] = append(members[x.PoolID], x)
			case *model.Route:
				if x.Dst == hostclaim.HealthCheckNet && x.PortID != "" {
					p.routes[x.PortID] = true
				}
			case *model.Port:
				if hostclaim.IsHealthPort(x) {
					if cur := p.ports[x.RouterID]; cur == nil || x.ID < cur.ID {
						if cur != nil {
							p.extra = append(p.extra, cur)
						}
						p.ports[x.RouterID] = x
					} else {
						p.extra = append(p.extra, x)
					}
				}
			}
			return true
		})
	}
	for _, r := range routers {
		if hostclaim.Rendezvous(r.ID, hosts) != h.cfg.HostID {
			continue
		}
		p.owned[r.ID] = true
		if lbs[r.LoadBalancerID] == nil {
			continue
		}
		for _, pool := range pools[r.LoadBalancerID] {
			m := monitors[pool.HealthMonitorID]
			if m == nil || m.State == model.StateDown {
				for _, mem := range members[pool.ID] {
					p.status[mem.ID] = model.MemberNoMonitor
				}
				continue
			}
			hm, err := monitorOf(m)
			if err != nil {
				h.cfg.Log.Warn("health monitor not usable; its members are not checked", "health_monitor", m.ID, "err", err)
				continue
			}
			for _, mem := range members[pool.ID] {
				if !mem.Address.Unmap().Is4() {
					continue // the check namespace is IPv4 only: unchecked, so balanced on
				}
				p.targets[r.ID] = append(p.targets[r.ID], health.Target{ID: mem.ID,
					Addr: netip.AddrPortFrom(mem.Address, mem.ProtocolPort), Monitor: hm})
			}
		}
	}
	return p
}

// objectSource is the topology as a plan reads it (a mirror snapshot).
type objectSource interface {
	Each(k *model.Kind, fn func(model.Object) bool)
}

func monitorOf(m *model.HealthMonitor) (health.Monitor, error) {
	codes, err := health.ParseCodes(m.ExpectedCodes)
	if err != nil {
		return health.Monitor{}, err
	}
	return health.Monitor{Type: m.Type, Delay: time.Duration(m.Delay) * time.Second,
		Timeout: time.Duration(m.Timeout) * time.Second, MaxRetries: int(m.MaxRetries),
		MaxRetriesDown: int(max(m.MaxRetriesDown, 1)), HTTPMethod: m.HTTPMethod, URLPath: m.URLPath, Codes: codes}, nil
}

// reconcile brings ports, namespaces and checks in line with the plan.
// Failures are logged and retried on the next round.
func (h *Health) reconcile(ctx context.Context, objs objectSource, alive map[string]bool) {
	h.retryAt = time.Time{}
	failed := func() { h.retryAt = time.Now().Add(retryAfter) }
	p := h.plan(objs, alive)
	for rid, r := range h.routers {
		if _, ok := p.targets[rid]; !ok {
			h.stopRouter(rid, r)
		}
	}
	// Health-check ports of routers owned here that no longer need one
	// (load balancer removed, monitors removed) go; so do duplicates two
	// agents created while they disagreed on liveness.
	for rid, port := range p.ports {
		if p.owned[rid] && len(p.targets[rid]) == 0 && !h.removePort(ctx, port) {
			failed()
		}
	}
	for _, port := range p.extra {
		if p.owned[port.RouterID] && !h.removePort(ctx, port) {
			failed()
		}
	}
	for rid, targets := range p.targets {
		if err := h.ensurePort(ctx, rid, p); err != nil {
			h.cfg.Log.Warn("health-check port", "router", rid, "err", err)
			failed()
			continue
		}
		r := h.routers[rid]
		if r == nil {
			var err error
			if r, err = h.startRouter(ctx, rid); err != nil {
				h.cfg.Log.Warn("health-check namespace", "router", rid, "err", err)
				failed()
				continue
			}
			h.routers[rid] = r
		}
		r.sched.Set(targets)
	}
	h.mu.Lock()
	want := map[string]string{}
	for id, st := range p.status {
		want[id] = st
	}
	for rid, ts := range p.targets {
		r := h.routers[rid]
		if r == nil {
			continue
		}
		for _, t := range ts {
			switch r.sched.Status(t.ID) {
			case health.Up:
				want[t.ID] = model.MemberUp
			case health.Down:
				want[t.ID] = model.MemberDown
			default: // restarted checks (monitor changed): the last verdict stands until the next
				if st, ok := h.want[t.ID]; ok && st != model.MemberNoMonitor {
					want[t.ID] = st
				}
			}
		}
	}
	dropped := map[string]written{}
	for id, w := range h.written {
		if _, ok := want[id]; !ok {
			dropped[id] = w
			delete(h.written, id)
		}
	}
	h.want = want
	h.mu.Unlock()
	// Statuses of members no longer ours are taken back (another agent's
	// own stay).
	for id := range dropped {
		if err := h.cfg.DB.TakeBackMemberStatus(ctx, h.cfg.HostID, id); err != nil {
			h.cfg.Log.Warn("take back member status", "member", id, "err", err)
		}
	}
}

// writeStatuses writes the statuses not yet written under the current
// lease (new, changed, or lost with a previous lease).
func (h *Health) writeStatuses(ctx context.Context) {
	lease := h.cfg.Lease()
	h.mu.Lock()
	todo := map[string]string{}
	for id, st := range h.want {
		if w, ok := h.written[id]; !ok || w.status != st || w.lease != lease {
			todo[id] = st
		}
	}
	h.mu.Unlock()
	for id, st := range todo {
		err := h.cfg.DB.PutMemberStatus(ctx, h.cfg.HostID, id, st, lease)
		if errors.Is(err, model.ErrNotFound) {
			h.mu.Lock()
			delete(h.want, id) // deleted member: the next plan forgets it
			h.mu.Unlock()
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				h.cfg.Log.Warn("write member status", "member", id, "status", st, "err", err)
			}
			continue
		}
		h.mu.Lock()
		h.written[id] = written{st, lease}
		h.mu.Unlock()
	}
}

// changed is the schedulers' transition hook.
func (h *Health) changed(t health.Target, from, to health.Status, err error) {
	st := model.MemberUp
	if to == health.Down {
		st = model.MemberDown
	}
	h.transitions.WithLabelValues(st).Inc()
	h.cfg.Log.Info("pool member health changed", "member", t.ID, "address", t.Addr, "from", from, "to", to, "check_err", err)
	h.mu.Lock()
	h.want[t.ID] = st
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *Health) checked(_ health.Target, err error) {
	if err != nil {
		h.checks.WithLabelValues("failed").Inc()
	} else {
		h.checks.WithLabelValues("ok").Inc()
	}
}

// ensurePort makes the router's health-check port and its route, or
// binds the existing port to this host, unless both are there already.
func (h *Health) ensurePort(ctx context.Context, routerID string, p *plan) error {
	if port := p.ports[routerID]; port != nil && port.HostID == h.cfg.HostID && port.InterfaceName == hostclaim.HealthIfName(routerID) && p.routes[port.ID] {
		return nil
	}
	id, err := h.cfg.Claims.EnsureHealthPort(ctx, h.cfg.HostID, routerID)
	if err != nil {
		return err
	}
	h.cfg.Log.Info("health-check port bound here", "router", routerID, "port", id, "interface", hostclaim.HealthIfName(routerID))
	return nil
}

func (h *Health) removePort(ctx context.Context, port *model.Port) bool {
	err := h.cfg.Claims.RemoveHealthPort(ctx, h.cfg.HostID, port.ID)
	if err != nil && !hostclaim.IsClass(err, hostclaim.NotFound) {
		h.cfg.Log.Warn("remove health-check port", "router", port.RouterID, "port", port.ID, "err", err)
		return false
	}
	h.cfg.Log.Info("health-check port removed", "router", port.RouterID, "port", port.ID)
	return true
}

// startRouter opens the router's check namespace and a scheduler dialing
// from it.
func (h *Health) startRouter(ctx context.Context, routerID string) (*checking, error) {
	if h.cfg.Plumbing == nil {
		return nil, errors.New("this datapath has no network namespace to plug health checks into")
	}
	ifname := hostclaim.HealthIfName(routerID)
	ns, err := h.cfg.Plumbing.Open(ifname, h.cfg.UnderlayMTU-50)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	r := &checking{ns: ns, cancel: cancel,
		sched: health.NewScheduler(sctx, ns.Dial, health.Hooks{Checked: h.checked, Changed: h.changed})}
	h.cfg.Log.Info("health checking started", "router", routerID, "interface", ifname)
	return r, nil
}

// stopRouter stops a router's checks and removes its namespace. The port
// and its binding stay: the next responsible agent binds them again.
func (h *Health) stopRouter(routerID string, r *checking) {
	r.cancel()
	r.sched.Stop()
	if err := r.ns.Close(); err != nil {
		h.cfg.Log.Warn("remove health-check namespace", "router", routerID, "err", err)
	}
	delete(h.routers, routerID)
	h.cfg.Log.Info("health checking stopped", "router", routerID, "interface", hostclaim.HealthIfName(routerID))
}

func (h *Health) shutdown() {
	for rid, r := range h.routers {
		h.stopRouter(rid, r)
	}
}
