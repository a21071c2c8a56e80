package memory

import (
	"container/list"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
)

// flowEntry is an installed flow. Only its counters change once it is in
// the table, so the hit path reads it under the table's read lock alone.
type flowEntry struct {
	key   flow.Key
	in    *port
	acts  []flow.Action
	outs  []*port // outs[i] is the port acts[i] outputs to, if it does
	tags  []uint64
	state []flowstate.Key
	class datapath.FlowClass
	mtu   int

	installed int64 // datapath clock
	lastUsed  atomic.Int64
	packets   atomic.Uint64
	bytes     atomic.Uint64
	age       *list.Element // in table.order
}

// table is the flow table: one map for lookups (the key holds the
// in-port), the flows in install order (expiry walks it, eviction picks
// among its oldest) and the flows of every tag.
type table struct {
	dp    *Datapath
	mu    sync.RWMutex
	flows map[flow.Key]*flowEntry
	order list.List
	byTag map[uint64]map[*flowEntry]struct{}

	installed, expired, evicted, invalidated, removed atomic.Uint64
}

func (t *table) init(dp *Datapath) {
	t.dp = dp
	t.flows = map[flow.Key]*flowEntry{}
	t.byTag = map[uint64]map[*flowEntry]struct{}{}
}

// lookup is the hit path's read.
func (t *table) lookup(k *flow.Key) *flowEntry {
	t.mu.RLock()
	f := t.flows[*k]
	t.mu.RUnlock()
	return f
}

// Install implements datapath.Datapath.
func (dp *Datapath) Install(spec *datapath.FlowSpec) error {
	if spec.Class >= datapath.NumFlowClasses {
		return fmt.Errorf("datapath: install: invalid flow class %d", spec.Class)
	}
	ps := dp.ports.Load()
	in := ps.index[int32(spec.Key.InPort)]
	if in == nil {
		return fmt.Errorf("datapath: install: in-port %d: %w", spec.Key.InPort, datapath.ErrUnknownPort)
	}
	outs, err := resolve(ps, spec.Actions)
	if err != nil {
		return fmt.Errorf("datapath: install: %w", err)
	}
	f := &flowEntry{key: spec.Key, in: in, outs: outs, class: spec.Class, mtu: spec.MTU,
		acts: append([]flow.Action(nil), spec.Actions...), tags: append([]uint64(nil), spec.Tags...)}
	if len(spec.State) > 0 {
		f.state = append([]flowstate.Key(nil), spec.State...)
	}
	if dp.closed.Load() {
		return datapath.ErrClosed
	}
	t := &dp.table
	t.mu.Lock()
	defer t.mu.Unlock()
	// Checked under the table's lock, which RemovePort takes to drop a
	// port's flows: a flow never outlives its ports.
	if in.gone.Load() {
		return fmt.Errorf("datapath: install: in-port %s: %w", in.cfg.PortID, datapath.ErrUnknownPort)
	}
	for _, p := range outs {
		if p != nil && p.gone.Load() {
			return fmt.Errorf("datapath: install: output port %s: %w", p.cfg.PortID, datapath.ErrUnknownPort)
		}
	}
	if old := t.flows[f.key]; old != nil {
		t.removeLocked(old)
	} else if len(t.flows) >= dp.flows.MaxFlows {
		t.evictLocked()
	}
	f.installed = dp.now()
	f.lastUsed.Store(f.installed)
	f.age = t.order.PushBack(f)
	t.flows[f.key] = f
	for _, tag := range f.tags {
		set := t.byTag[tag]
		if set == nil {
			set = map[*flowEntry]struct{}{}
			t.byTag[tag] = set
		}
		set[f] = struct{}{}
	}
	t.installed.Add(1)
	return nil
}

func (t *table) removeLocked(f *flowEntry) {
	delete(t.flows, f.key)
	t.order.Remove(f.age)
	for _, tag := range f.tags {
		if set := t.byTag[tag]; set != nil {
			delete(set, f)
			if len(set) == 0 {
				delete(t.byTag, tag)
			}
		}
	}
}

// evictCandidates is how many of the oldest flows eviction compares: the
// least recently used of them goes, so a busy old flow survives.
const evictCandidates = 8

func (t *table) evictLocked() {
	var victim *flowEntry
	e := t.order.Front()
	for i := 0; e != nil && i < evictCandidates; i, e = i+1, e.Next() {
		if f := e.Value.(*flowEntry); victim == nil || f.lastUsed.Load() < victim.lastUsed.Load() {
			victim = f
		}
	}
	if victim != nil {
		t.removeLocked(victim)
		t.evicted.Add(1)
	}
}

// Invalidate implements datapath.Datapath.
func (dp *Datapath) Invalidate(tags ...uint64) int {
	t := &dp.table
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, tag := range tags {
		for f := range t.byTag[tag] {
			t.removeLocked(f)
			n++
		}
	}
	t.invalidated.Add(uint64(n))
	return n
}

// Flush implements datapath.Datapath.
func (dp *Datapath) Flush() int {
	t := &dp.table
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.flows)
	clear(t.flows)
	clear(t.byTag)
	t.order.Init()
	t.invalidated.Add(uint64(n))
	return n
}

// removePort removes the flows entering by p or outputting to it.
func (t *table) removePort(p *port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.order.Front(); e != nil; {
		next := e.Next()
		if f := e.Value.(*flowEntry); f.in == p || containsPort(f.outs, p) {
			t.removeLocked(f)
			t.removed.Add(1)
		}
		e = next
	}
}

func containsPort(ps []*port, p *port) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// expire removes the flows idle longer than their class's timeout.
func (t *table) expire(now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.order.Front(); e != nil; {
		next := e.Next()
		f := e.Value.(*flowEntry)
		if time.Duration(now-f.lastUsed.Load()) > t.dp.flows.IdleTimeout[f.class] {
			t.removeLocked(f)
			t.expired.Add(1)
		}
		e = next
	}
}

func (t *table) stats(s *datapath.Stats) {
	t.mu.RLock()
	s.Flows = len(t.flows)
	t.mu.RUnlock()
	s.FlowsInstalled, s.FlowsExpired, s.FlowsEvicted = t.installed.Load(), t.expired.Load(), t.evicted.Load()
	s.FlowsInvalidated, s.FlowsRemoved = t.invalidated.Load(), t.removed.Load()
}

// Flows implements datapath.Datapath: it copies the flows out under the
// read lock and calls fn without it.
func (dp *Datapath) Flows(fn func(info *datapath.FlowInfo)) {
	t := &dp.table
	t.mu.RLock()
	all := make([]*flowEntry, 0, len(t.flows))
	for e := t.order.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(*flowEntry))
	}
	t.mu.RUnlock()
	for _, f := range all {
		fn(&datapath.FlowInfo{Key: f.key, InPortID: f.in.cfg.PortID, Actions: f.acts, Tags: f.tags, Class: f.class,
			MTU: f.mtu, State: f.state, Packets: f.packets.Load(), Bytes: f.bytes.Load(),
			Installed: dp.epoch.Add(time.Duration(f.installed)), LastUsed: dp.epoch.Add(time.Duration(f.lastUsed.Load()))})
	}
}
