package ui

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/nsdb"
)

// History: every agent publishes its datapath status into the NSDB (flows,
// hits, misses, drops by reason, the flow-state table: the values of its
// Prometheus counters) when its ports change, every 30 s when only its
// counters do, and when a reader asks — every 2 s while its host's page is
// open. The server samples those into one ring buffer per host, so a
// host's page opens on the last minutes rather than on an empty graph, and
// the server needs no route to every agent's metrics port.

// historyLen is how many samples a host keeps: ten minutes while its page
// is open, two and a half hours of the agents' 30 s otherwise.
const historyLen = 300

// historyKeep is how long a host's history outlives its last sample (the
// page of a dead host still shows how it died).
const historyKeep = 15 * time.Minute

// Sample is one status of one host, reduced to what the graphs plot.
type Sample struct {
	T                time.Time
	Flows            float64
	Hits, Misses     float64
	Lost             float64
	Installed        float64
	Invalidated      float64
	TunnelRx         float64
	TunnelTx         float64
	Drops            map[string]float64 // "datapath: reason", "simulation: reason", "agent: reason"
	FlowStateEntries float64
	NATPortsInUse    float64
	StateRefused     float64 // flow-state entries refused: table or zone full
}

func sampleOf(st *nsdb.DatapathStatus) Sample {
	s := Sample{T: st.Updated, Flows: float64(st.Flows), Hits: float64(st.Hits), Misses: float64(st.Misses),
		Lost: float64(st.Lost), Installed: float64(st.FlowsInstalled), Invalidated: float64(st.FlowsInvalidated),
		TunnelRx: float64(st.VXLAN.RxPackets + st.GRE.RxPackets), TunnelTx: float64(st.VXLAN.TxPackets + st.GRE.TxPackets),
		Drops: map[string]float64{}}
	for _, d := range []struct {
		prefix string
		m      map[string]uint64
	}{{"datapath: ", st.Drops}, {"simulation: ", st.SimulationDrops}, {"agent: ", st.AgentDrops}} {
		for r, n := range d.m {
			s.Drops[d.prefix+r] = float64(n)
		}
	}
	if fs := st.FlowState; fs != nil {
		s.FlowStateEntries, s.NATPortsInUse = float64(fs.Entries), float64(fs.PortsInUse)
		s.StateRefused = float64(fs.RefusedFull + fs.RefusedZoneFull)
	}
	return s
}

// ring is one host's samples, oldest first once full.
type ring struct {
	buf  []Sample
	next int
	full bool
}

func (r *ring) add(s Sample) {
	if len(r.buf) < historyLen {
		r.buf = append(r.buf, s)
		return
	}
	r.buf[r.next] = s
	r.next = (r.next + 1) % historyLen
	r.full = true
}

func (r *ring) samples() []Sample {
	if !r.full {
		return append([]Sample(nil), r.buf...)
	}
	return append(append([]Sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

func (r *ring) last() (Sample, bool) {
	if len(r.buf) == 0 {
		return Sample{}, false
	}
	if !r.full {
		return r.buf[len(r.buf)-1], true
	}
	return r.buf[(r.next+historyLen-1)%historyLen], true
}

// history is every host's ring and last status.
type history struct {
	mu     sync.Mutex
	hosts  map[string]*ring
	status map[string]*nsdb.DatapathStatus // the last published; nil once its agent's lease ended
	now    func() time.Time
}

func newHistory() *history {
	return &history{hosts: map[string]*ring{}, status: map[string]*nsdb.DatapathStatus{}, now: time.Now}
}

func (h *history) run(ctx context.Context, store *nsdb.Store) error {
	return store.WatchDatapathStatus(ctx, func(b nsdb.DatapathStatusBatch) error {
		h.apply(b)
		return nil
	})
}

func (h *history) apply(b nsdb.DatapathStatusBatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.Reset {
		for id := range h.status {
			if _, ok := b.Status[id]; !ok {
				h.status[id] = nil
			}
		}
	}
	for id, st := range b.Status {
		h.status[id] = st
		if st == nil {
			continue
		}
		r := h.hosts[id]
		if r == nil {
			r = &ring{}
			h.hosts[id] = r
		}
		// A status is republished as is after a watch resumes: one sample
		// per publication.
		if last, ok := r.last(); !ok || st.Updated.After(last.T) {
			r.add(sampleOf(st))
		}
	}
	cutoff := h.now().Add(-historyKeep)
	for id, r := range h.hosts {
		if last, ok := r.last(); ok && last.T.Before(cutoff) && h.status[id] == nil {
			delete(h.hosts, id)
			delete(h.status, id)
		}
	}
}

// Point is one [unix milliseconds, value] of a series.
type Point [2]float64

// Series are a host's graphs: gauges as sampled, counters as per-second
// rates between consecutive samples.
type Series map[string][]Point

// hostHistory returns a host's series and its last status (nil when its
// agent is not running).
func (h *history) hostHistory(id string) (Series, *nsdb.DatapathStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var samples []Sample
	if r := h.hosts[id]; r != nil {
		samples = r.samples()
	}
	return seriesOf(samples), h.status[id]
}

// seriesOf turns samples into graphs. A counter that went down (the agent
// restarted and counts from zero again) has no rate for that interval, so
// a restart shows as a gap rather than a huge negative spike.
func seriesOf(samples []Sample) Series {
	out := Series{}
	gauge := func(name string, v float64, t time.Time) {
		out[name] = append(out[name], Point{float64(t.UnixMilli()), v})
	}
	rate := func(name string, prev, cur float64, dt float64, t time.Time) {
		if _, ok := out[name]; !ok {
			out[name] = []Point{}
		}
		if cur < prev || dt <= 0 {
			return
		}
		out[name] = append(out[name], Point{float64(t.UnixMilli()), (cur - prev) / dt})
	}
	for i, s := range samples {
		gauge("flows", s.Flows, s.T)
		gauge("flow_state_entries", s.FlowStateEntries, s.T)
		gauge("nat_ports_in_use", s.NATPortsInUse, s.T)
		if i == 0 {
			continue
		}
		p := samples[i-1]
		dt := s.T.Sub(p.T).Seconds()
		rate("hits_per_s", p.Hits, s.Hits, dt, s.T)
		rate("misses_per_s", p.Misses, s.Misses, dt, s.T)
		rate("lost_per_s", p.Lost, s.Lost, dt, s.T)
		rate("flows_installed_per_s", p.Installed, s.Installed, dt, s.T)
		rate("flows_invalidated_per_s", p.Invalidated, s.Invalidated, dt, s.T)
		rate("tunnel_rx_per_s", p.TunnelRx, s.TunnelRx, dt, s.T)
		rate("tunnel_tx_per_s", p.TunnelTx, s.TunnelTx, dt, s.T)
		rate("flow_state_refused_per_s", p.StateRefused, s.StateRefused, dt, s.T)
		reasons := make([]string, 0, len(s.Drops))
		for r := range s.Drops {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			rate("drops_per_s: "+r, p.Drops[r], s.Drops[r], dt, s.T)
		}
	}
	return out
}
