package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/nagare/nagare/internal/etcdcluster"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// ScaleConfig is the control-plane scale benchmark (`nagare-bench scale`):
// one nagare-server process and Hosts simulated hypervisors — the real
// agent on the in-memory datapath, all in this process — holding Ports
// ports on Bridges bridges between them, as ovn-heater's density tests
// do (port i on host i mod Hosts and bridge i mod Bridges).
type ScaleConfig struct {
	Hosts, Ports, Bridges int
	// Samples are the last ports, created one at a time and timed; the
	// others fill the topology first, FillClients at a time.
	Samples, FillClients int
	// Cluster is 0 for nagare-server's embedded etcd, else the members of
	// an external etcd cluster (Debian's etcd) the server and agents use.
	Cluster int
	// EtcdClients is how many etcd connections the agents share: 0 gives
	// every agent its own, as real hypervisors have.
	EtcdClients int
	// LeaseTTL is the agents' liveness lease. Real hypervisors each have
	// their own CPUs; here every agent shares this machine's, and a
	// keepalive starved while hundreds of agents sync would lose a lease
	// the default 3 s allows for.
	LeaseTTL time.Duration
	// Restarts agents are restarted one after another to time full syncs.
	Restarts  int
	ServerBin string // nagare-server
	Dir       string // scratch space (default a new temporary directory)
	// CPUProfile and HeapProfile, if set, get this process's CPU profile
	// of the agents' start and first sync and its heap profile after the
	// samples.
	CPUProfile, HeapProfile string
}

// Percentiles summarise latencies.
type Percentiles struct{ P50, P99, Max time.Duration }

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return Percentiles{P50: s[len(s)/2], P99: s[min(len(s)-1, len(s)*99/100)], Max: s[len(s)-1]}
}

// ScaleResult is what the scale benchmark measured.
type ScaleResult struct {
	Config ScaleConfig
	Setup  time.Duration // agents registered and the topology filled
	// API is a sample port's create call; Local is create → bound on its
	// host; Peers is create → in the topology of every host with a port
	// on its bridge (the hosts that tunnel to it), and Everyone of every
	// host.
	API, Local, Peers, Everyone Percentiles
	PeersPerPort                float64
	// TrafficOK of Traffic sample ports got a broadcast through to a
	// peer VM on another host once ready.
	Traffic, TrafficOK int
	// FullSync: a restarted agent, from start to its topology loaded
	// (Topology) and to every port of its host bound (Bound).
	FullSyncTopology, FullSyncBound Percentiles
	Etcd                            EtcdLoad
	// Processes' CPU (cores, averaged over the sample phase) and memory.
	Server, EtcdMembers, Agents ProcUsage
	AgentHeap                   uint64 // Go heap in use by this process (agents and the benchmark)
}

// ProcUsage is a process's (or a group's) CPU and resident memory.
type ProcUsage struct {
	CPU float64 // cores
	RSS uint64  // bytes, now
	HWM uint64  // bytes, peak
}

// RunScale runs the scale benchmark.
func RunScale(ctx context.Context, cfg ScaleConfig, logf func(string, ...any)) (*ScaleResult, error) {
	if cfg.Hosts < 2 || cfg.Ports < cfg.Hosts || cfg.Bridges < 1 || cfg.Samples < 1 || cfg.Samples > cfg.Ports {
		return nil, fmt.Errorf("scale: want ≥ 2 hosts, ports ≥ hosts, ≥ 1 bridge and 1..ports samples")
	}
	cfg.FillClients = max(cfg.FillClients, 1)
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "nagare-bench-scale")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	res := &ScaleResult{Config: cfg}
	start := time.Now()
	// The agents' watches share what they decode: one copy of the
	// topology's objects in this process rather than one per agent (each
	// still decodes everything it receives). An agent's own structures
	// (its mirror's maps, its simulation topology) are its own.
	nsdb.ShareDecoded()
	logFile, err := os.Create(cfg.Dir + "/agents.log")
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	agentLog = slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn}))
	logf("agents log their warnings to %s", logFile.Name())

	var cluster *etcdcluster.Cluster
	if cfg.Cluster > 0 {
		if cluster, err = etcdcluster.Start(ctx, cfg.Dir+"/etcd", cfg.Cluster); err != nil {
			return nil, err
		}
		defer cluster.Stop()
		logf("external etcd: %d members %v", cfg.Cluster, cluster.Endpoints())
	}
	srv, err := startServerProcess(ctx, cfg.ServerBin, cfg.Dir+"/server", cluster)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	logf("nagare-server pid %d, API %s, etcd %v", srv.cmd.Process.Pid, srv.base, srv.etcd)
	api := newRESTClient(srv.base)

	hosts, closeDBs, err := newSimHosts(cfg, srv.etcd)
	if err != nil {
		return nil, err
	}
	defer closeDBs()
	defer func() {
		_ = parallel(context.Background(), 64, len(hosts), func(i int) error {
			if err := hosts[i].stop(); err != nil {
				logf("stop %s: %v", hosts[i].name, err)
			}
			return nil
		})
	}()
	s := &scaleRun{cfg: cfg, api: api, hosts: hosts, watch: hosts[0].watch, logf: logf, ctx: ctx}
	if err := s.setup(); err != nil {
		return nil, err
	}
	res.Setup = time.Since(start)
	logf("setup done in %s: %d agents, %d ports", res.Setup.Round(time.Millisecond), cfg.Hosts, cfg.Ports-cfg.Samples)

	etcdBefore, err := scrapeEtcd(ctx, srv.etcd)
	if err != nil {
		return nil, err
	}
	cpuBefore := map[string]float64{"server": procCPU(srv.cmd.Process.Pid), "self": procCPU(os.Getpid())}
	var etcdPids []int
	if cluster != nil {
		for i := range cluster.Size() {
			etcdPids = append(etcdPids, cluster.Pid(i))
		}
		cpuBefore["etcd"] = sumCPU(etcdPids)
	}
	t0 := time.Now()
	if err := s.samples(res); err != nil {
		return nil, err
	}
	elapsed := time.Since(t0).Seconds()
	etcdAfter, err := scrapeEtcd(ctx, srv.etcd)
	if err != nil {
		return nil, err
	}
	res.Etcd = etcdAfter.since(etcdBefore, elapsed)
	res.Server = ProcUsage{CPU: (procCPU(srv.cmd.Process.Pid) - cpuBefore["server"]) / elapsed}
	res.Server.RSS, res.Server.HWM = procMem(srv.cmd.Process.Pid)
	res.Agents = ProcUsage{CPU: (procCPU(os.Getpid()) - cpuBefore["self"]) / elapsed}
	res.Agents.RSS, res.Agents.HWM = procMem(os.Getpid())
	if cluster != nil {
		res.EtcdMembers.CPU = (sumCPU(etcdPids) - cpuBefore["etcd"]) / elapsed
		for _, p := range etcdPids {
			r, h := procMem(p)
			res.EtcdMembers.RSS += r
			res.EtcdMembers.HWM += h
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.AgentHeap = ms.HeapInuse
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return nil, err
		}
	}

	if err := s.restarts(res); err != nil {
		return nil, err
	}
	return res, nil
}

// newSimHosts makes the hypervisors (not started) and their NSDB
// connections.
func newSimHosts(cfg ScaleConfig, endpoints []string) ([]*simHost, func(), error) {
	nClients := cfg.EtcdClients
	if nClients <= 0 || nClients > cfg.Hosts {
		nClients = cfg.Hosts
	}
	var dbs []*nsdb.Store
	closeAll := func() {
		for _, db := range dbs {
			db.Close()
		}
	}
	for range nClients {
		db, err := nsdb.Dial(endpoints, nil)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		dbs = append(dbs, db)
	}
	hub, watch := memory.NewHub(), newWatchList()
	hosts := make([]*simHost, cfg.Hosts)
	for i := range hosts {
		hosts[i] = &simHost{name: fmt.Sprintf("hv%04d", i), index: i, tunnelIP: tunnelIPOf(i), host: memory.NewHost(hub),
			db: dbs[i%nClients], watch: watch, leaseTTL: cfg.LeaseTTL}
	}
	return hosts, closeAll, nil
}

// scaleRun is one run's state.
type scaleRun struct {
	ctx    context.Context
	cfg    ScaleConfig
	api    restClient
	hosts  []*simHost
	watch  *watchList
	logf   func(string, ...any)
	zone   string
	bridge []string
	// peers[b] are the hosts with a port on bridge b.
	peers [][]int
	// perHost[h] is how many ports host h binds.
	perHost []int
}

func (s *scaleRun) layout(i int) (host, bridge int) { return i % s.cfg.Hosts, i % s.cfg.Bridges }

func ifaceName(i int) string { return fmt.Sprintf("vm%06d", i) }

func portMAC(i int) packet.MAC {
	return packet.MAC{0x02, 0xbe, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func (s *scaleRun) setup() error {
	ctx, cfg := s.ctx, s.cfg
	var tz struct{ ID string }
	if _, err := s.api.call(ctx, "", "POST", "/api/v1/tunnel-zones", `{"name":"scale","type":"vxlan"}`, http.StatusCreated, &tz); err != nil {
		return err
	}
	s.zone = tz.ID
	for b := range cfg.Bridges {
		var br struct{ ID string }
		if _, err := s.api.call(ctx, "", "POST", "/api/v1/bridges", fmt.Sprintf(`{"name":"net%03d"}`, b), http.StatusCreated, &br); err != nil {
			return err
		}
		s.bridge = append(s.bridge, br.ID)
	}
	s.peers = make([][]int, cfg.Bridges)
	s.perHost = make([]int, cfg.Hosts)
	onBridge := make([]map[int]bool, cfg.Bridges)
	for i := range cfg.Ports {
		h, b := s.layout(i)
		if onBridge[b] == nil {
			onBridge[b] = map[int]bool{}
		}
		if !onBridge[b][h] {
			onBridge[b][h] = true
			s.peers[b] = append(s.peers[b], h)
		}
		s.perHost[h]++
	}
	// The VMs' interfaces exist before their ports are bound, as Nova
	// plugs a tap before it binds the port.
	for i := range cfg.Ports {
		h, _ := s.layout(i)
		if _, err := s.hosts[h].host.AddInterface(ifaceName(i)); err != nil {
			return err
		}
	}
	// The hosts, their tunnel-zone memberships and all but the sampled
	// ports exist before the agents start, as when hypervisors join (or
	// restart in) a running cloud: each agent's first sync is then the
	// whole topology at once.
	t := time.Now()
	if err := parallel(ctx, cfg.FillClients, cfg.Hosts, func(i int) error {
		h := s.hosts[i]
		var host struct{ ID string }
		if _, err := s.api.call(ctx, "", "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":%q,"addresses":[%q]}`, h.name, h.tunnelIP),
			http.StatusCreated, &host); err != nil {
			return err
		}
		h.id = host.ID
		_, err := s.api.call(ctx, "", "POST", "/api/v1/tunnel-zones/"+s.zone+"/tunnel-zone-members",
			fmt.Sprintf(`{"host_id":%q,"address":%q}`, h.id, h.tunnelIP), http.StatusCreated, nil)
		return err
	}); err != nil {
		return err
	}
	s.logf("%d hosts in the tunnel zone in %s", cfg.Hosts, time.Since(t).Round(time.Millisecond))
	t = time.Now()
	fill := cfg.Ports - cfg.Samples
	var done atomic.Int64
	stopProgress := s.progress("fill", &done, fill)
	err := parallel(ctx, cfg.FillClients, fill, func(i int) error {
		defer done.Add(1)
		return s.createPort(i, "")
	})
	stopProgress()
	if err != nil {
		return err
	}
	s.logf("%d ports created in %s (%.0f/s)", fill, time.Since(t).Round(time.Millisecond), float64(fill)/time.Since(t).Seconds())
	t = time.Now()
	stopProfile := func() {}
	if cfg.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
			return err
		}
	}
	defer stopProfile()
	var started atomic.Int64
	stopProgress = s.progress("agents started", &started, cfg.Hosts)
	// A few at a time: each lists the whole topology as it starts.
	err = parallel(ctx, 4, cfg.Hosts, func(i int) error {
		defer started.Add(1)
		return s.hosts[i].start(ctx)
	})
	stopProgress()
	if err != nil {
		return err
	}
	s.logf("%d agents registered in %s; waiting for their first sync", cfg.Hosts, time.Since(t).Round(time.Millisecond))
	if err := s.barrier(20 * time.Minute); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		missing := 0
		for h, host := range s.hosts {
			missing += s.boundBefore(h, fill) - int(host.attached())
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fill: %d ports still not bound after 10 minutes", missing)
		}
	}
	s.logf("every agent has the topology and its ports bound, %s after the first started", time.Since(t).Round(time.Millisecond))
	return nil
}

// boundBefore is how many of the first n ports host h binds.
func (s *scaleRun) boundBefore(h, n int) int {
	c := 0
	for i := h; i < n; i += s.cfg.Hosts {
		c++
	}
	return c
}

func (s *scaleRun) progress(what string, done *atomic.Int64, total int) (stop func()) {
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				s.logf("%s: %d of %d", what, done.Load(), total)
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// createPort creates port i bound to its host's interface, with id if
// given.
func (s *scaleRun) createPort(i int, id string) error {
	h, b := s.layout(i)
	body := fmt.Sprintf(`{"host_id":%q,"interface_name":%q,"mac":%q}`, s.hosts[h].id, ifaceName(i), portMAC(i))
	if id != "" {
		body = fmt.Sprintf(`{"id":%q,"host_id":%q,"interface_name":%q,"mac":%q}`, id, s.hosts[h].id, ifaceName(i), portMAC(i))
	}
	_, err := s.api.call(s.ctx, "", "POST", "/api/v1/bridges/"+s.bridge[b]+"/ports", body, http.StatusCreated, nil)
	return err
}

// barrier creates an unbound port and waits until every agent's topology
// has it: watches deliver in order, so every earlier change is in too. An
// agent whose first sync listed the port already never sees it change, so
// a barrier not seen by all within a few seconds is followed by another.
func (s *scaleRun) barrier(timeout time.Duration) error {
	all := make([]int, len(s.hosts))
	for i := range all {
		all[i] = i
	}
	deadline := time.Now().Add(timeout)
	for {
		id := uuid.NewString()
		s.watch.expect(id)
		if _, err := s.api.call(s.ctx, "", "POST", "/api/v1/bridges/"+s.bridge[0]+"/ports", fmt.Sprintf(`{"id":%q}`, id), http.StatusCreated, nil); err != nil {
			return err
		}
		seen := false
		for again := time.Now().Add(5 * time.Second); time.Now().Before(again) && !seen; time.Sleep(20 * time.Millisecond) {
			_, seen = s.watch.seenBy(id, all)
		}
		s.watch.forget(id)
		if _, err := s.api.call(s.ctx, "", "DELETE", "/api/v1/ports/"+id, "", http.StatusNoContent, nil); err != nil {
			return err
		}
		if seen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every agent caught up within %s", timeout)
		}
	}
}

// parallel runs f(0..n-1) on k goroutines; the first error stops it.
func parallel(ctx context.Context, k, n int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(k, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
