package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/agent/health"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Load balancer health checking, the way MidoNet ran HAProxy: for every
// router with a load balancer, exactly one alive agent (the rendezvous
// hash of the router id over the alive hosts) is responsible for its
// members' statuses. When some pool has a health monitor, that agent
// gives the router a health-check port — 169.254.255.1/30, with a route
// for 169.254.255.0/30, bound to itself — and plugs into it a veth whose
// other end, 169.254.255.2/30 with a default route via .1, sits in an
// anonymous network namespace of its own. Checks are sockets opened in that
// namespace: they cross the virtual router to the member like a client's
// traffic would, so a member the router cannot reach is down.
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
var (
	healthPortAddr = netip.MustParseAddr("169.254.255.1")
	healthPeerAddr = netip.MustParsePrefix("169.254.255.2/30")
	healthNet      = netip.MustParsePrefix("169.254.255.0/30")
)

// healthRetry is how long a failed round (etcd, netlink) waits before the
// next attempt when nothing else changes.
const healthRetry = 5 * time.Second

// healthIfPrefix starts the datapath end's name: "nhm" + 12 hex digits of
// the router id (15 characters, the kernel's limit).
const healthIfPrefix = "nhm"

func healthIfName(routerID string) string {
	return healthIfPrefix + strings.ReplaceAll(routerID, "-", "")[:12]
}

// lbHealth is the agent's health-check state. Only runHealth's goroutine
// touches it, except the scheduler hooks, which take mu.
type lbHealth struct {
	a       *Agent
	routers map[string]*hmRouter // routers whose checks run here

	mu      sync.Mutex
	alive   map[string]bool   // host id → alive
	want    map[string]string // member id → status this agent is responsible for
	written map[string]writtenStatus
	dirty   bool
	retryAt time.Time     // a round failed: run again then, even without changes
	kick    chan struct{} // a status changed: write it now

	checks      *prometheus.CounterVec
	transitions *prometheus.CounterVec
}

type writtenStatus struct {
	status string
	lease  clientv3.LeaseID
}

// hmRouter is one router's checking here: its namespace and veth, and the
// scheduler of its members' checks.
type hmRouter struct {
	ifname string
	ns     netns.NsHandle
	sched  *health.Scheduler
	cancel context.CancelFunc
}

// hmPlan is what one round decides from the topology and liveness.
type hmPlan struct {
	targets map[string][]health.Target // router id → members to check (owned routers with monitors)
	status  map[string]string          // member id → no_monitor, for owned routers
	ports   map[string]*model.Port     // router id → its health-check port(s), first kept
	extra   []*model.Port              // duplicate health-check ports to remove
	routes  map[string]bool            // port id → has its route
	owned   map[string]bool            // router id → responsible here
}

// runHealth runs health checking until ctx is done.
func (a *Agent) runHealth(ctx context.Context) error {
	h := &lbHealth{a: a, routers: map[string]*hmRouter{}, alive: map[string]bool{},
		want: map[string]string{}, written: map[string]writtenStatus{}, kick: make(chan struct{}, 1)}
	h.checks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_health_checks_total",
		Help: "Health checks of load balancer members run by this agent, by result."}, []string{"result"})
	h.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_health_transitions_total",
		Help: "Changes of a member's health status seen by this agent, by new status."}, []string{"status"})
	a.met.reg.MustRegister(h.checks, h.transitions)
	defer h.shutdown()

	livec := make(chan error, 1)
	go func() {
		livec <- a.store.WatchHostLiveness(ctx, func(l nsdb.Liveness) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if l.Reset {
				clear(h.alive)
			}
			for id, alive := range l.Alive {
				if alive {
					h.alive[id] = true
				} else {
					delete(h.alive, id)
				}
			}
			h.dirty = true
			return nil
		})
	}()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-livec:
			return fmt.Errorf("host liveness watch: %w", err)
		case <-t.C:
		case <-h.kick:
		}
		v := a.view.Load().version
		h.mu.Lock()
		dirty := h.dirty || v != seen || (!h.retryAt.IsZero() && time.Now().After(h.retryAt))
		h.dirty = false
		h.mu.Unlock()
		if dirty {
			seen = v
			h.reconcile(ctx)
		}
		h.writeStatuses(ctx)
	}
}

// rendezvous returns the host responsible for key among hosts: the one with
// the highest hash of (key, host). When a host dies only its keys move.
func rendezvous(key string, hosts []string) string {
	var best string
	var bestScore uint64
	for _, h := range hosts {
		f := fnv.New64a()
		f.Write([]byte(key))
		f.Write([]byte{0})
		f.Write([]byte(h))
		s := mix64(f.Sum64())
		if best == "" || s > bestScore || (s == bestScore && h < best) {
			best, bestScore = h, s
		}
	}
	return best
}

// mix64 is splitmix64's finalizer: FNV alone spreads similar keys badly.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// plan reads the topology mirror and decides what this agent must do.
func (h *lbHealth) plan() *hmPlan {
	a := h.a
	h.mu.Lock()
	hosts := make([]string, 0, len(h.alive))
	for id := range h.alive {
		hosts = append(hosts, id)
	}
	h.mu.Unlock()
	slices.Sort(hosts)

	p := &hmPlan{targets: map[string][]health.Target{}, status: map[string]string{},
		ports: map[string]*model.Port{}, routes: map[string]bool{}, owned: map[string]bool{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	var routers []*model.Router
	lbs := map[string]*model.LoadBalancer{}
	monitors := map[string]*model.HealthMonitor{}
	pools := map[string][]*model.Pool{}         // lb id → pools
	members := map[string][]*model.PoolMember{} // pool id → members
	for _, o := range a.objs {
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
		case *model.Port:
			if x.RouterID != "" && x.Address == healthPortAddr && x.Network == healthNet {
				if cur := p.ports[x.RouterID]; cur == nil || x.ID < cur.ID {
					if cur != nil {
						p.extra = append(p.extra, cur)
					}
					p.ports[x.RouterID] = x
				} else {
					p.extra = append(p.extra, x)
				}
			}
		case *model.Route:
			if x.Dst == healthNet && x.PortID != "" {
				p.routes[x.PortID] = true
			}
		}
	}
	for _, r := range routers {
		if rendezvous(r.ID, hosts) != a.hostID {
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
				a.log.Warn("health monitor not usable; its members are not checked", "health_monitor", m.ID, "err", err)
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
func (h *lbHealth) reconcile(ctx context.Context) {
	a := h.a
	h.retryAt = time.Time{}
	failed := func() { h.retryAt = time.Now().Add(healthRetry) }
	p := h.plan()
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
			a.log.Warn("health-check port", "router", rid, "err", err)
			failed()
			continue
		}
		r := h.routers[rid]
		if r == nil {
			var err error
			if r, err = h.startRouter(ctx, rid); err != nil {
				a.log.Warn("health-check namespace", "router", rid, "err", err)
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
	dropped := map[string]writtenStatus{}
	for id, w := range h.written {
		if _, ok := want[id]; !ok {
			dropped[id] = w
			delete(h.written, id)
		}
	}
	h.want = want
	h.mu.Unlock()
	// Statuses of members no longer ours are taken back, unless another
	// agent has already written its own (another lease).
	for id, w := range dropped {
		key := nsdb.MemberStatusKey(id)
		_, err := a.cli.Txn(ctx).If(clientv3.Compare(clientv3.LeaseValue(key), "=", w.lease)).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			a.log.Warn("take back member status", "member", id, "err", err)
		}
	}
}

// writeStatuses writes the statuses not yet written under the current
// lease (new, changed, or lost with a previous lease).
func (h *lbHealth) writeStatuses(ctx context.Context) {
	lease := h.a.currentLease()
	h.mu.Lock()
	todo := map[string]string{}
	for id, st := range h.want {
		if w, ok := h.written[id]; !ok || w.status != st || w.lease != lease {
			todo[id] = st
		}
	}
	h.mu.Unlock()
	for id, st := range todo {
		err := h.a.store.PutMemberStatus(ctx, id, st, lease)
		if errors.Is(err, model.ErrNotFound) {
			h.mu.Lock()
			delete(h.want, id) // deleted member: the next plan forgets it
			h.mu.Unlock()
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				h.a.log.Warn("write member status", "member", id, "status", st, "err", err)
			}
			continue
		}
		h.mu.Lock()
		h.written[id] = writtenStatus{st, lease}
		h.mu.Unlock()
	}
}

// changed is the schedulers' transition hook.
func (h *lbHealth) changed(t health.Target, from, to health.Status, err error) {
	st := model.MemberUp
	if to == health.Down {
		st = model.MemberDown
	}
	h.transitions.WithLabelValues(st).Inc()
	h.a.log.Info("pool member health changed", "member", t.ID, "address", t.Addr, "from", from, "to", to, "check_err", err)
	h.mu.Lock()
	h.want[t.ID] = st
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *lbHealth) checked(_ health.Target, err error) {
	if err != nil {
		h.checks.WithLabelValues("failed").Inc()
	} else {
		h.checks.WithLabelValues("ok").Inc()
	}
}

// ensurePort creates the router's health-check port and route, or binds
// the existing port to this host.
func (h *lbHealth) ensurePort(ctx context.Context, routerID string, p *hmPlan) error {
	a := h.a
	ifname := healthIfName(routerID)
	port := p.ports[routerID]
	if port == nil {
		o, err := a.store.Create(ctx, &model.Port{RouterID: routerID, Address: healthPortAddr, Network: healthNet,
			HostID: a.hostID, InterfaceName: ifname})
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		port = o.(*model.Port)
		a.log.Info("health-check port created", "router", routerID, "port", port.ID, "interface", ifname)
	} else if port.HostID != a.hostID || port.InterfaceName != ifname {
		_, err := a.store.Modify(ctx, model.PortKind, port.ID, 0, func(o model.Object) error {
			x := o.(*model.Port)
			x.HostID, x.InterfaceName = a.hostID, ifname
			return nil
		})
		if err != nil {
			return fmt.Errorf("bind port %s: %w", port.ID, err)
		}
		a.log.Info("health-check port bound here", "router", routerID, "port", port.ID, "interface", ifname)
	}
	if !p.routes[port.ID] {
		_, err := a.store.Create(ctx, &model.Route{RouterID: routerID, Dst: healthNet, PortID: port.ID})
		if err != nil {
			return fmt.Errorf("create route to %s: %w", healthNet, err)
		}
	}
	return nil
}

func (h *lbHealth) removePort(ctx context.Context, port *model.Port) bool {
	err := h.a.store.Remove(ctx, model.PortKind, port.ID, 0)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		h.a.log.Warn("remove health-check port", "router", port.RouterID, "port", port.ID, "err", err)
		return false
	}
	h.a.log.Info("health-check port removed", "router", port.RouterID, "port", port.ID)
	return true
}

// startRouter creates the check namespace and its veth to the datapath's
// namespace, and a scheduler dialing from it.
func (h *lbHealth) startRouter(ctx context.Context, routerID string) (*hmRouter, error) {
	a := h.a
	ifname := healthIfName(routerID)
	dpNS, err := h.datapathNS()
	if err != nil {
		return nil, err
	}
	defer dpNS.Close()
	dp, err := netlink.NewHandleAt(dpNS)
	if err != nil {
		return nil, fmt.Errorf("netlink in the datapath namespace: %w", err)
	}
	defer dp.Close()
	if old, err := dp.LinkByName(ifname); err == nil {
		_ = dp.LinkDel(old) // a leftover of an earlier run of this router's checks
	}
	ns, err := health.NewNamespace()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			ns.Close()
		}
	}()
	la := netlink.NewLinkAttrs()
	la.Name = ifname
	if err := dp.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", ifname, err)
	}
	if err := health.InNamespace(dpNS, func() error { return disableIPv6(ifname) }); err != nil {
		a.log.Debug("disable IPv6 on the health-check veth", "interface", ifname, "err", err)
	}
	link, err := dp.LinkByName(ifname)
	if err == nil {
		err = dp.LinkSetUp(link)
	}
	if err != nil {
		_ = dp.LinkDel(link)
		return nil, fmt.Errorf("set %s up: %w", ifname, err)
	}
	if err := configureCheckNS(ns, a.cfg.UnderlayMTU-50); err != nil {
		_ = dp.LinkDel(link)
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	r := &hmRouter{ifname: ifname, ns: ns, cancel: cancel,
		sched: health.NewScheduler(sctx, health.DialIn(ns), health.Hooks{Checked: h.checked, Changed: h.changed})}
	ok = true
	a.log.Info("health checking started", "router", routerID, "interface", ifname)
	return r, nil
}

// configureCheckNS gives the namespace end its address and default route.
// Its offloads stay on: the datapath takes partial checksums and
// super-frames as from any VM.
func configureCheckNS(ns netns.NsHandle, mtu int) error {
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the health-check namespace: %w", err)
	}
	defer nh.Close()
	if err := health.InNamespace(ns, func() error { return disableIPv6("eth0") }); err != nil {
		return fmt.Errorf("health-check namespace eth0: %w", err)
	}
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("health-check namespace lo: %w", err)
	}
	eth, err := nh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("health-check namespace eth0: %w", err)
	}
	if mtu > 0 {
		if err := nh.LinkSetMTU(eth, mtu); err != nil {
			return fmt.Errorf("health-check namespace eth0 mtu %d: %w", mtu, err)
		}
	}
	addr := &netlink.Addr{IPNet: prefixIPNet(healthPeerAddr)}
	if err := nh.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("health-check namespace address %s: %w", healthPeerAddr, err)
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("health-check namespace eth0 up: %w", err)
	}
	gw := healthPortAddr.AsSlice()
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("health-check namespace default route via %s: %w", healthPortAddr, err)
	}
	return nil
}

// disableIPv6 keeps an interface's own stack quiet (no router
// solicitations, no MLD) on the virtual wire. Run inside its namespace.
func disableIPv6(ifname string) error {
	return os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644)
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func (h *lbHealth) datapathNS() (netns.NsHandle, error) {
	if h.a.cfg.Netns == "" {
		ns, err := netns.GetFromPid(os.Getpid()) // the process's, not a locked thread's
		if err != nil {
			return netns.None(), fmt.Errorf("open the agent's network namespace: %w", err)
		}
		return ns, nil
	}
	ns, err := netns.GetFromPath(h.a.cfg.Netns)
	if err != nil {
		return netns.None(), fmt.Errorf("open datapath namespace %s: %w", h.a.cfg.Netns, err)
	}
	return ns, nil
}

// stopRouter stops a router's checks and deletes its namespace and veth.
// The port and its binding stay: the next responsible agent rebinds them.
func (h *lbHealth) stopRouter(routerID string, r *hmRouter) {
	r.cancel()
	r.sched.Stop()
	if dpNS, err := h.datapathNS(); err == nil {
		if dp, err := netlink.NewHandleAt(dpNS); err == nil {
			if l, err := dp.LinkByName(r.ifname); err == nil {
				_ = dp.LinkDel(l)
			}
			dp.Close()
		}
		dpNS.Close()
	}
	r.ns.Close()
	delete(h.routers, routerID)
	h.a.log.Info("health checking stopped", "router", routerID, "interface", r.ifname)
}

func (h *lbHealth) shutdown() {
	for rid, r := range h.routers {
		h.stopRouter(rid, r)
	}
}
