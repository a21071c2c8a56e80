// Package statesync is the agent's connection-tracking and NAT state,
// MidoNet's way (midonet.md §6-7): the host where a connection's first
// packet enters simulates it and commits the state to its table (the
// simulation does, through sim.Config.FlowState), then pushes the new
// entries to the hosts that may see the replies before it forwards the
// packet. Those hosts import them, so a reply entering anywhere is
// reverse-translated and recognized locally.
//
// Sync owns the table: pushing and receiving state packets, sweeping
// expired entries and refreshing those of live flows, saving the table
// across restarts (--state-dir) and publishing this host's NAT bindings
// for `show ip nat translations`.
//
// On a datapath that tracks connections itself (the kernel one:
// datapath.ConntrackOffloader), the entries flows depend on and those
// peers push are offloaded to it; its connection flows advance them in
// the kernel (a TCP FIN or RST needs no upcall), and the periodic refresh
// reads what the kernel saw from its connection map instead of walking
// the flow table. After a restart the kernel's copies are read back.
package statesync

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

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
	// maxStateInvalidate is the most tags one state packet invalidates
	// at once (two per entry).
	maxStateInvalidate = 2 * flowstate.MaxWireEntries
)

// Datapath is what state sync uses of the datapath.
type Datapath interface {
	Invalidate(tags ...uint64) int
	SendState(peer netip.Addr, payload []byte) error
	Flows(fn func(info *datapath.FlowInfo))
}

// NSDB is where the NAT bindings are published.
type NSDB interface {
	PutNATTranslations(ctx context.Context, hostID string, lease nsdb.LeaseID, t *agentstatus.NATTranslations) error
	List(ctx context.Context, k *model.Kind, field, value string) ([]model.Object, int64, error)
}

// GenInvalidator is a Datapath that numbers its invalidations
// (slowpath.Generational's): InvalidateGen returns the generation of the
// one it made.
type GenInvalidator interface {
	InvalidateGen(tags ...uint64) (n int, gen uint64)
}

// Config wires the state of one host.
type Config struct {
	HostID, HostName string
	// Bounds and timeouts of the table (zero: flowstate's defaults).
	ConntrackMax, ConntrackZoneMax int
	Timeouts                       flowstate.Timeouts
	// StateDir is where the table is saved across restarts; empty: not
	// saved.
	StateDir string
	// Blocks leases the SNAT port blocks (the NSDB's, or a
	// flowstate.MemBlocks).
	Blocks   flowstate.Blocks
	Datapath Datapath
	// Offload, if not nil, is the datapath's connection tracking.
	Offload datapath.ConntrackOffloader
	DB      NSDB
	Lease   func() nsdb.LeaseID // the host's current liveness lease
	Log     *slog.Logger
}

// counters count flow-state packets (metrics and status).
type counters struct {
	sent, sendErrors, received, malformed, importRefused atomic.Uint64
	touched                                              atomic.Uint64 // entries refreshed for live flows
	offloadErrors                                        atomic.Uint64 // PutConns and SyncConns failures
}

// Sync is one host's flow state.
type Sync struct {
	cfg   Config
	table *flowstate.Table
	count counters
	saver saver
	// tagBufs are the tag buffers of State, which runs on the tunnel
	// receivers' goroutines.
	tagBufs sync.Pool
	// keyBufs and connBufs are the offload buffers of Offload and State.
	keyBufs, connBufs sync.Pool
}

// New returns the state of a host, with an empty table (see Load).
func New(cfg Config) *Sync {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Sync{cfg: cfg}
	s.table = flowstate.New(flowstate.Config{MaxEntries: cfg.ConntrackMax, MaxPerZone: cfg.ConntrackZoneMax,
		Timeouts: cfg.Timeouts, Blocks: cfg.Blocks})
	s.tagBufs.New = func() any { b := make([]uint64, 0, maxStateInvalidate); return &b }
	s.keyBufs.New = func() any { b := make([]flowstate.Key, 0, flowstate.MaxWireEntries); return &b }
	s.connBufs.New = func() any { b := make([]datapath.ConnEntry, 0, flowstate.MaxWireEntries); return &b }
	if cfg.Offload != nil {
		if err := cfg.Offload.SetConntrackTimeouts(cfg.Timeouts); err != nil {
			cfg.Log.Warn("the datapath cannot track connections; the agent refreshes them", "err", err)
			s.cfg.Offload = nil
		}
	}
	return s
}

// Table is the connection-tracking and NAT table, for the simulation.
func (s *Sync) Table() *flowstate.Table { return s.table }

// Push sends the entries a walk created to peers, the hosts that may see
// the connection's replies, before the packet is forwarded: on the tunnel
// socket the packet then takes, so the state arrives first. It also
// invalidates the local flows decided while the state was missing, and
// returns that invalidation's generation when the datapath numbers them
// (GenInvalidator; else 0): the pushing walk's own flow read the state as
// it now is. buf and tags are the caller's scratch, returned grown;
// nothing allocates once they are big enough.
func (s *Sync) Push(entries []flowstate.Entry, peers []netip.Addr, buf []byte, tags []uint64) ([]byte, []uint64, uint64) {
	tags = tags[:0]
	for i := range entries {
		tags = append(tags, entries[i].Rev.Tag(), entries[i].Fwd.Tag())
	}
	var own uint64
	if g, ok := s.cfg.Datapath.(GenInvalidator); ok {
		_, own = g.InvalidateGen(tags...)
	} else {
		s.cfg.Datapath.Invalidate(tags...)
	}
	if len(peers) == 0 {
		return buf, tags, own
	}
	b, err := flowstate.AppendStatePacket(buf[:0], entries)
	if err != nil {
		return buf, tags, own // more than MaxWireEntries: cannot happen (MaxTxEntries)
	}
	for _, p := range peers {
		if err := s.cfg.Datapath.SendState(p, b); err != nil {
			s.count.sendErrors.Add(1)
			continue
		}
		s.count.sent.Add(1)
	}
	return b, tags, own
}

// State implements datapath.StateHandler: it imports the entries of a
// peer's state packet and invalidates the flows decided without them (a
// reply that raced the state, or a drop flow installed before the
// connection existed). A malformed packet imports nothing and is counted.
func (s *Sync) State(from netip.Addr, payload []byte) {
	bp := s.tagBufs.Get().(*[]uint64)
	kp := s.keyBufs.Get().(*[]flowstate.Key)
	tags, keys := s.importState(from, payload, (*bp)[:0], (*kp)[:0])
	if len(tags) > 0 {
		// A peer's entries land in the kernel too, before the flows
		// decided without them go: the replies' new flows name them.
		s.offload(keys)
		s.cfg.Datapath.Invalidate(tags...)
	}
	*bp, *kp = tags, keys
	s.tagBufs.Put(bp)
	s.keyBufs.Put(kp)
}

// importState imports the entries of a state packet and appends the tags
// of those it took to tags, their forward keys to keys.
func (s *Sync) importState(from netip.Addr, payload []byte, tags []uint64, keys []flowstate.Key) ([]uint64, []flowstate.Key) {
	var buf [16]flowstate.Entry
	entries, err := flowstate.DecodeStatePacket(payload, buf[:0])
	if err != nil {
		s.count.malformed.Add(1)
		s.cfg.Log.Debug("malformed flow-state packet", "from", from, "err", err)
		return tags, keys
	}
	s.count.received.Add(1)
	now := time.Now().UnixNano()
	for i := range entries {
		if err := s.table.Import(&entries[i], now); err != nil {
			s.count.importRefused.Add(1)
			continue
		}
		tags = append(tags, entries[i].Rev.Tag(), entries[i].Fwd.Tag())
		keys = append(keys, entries[i].Fwd)
	}
	return tags, keys
}

// Run sweeps, saves (with a state directory) and publishes the NAT
// bindings until ctx is done.
func (s *Sync) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.sweep(ctx) })
	if s.cfg.StateDir != "" {
		g.Go(func() error { return s.saveLoop(ctx) })
	}
	g.Go(func() error { return s.publishNAT(ctx) })
	return g.Wait()
}

// sweep removes expired entries every sweepEvery and invalidates the
// flows that read them, so those flows re-simulate. Before that, every
// touchPeriod, it refreshes the entries of flows still hitting, which the
// simulation does not see: a live connection's entries never expire.
func (s *Sync) sweep(ctx context.Context) error {
	touch := s.touchPeriod()
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
			if s.cfg.Offload != nil {
				s.syncConns()
			} else {
				s.touchLiveFlows(lastTouch, now)
			}
			lastTouch = now
		}
		tags, _ = s.table.Sweep(now.UnixNano(), sweepBudget, tags[:0])
		if len(tags) > 0 {
			s.cfg.Datapath.Invalidate(tags...)
		}
		if cap(tags) > 4*sweepBudget {
			tags = nil // a burst's buffer is not kept forever
		}
	}
}

// touchPeriod is how often live flows' entries are refreshed: touchEvery,
// or a quarter of the shortest configured timeout if that is less, so
// that an entry is touched several times within its lifetime.
func (s *Sync) touchPeriod() time.Duration {
	d, c := flowstate.DefaultTimeouts(), s.cfg.Timeouts
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
func (s *Sync) touchLiveFlows(since, now time.Time) {
	ns := now.UnixNano()
	datapath.LiveState(s.cfg.Datapath, since, func(state []flowstate.Key) {
		for i := range state {
			if s.table.Touch(&state[i], ns) {
				s.count.touched.Add(1)
			}
		}
	})
}

// maxEntries and maxPerZone are the table's bounds as configured.
func (s *Sync) maxEntries() int {
	if s.cfg.ConntrackMax > 0 {
		return s.cfg.ConntrackMax
	}
	return flowstate.DefaultMaxEntries
}

func (s *Sync) maxPerZone() int {
	z := s.cfg.ConntrackZoneMax
	if z <= 0 {
		z = flowstate.DefaultMaxPerZone
	}
	return min(z, s.maxEntries())
}

func (s *Sync) status() *agentstatus.FlowState {
	st := s.table.Stats()
	return &agentstatus.FlowState{Entries: st.Entries, Zones: st.Zones, MaxEntries: s.maxEntries(), MaxPerZone: s.maxPerZone(),
		RefusedFull: st.RefusedFull, RefusedZoneFull: st.RefusedZoneFull, RefusedExists: st.RefusedExists,
		Imported: st.Imported, Expired: st.Expired, PortsInUse: st.PortsInUse, BlocksLeased: st.BlocksLeased,
		PortsExhausted: st.PortsExhausted, StateSent: s.count.sent.Load(), StateReceived: s.count.received.Load(),
		StateMalformed: s.count.malformed.Load()}
}

// Status is the table's part of the published datapath status, with
// what the datapath tracks itself.
func (s *Sync) Status() *agentstatus.FlowState {
	fs := s.status()
	if s.cfg.Offload != nil {
		c := s.cfg.Offload.ConntrackStats()
		fs.Offloaded, fs.OffloadMax, fs.OffloadBytes = c.Entries, c.Max, c.BytesPerEntry
	}
	return fs
}
