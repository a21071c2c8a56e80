package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/agent"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// simHost is one simulated hypervisor: the real agent (agent.RunWith) on
// an in-memory datapath, in this process, on the shared in-memory
// underlay. Its datapath is watched (observedDP) to learn when the agent
// has bound a port, and when its topology has taken in a change (the
// mirror invalidates a changed object's tag after publishing the
// snapshot that has it: from then on its misses see the change).
type simHost struct {
	name     string
	index    int
	tunnelIP netip.Addr
	host     *memory.Host
	db       *nsdb.Store
	watch    *watchList
	leaseTTL time.Duration

	mu      sync.Mutex
	dp      *observedDP
	id      string
	cancel  context.CancelFunc
	done    chan error
	started time.Time
}

// watchList is what the benchmark waits for: ports to be bound and tags
// to be seen, each with the moment it happened, per host.
type watchList struct {
	mu      sync.Mutex
	bound   map[string]map[int]time.Time // port id → host index → when bound
	seen    map[uint64]map[int]time.Time // object tag → host index → when seen
	flushed map[int]time.Time            // host index → last reset snapshot (a full sync)
}

func newWatchList() *watchList {
	return &watchList{bound: map[string]map[int]time.Time{}, seen: map[uint64]map[int]time.Time{}, flushed: map[int]time.Time{}}
}

// expect starts recording when port id is bound and its tag seen.
func (w *watchList) expect(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bound[id] = map[int]time.Time{}
	w.seen[sim.ObjectTag(model.PortKind, id)] = map[int]time.Time{}
}

func (w *watchList) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.bound, id)
	delete(w.seen, sim.ObjectTag(model.PortKind, id))
}

func (w *watchList) boundAt(id string, host int) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.bound[id][host]
	return t, ok
}

// seenBy returns when each of hosts saw port id, and whether all did.
func (w *watchList) seenBy(id string, hosts []int) (last time.Time, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.seen[sim.ObjectTag(model.PortKind, id)]
	for _, h := range hosts {
		t, ok := m[h]
		if !ok {
			return time.Time{}, false
		}
		if t.After(last) {
			last = t
		}
	}
	return last, true
}

// observedDP is the agent's in-memory datapath with the benchmark's
// stopwatch on three calls; everything else is the datapath's own.
type observedDP struct {
	*memory.Datapath
	host  int
	watch *watchList
	ports atomic.Int64 // ports attached
}

func (d *observedDP) AddPort(cfg datapath.PortConfig) error {
	err := d.Datapath.AddPort(cfg)
	if err == nil {
		d.ports.Add(1)
		now := time.Now()
		d.watch.mu.Lock()
		if m := d.watch.bound[cfg.PortID]; m != nil {
			m[d.host] = now
		}
		d.watch.mu.Unlock()
	}
	return err
}

func (d *observedDP) RemovePort(id string) error {
	err := d.Datapath.RemovePort(id)
	if err == nil {
		d.ports.Add(-1)
	}
	return err
}

func (d *observedDP) Invalidate(tags ...uint64) int {
	n := d.Datapath.Invalidate(tags...)
	now := time.Now()
	d.watch.mu.Lock()
	for _, t := range tags {
		if m := d.watch.seen[t]; m != nil {
			if _, ok := m[d.host]; !ok {
				m[d.host] = now
			}
		}
	}
	d.watch.mu.Unlock()
	return n
}

func (d *observedDP) Flush() int {
	n := d.Datapath.Flush()
	d.watch.mu.Lock()
	d.watch.flushed[d.host] = time.Now()
	d.watch.mu.Unlock()
	return n
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// agentLog is where the simulated hypervisors' agents log their warnings
// (one file for all, each line with its host).
var agentLog = quietLog

// start runs the host's agent until stop; it returns once the host is
// registered.
func (h *simHost) start(ctx context.Context) error {
	dp := &observedDP{Datapath: memory.New(datapath.Config{Logger: quietLog}, h.host), host: h.index, watch: h.watch}
	actx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	h.mu.Lock()
	h.dp, h.cancel, h.done, h.started = dp, cancel, done, time.Now()
	h.mu.Unlock()
	cfg := agent.Config{HostName: h.name, TunnelIP: h.tunnelIP, Datapath: memory.Name, LeaseTTL: h.leaseTTL,
		Log: agentLog.With("host", h.name)}
	go func() { // owned: stop waits for done
		done <- agent.RunWith(actx, cfg, agent.Options{Datapath: dp, NSDB: h.db, Registerer: prometheus.NewRegistry(),
			Ready: func(id string) { ready <- id }})
	}()
	select {
	case id := <-ready:
		h.mu.Lock()
		h.id = id
		h.mu.Unlock()
		return nil
	case err := <-done:
		cancel()
		return fmt.Errorf("agent %s: %v", h.name, err)
	case <-time.After(5 * time.Minute):
		cancel()
		return fmt.Errorf("agent %s did not register in 5 minutes", h.name)
	}
}

// stop ends the agent and waits for it.
func (h *simHost) stop() error {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		return fmt.Errorf("agent %s did not stop within a minute", h.name)
	}
}

func (h *simHost) attached() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dp.ports.Load()
}

// tunnelIPOf is host i's underlay address, in 10.128.0.0/9.
func tunnelIPOf(i int) netip.Addr {
	i++
	return netip.AddrFrom4([4]byte{10, 128 + byte(i>>16), byte(i >> 8), byte(i)})
}
