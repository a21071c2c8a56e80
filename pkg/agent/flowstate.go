package agent

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// Connection tracking and NAT state, MidoNet's way (midonet.md §6-7): the
// host where a connection's first packet enters simulates it, commits the
// state to its table (the simulation does, through sim.Config.FlowState),
// and pushes the new entries to the hosts that may see the replies before
// it forwards the packet. Those hosts import them, so a reply entering
// anywhere is reverse-translated and recognized locally.

const (
	// sweepEvery is how often expired entries are removed and the flows
	// that read them invalidated.
	sweepEvery = time.Second
	// sweepBudget bounds the entries one sweep removes, so a mass expiry
	// does not hold the table's lock for long; the rest wait a second.
	sweepBudget = 1 << 16
	// touchEvery is how often the entries of flows still hitting are
	// refreshed, at most: well under the shortest timeout (TCP closed,
	// 10 s, by default; touchPeriod shortens it for shorter timeouts).
	touchEvery = 2 * time.Second
	// maxStatePeers bounds the hosts one connection's state is pushed to.
	maxStatePeers = 32
	// maxStateInvalidate is the most tags one state packet invalidates
	// at once (two per entry).
	maxStateInvalidate = 2 * flowstate.MaxWireEntries
)

// stateCounters count flow-state packets (metrics and status).
type stateCounters struct {
	sent, sendErrors, received, malformed, importRefused atomic.Uint64
	touched                                              atomic.Uint64 // entries refreshed for live flows
}

func (a *Agent) newFlowState() *flowstate.Table {
	return flowstate.New(flowstate.Config{MaxEntries: a.cfg.ConntrackMax, MaxPerZone: a.cfg.ConntrackZoneMax,
		Timeouts: a.cfg.ConntrackTimeouts, Blocks: a.blocks})
}

// pushState sends the entries a walk created to every other host that may
// see the connection's replies: the hosts the packet is tunnelled to, and
// the hosts of the ports of stateful port groups that hold the ingress or
// an egress port (several uplinks on several gateways: a reply may come
// back through any of them). It runs before the packet is forwarded, and
// the state goes out on the tunnel socket the packet then takes, so it
// arrives first. It also invalidates local flows decided while the state
// was missing.
func (a *Agent) pushState(v *view, w *worker, ingress string, res *sim.Result, acts []flow.Action) {
	entries := res.StateEntries()
	tags := w.stateTags[:0]
	for i := range entries {
		tags = append(tags, entries[i].Rev.Tag(), entries[i].Fwd.Tag())
	}
	w.stateTags = tags
	a.met.flowsInvalidated.Add(float64(a.dp.Invalidate(tags...)))

	var peers [maxStatePeers]netip.Addr
	n := 0
	add := func(p netip.Addr) {
		if !p.IsValid() || n == len(peers) {
			return
		}
		for _, q := range peers[:n] {
			if q == p {
				return
			}
		}
		peers[n] = p
		n++
	}
	for _, p := range v.statefulPeers[ingress] {
		add(p)
	}
	for i := range acts {
		switch acts[i].Type {
		case flow.ActEncap:
			add(acts[i].Underlay)
			fallthrough
		case flow.ActOutput:
			for _, p := range v.statefulPeers[acts[i].PortID] {
				add(p)
			}
		}
	}
	if n == 0 {
		return
	}
	b, err := flowstate.AppendStatePacket(w.stateBuf[:0], entries)
	if err != nil {
		return // more than MaxWireEntries: cannot happen (MaxTxEntries)
	}
	w.stateBuf = b
	for _, p := range peers[:n] {
		if err := a.dp.SendState(p, b); err != nil {
			a.state.sendErrors.Add(1)
			continue
		}
		a.state.sent.Add(1)
	}
}

// receiveState imports the entries of a peer's state packet and
// invalidates the flows decided without them (a reply that raced the
// state, or a drop flow installed before the connection existed). A
// malformed packet imports nothing and is counted.
func (a *Agent) receiveState(from netip.Addr, payload []byte) {
	bp := stateTagPool.Get().(*[]uint64)
	if tags := a.importState(from, payload, (*bp)[:0]); len(tags) > 0 {
		a.met.flowsInvalidated.Add(float64(a.dp.Invalidate(tags...)))
		*bp = tags
	}
	stateTagPool.Put(bp)
}

// stateTagPool holds the tag buffers of receiveState, which runs on the
// tunnel receivers' goroutines.
var stateTagPool = sync.Pool{New: func() any { b := make([]uint64, 0, maxStateInvalidate); return &b }}

// importState imports the entries of a state packet and appends the tags
// of those it took to tags.
func (a *Agent) importState(from netip.Addr, payload []byte, tags []uint64) []uint64 {
	var buf [16]flowstate.Entry
	entries, err := flowstate.DecodeStatePacket(payload, buf[:0])
	if err != nil {
		a.state.malformed.Add(1)
		a.log.Debug("malformed flow-state packet", "from", from, "err", err)
		return tags
	}
	a.state.received.Add(1)
	now := time.Now().UnixNano()
	for i := range entries {
		if err := a.fs.Import(&entries[i], now); err != nil {
			a.state.importRefused.Add(1)
			continue
		}
		tags = append(tags, entries[i].Rev.Tag(), entries[i].Fwd.Tag())
	}
	return tags
}

// sweepState removes expired entries every sweepEvery and invalidates the
// flows that read them, so those flows re-simulate. Before that, every
// touchPeriod, it refreshes the entries of flows still hitting, which the
// simulation does not see: a live connection's entries never expire.
func (a *Agent) sweepState(ctx context.Context) error {
	touch := a.touchPeriod()
	t := time.NewTicker(min(sweepEvery, touch))
	defer t.Stop()
	var tags []uint64
	lastTouch := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now := time.Now()
		// Half a period of slack: a tick that comes a little early must
		// not push the touch a whole tick later.
		if now.Sub(lastTouch) >= touch/2 {
			a.touchLiveFlows(lastTouch, now)
			lastTouch = now
		}
		tags, _ = a.fs.Sweep(now.UnixNano(), sweepBudget, tags[:0])
		if len(tags) > 0 {
			a.met.flowsInvalidated.Add(float64(a.dp.Invalidate(tags...)))
		}
		if cap(tags) > 4*sweepBudget {
			tags = nil // a burst's buffer is not kept forever
		}
	}
}

// touchPeriod is how often live flows' entries are refreshed: touchEvery,
// or a quarter of the shortest configured timeout if that is less, so
// that an entry is touched several times within its lifetime.
func (a *Agent) touchPeriod() time.Duration {
	d, c := flowstate.DefaultTimeouts(), a.cfg.ConntrackTimeouts
	shortest := touchEvery * 4
	for _, v := range [][2]time.Duration{{c.TCPSynSent, d.TCPSynSent}, {c.TCPEstablished, d.TCPEstablished},
		{c.TCPFinWait, d.TCPFinWait}, {c.TCPTimeWait, d.TCPTimeWait}, {c.TCPClosed, d.TCPClosed},
		{c.UDPNew, d.UDPNew}, {c.UDPEstablished, d.UDPEstablished}, {c.ICMPNew, d.ICMPNew},
		{c.ICMPReplied, d.ICMPReplied}, {c.OtherNew, d.OtherNew}, {c.OtherReplied, d.OtherReplied}} {
		if v[0] <= 0 {
			v[0] = v[1]
		}
		shortest = min(shortest, v[0])
	}
	return max(min(touchEvery, shortest/4), 100*time.Millisecond)
}

// touchLiveFlows refreshes the state keys of the flows used since since.
func (a *Agent) touchLiveFlows(since, now time.Time) {
	ns := now.UnixNano()
	a.dp.Flows(func(f *datapath.FlowInfo) {
		if len(f.State) == 0 || f.LastUsed.Before(since) {
			return
		}
		for i := range f.State {
			if a.fs.Touch(&f.State[i], ns) {
				a.state.touched.Add(1)
			}
		}
	})
}

// dpHandler is what the datapath calls: misses, and flow-state packets.
type dpHandler struct{ a *Agent }

func (h dpHandler) Miss(u *datapath.Upcall)               { h.a.miss(u) }
func (h dpHandler) State(from netip.Addr, payload []byte) { h.a.receiveState(from, payload) }

// fsCollector exports the flow-state table's counters at scrape time.
type fsCollector struct{ a *Agent }

var (
	descFSEntries   = prometheus.NewDesc("nagare_flowstate_entries", "Connection-tracking and NAT entries in the table.", nil, nil)
	descFSMax       = prometheus.NewDesc("nagare_flowstate_max_entries", "Bound of the table (--conntrack-max).", nil, nil)
	descFSZones     = prometheus.NewDesc("nagare_flowstate_zones", "Zones (devices) with entries.", nil, nil)
	descFSRefused   = prometheus.NewDesc("nagare_flowstate_refused_total", "Entries refused, by reason: full (--conntrack-max), zone-full (--conntrack-zone-max), exists (a key clash).", []string{"reason"}, nil)
	descFSInserted  = prometheus.NewDesc("nagare_flowstate_inserted_total", "Entries created by simulations on this host.", nil, nil)
	descFSImported  = prometheus.NewDesc("nagare_flowstate_imported_total", "Entries imported from peers' state packets (new or refreshed) and restored.", nil, nil)
	descFSExpired   = prometheus.NewDesc("nagare_flowstate_expired_total", "Entries removed because their lifetime ran out.", nil, nil)
	descFSPorts     = prometheus.NewDesc("nagare_flowstate_nat_ports_in_use", "SNAT ports held by this host's bindings.", nil, nil)
	descFSBlocks    = prometheus.NewDesc("nagare_flowstate_nat_blocks_leased", "NAT port blocks this host holds.", nil, nil)
	descFSExhausted = prometheus.NewDesc("nagare_flowstate_nat_ports_exhausted_total", "SNAT allocations that found no free port.", nil, nil)
	descFSPackets   = prometheus.NewDesc("nagare_flowstate_packets_total", "Flow-state packets, by event: sent, send-error, received, malformed.", []string{"event"}, nil)
	descFSImportRef = prometheus.NewDesc("nagare_flowstate_import_refused_total", "Entries of peers' state packets the table refused (full, zone full, clash).", nil, nil)
)

func (c *fsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFSEntries, descFSMax, descFSZones, descFSRefused, descFSInserted, descFSImported,
		descFSExpired, descFSPorts, descFSBlocks, descFSExhausted, descFSPackets, descFSImportRef} {
		ch <- d
	}
}

func (c *fsCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	if a.fs == nil {
		return
	}
	s := a.fs.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	k := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(descFSEntries, float64(s.Entries))
	g(descFSMax, float64(a.fsMax()))
	g(descFSZones, float64(s.Zones))
	k(descFSRefused, s.RefusedFull, "full")
	k(descFSRefused, s.RefusedZoneFull, "zone-full")
	k(descFSRefused, s.RefusedExists, "exists")
	k(descFSInserted, s.Inserted)
	k(descFSImported, s.Imported)
	k(descFSExpired, s.Expired)
	g(descFSPorts, float64(s.PortsInUse))
	g(descFSBlocks, float64(s.BlocksLeased))
	k(descFSExhausted, s.PortsExhausted)
	k(descFSPackets, a.state.sent.Load(), "sent")
	k(descFSPackets, a.state.sendErrors.Load(), "send-error")
	k(descFSPackets, a.state.received.Load(), "received")
	k(descFSPackets, a.state.malformed.Load(), "malformed")
	k(descFSImportRef, a.state.importRefused.Load())
}

// fsMax and fsZoneMax are the table's bounds as configured.
func (a *Agent) fsMax() int {
	if a.cfg.ConntrackMax > 0 {
		return a.cfg.ConntrackMax
	}
	return flowstate.DefaultMaxEntries
}

func (a *Agent) fsZoneMax() int {
	z := a.cfg.ConntrackZoneMax
	if z <= 0 {
		z = flowstate.DefaultMaxPerZone
	}
	return min(z, a.fsMax())
}

// flowStateStatus is the table's part of the published datapath status.
func (a *Agent) flowStateStatus() *nsdb.FlowStateStatus {
	if a.fs == nil {
		return nil
	}
	s := a.fs.Stats()
	return &nsdb.FlowStateStatus{Entries: s.Entries, Zones: s.Zones, MaxEntries: a.fsMax(), MaxPerZone: a.fsZoneMax(),
		RefusedFull: s.RefusedFull, RefusedZoneFull: s.RefusedZoneFull, RefusedExists: s.RefusedExists,
		Imported: s.Imported, Expired: s.Expired, PortsInUse: s.PortsInUse, BlocksLeased: s.BlocksLeased,
		PortsExhausted: s.PortsExhausted, StateSent: a.state.sent.Load(), StateReceived: a.state.received.Load(),
		StateMalformed: a.state.malformed.Load()}
}
