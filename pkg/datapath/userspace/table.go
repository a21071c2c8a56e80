//go:build linux

package userspace

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
)

// flow is an installed flow. Everything but the counters is immutable once
// the flow is published in its port's map, so the hit path reads it
// without locks.
type flowEntry struct {
	key  flow.Key
	in   *port
	acts []action // group.acts
	// group holds the actions and tags the flow shares with the flows
	// doing the same (groups.go); slot is the flow's index in it.
	group *flowGroup
	slot  int32
	state []flowstate.Key // not read by the hit path: for Flows
	// stateful: the flow's decision read flow state, so segments that
	// close a TCP connection are shown to the simulation (closing).
	stateful bool
	// encap and rewrites say what offloaded frames need (offload.go).
	encap, rewrites bool
	class           datapath.FlowClass
	mtu             int

	installed int64        // datapath clock
	lastUsed  atomic.Int64 // datapath clock, refreshed once per batch at most
	packets   atomic.Uint64
	bytes     atomic.Uint64

	// Guarded by Datapath.mu. next survives removal, so a sweep that
	// dropped the lock can resume from a flow removed meanwhile.
	prev, next *flowEntry
	dead       bool
}

// table is the flow table's bookkeeping; the lookup maps live in the ports.
// All fields are guarded by Datapath.mu.
//
// Flows sit on one list in install order, which gives eviction its
// candidates (the oldest) and the expiry sweep its walk. The tag index maps
// a tag to the flow groups carrying it (groups.go); a group that loses its
// last flow stays in its tags' slices, marked dead, and dead entries are
// compacted away when a slice must grow or when they outnumber the live
// ones. That keeps Install to one append (to its group) and removal O(1).
type table struct {
	dp         *Datapath
	head, tail *flowEntry
	count      int
	byTag      map[uint64][]*flowGroup
	tagRefs    int // entries in byTag, dead included
	liveRefs   int // entries belonging to live groups
	groups     groupCache

	installed, expired, evicted, invalidated, removed atomic.Uint64
	stateful                                          atomic.Int64 // live flows with state keys
	countPub                                          atomic.Int64 // count, for Stats without the lock
}

func (t *table) init(dp *Datapath) {
	t.dp = dp
	t.byTag = map[uint64][]*flowGroup{}
	t.groups.init()
}

// evictCandidates is how many of the oldest flows eviction compares; the
// least recently used of them goes. A pure LRU would need a list update per
// hit; this needs none and rarely evicts a busy flow.
const evictCandidates = 8

// Install implements datapath.Datapath.
func (dp *Datapath) Install(spec *datapath.FlowSpec) error {
	if spec.Class >= datapath.NumFlowClasses {
		return fmt.Errorf("datapath: install: invalid flow class %d", spec.Class)
	}
	ps := dp.ports.Load()
	in := ps.byIndex[int32(spec.Key.InPort)]
	if in == nil {
		return fmt.Errorf("datapath: install: in-port %d: %w", spec.Key.InPort, datapath.ErrUnknownPort)
	}
	// Compiled into scratch: the flow keeps a shared copy (actCache).
	sp := compileScratch.Get().(*[]action)
	acts, err := compile(ps, spec.Actions, (*sp)[:0])
	defer func() {
		clear(acts) // no port pointers kept alive by the pool
		*sp = acts[:0]
		compileScratch.Put(sp)
	}()
	if err != nil {
		return fmt.Errorf("datapath: install: %w", err)
	}
	f := &flowEntry{key: spec.Key, in: in, class: spec.Class, mtu: spec.MTU}
	f.encap, f.rewrites = flowNeeds(acts)
	if len(spec.State) > 0 {
		f.state = append([]flowstate.Key(nil), spec.State...)
		f.stateful = true
	}

	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	if in.gone.Load() {
		return fmt.Errorf("datapath: install: in-port %s: %w", in.cfg.PortID, datapath.ErrUnknownPort)
	}
	for i := range acts {
		if o := acts[i].out; o != nil && o.gone.Load() {
			return fmt.Errorf("datapath: install: output port %s: %w", o.cfg.PortID, datapath.ErrUnknownPort)
		}
	}
	t := &dp.table
	in.flowMu.RLock()
	old := in.flows[f.key]
	in.flowMu.RUnlock()
	if old != nil {
		t.remove(old)
	} else if t.count >= dp.flows.MaxFlows {
		t.evictOne()
	}
	g, isNew := t.groups.join(f, acts, spec.Tags)
	f.acts = g.acts
	if isNew {
		for _, tag := range g.tags {
			t.addTagRef(tag, g)
		}
		t.liveRefs += len(g.tags)
	}
	f.installed = dp.now()
	f.lastUsed.Store(f.installed)
	in.flowMu.Lock()
	in.flows[f.key] = f
	in.flowMu.Unlock()
	f.prev = t.tail
	if t.tail != nil {
		t.tail.next = f
	} else {
		t.head = f
	}
	t.tail = f
	t.count++
	t.countPub.Store(int64(t.count))
	t.installed.Add(1)
	if f.stateful {
		t.stateful.Add(1)
	}
	return nil
}

func (t *table) addTagRef(tag uint64, g *flowGroup) {
	s := t.byTag[tag]
	if len(s) == cap(s) && len(s) >= 8 {
		n := len(s)
		s = compactGroups(s)
		t.tagRefs -= n - len(s)
	}
	t.byTag[tag] = append(s, g)
	t.tagRefs++
}

// compactGroups drops dead groups from s in place.
func compactGroups(s []*flowGroup) []*flowGroup {
	live := s[:0]
	for _, g := range s {
		if !g.dead {
			live = append(live, g)
		}
	}
	clear(s[len(live):])
	return live
}

// remove unlinks a live flow from its port's map, the list and its group.
// A group left empty stays in its tags' slices, marked dead, until
// compaction.
func (t *table) remove(f *flowEntry) {
	f.dead = true
	in := f.in
	in.flowMu.Lock()
	if in.flows[f.key] == f {
		delete(in.flows, f.key)
	}
	in.flowMu.Unlock()
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		t.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		t.tail = f.prev
	}
	f.prev = nil
	if f.stateful {
		t.stateful.Add(-1)
	}
	t.count--
	t.countPub.Store(int64(t.count))
	if t.groups.leave(f) {
		t.liveRefs -= len(f.group.tags)
		if t.tagRefs > 2*t.liveRefs+4096 {
			t.compactAll()
		}
	}
}

func (t *table) compactAll() {
	for tag, s := range t.byTag {
		n := len(s)
		s = compactGroups(s)
		t.tagRefs -= n - len(s)
		if len(s) == 0 {
			delete(t.byTag, tag)
		} else {
			t.byTag[tag] = s
		}
	}
}

func (t *table) evictOne() {
	var victim *flowEntry
	i := 0
	for f := t.head; f != nil && i < evictCandidates; f, i = f.next, i+1 {
		if victim == nil || f.lastUsed.Load() < victim.lastUsed.Load() {
			victim = f
		}
	}
	if victim != nil {
		t.remove(victim)
		t.evicted.Add(1)
	}
}

// Invalidate implements datapath.Datapath.
func (dp *Datapath) Invalidate(tags ...uint64) int {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	t := &dp.table
	n := 0
	for _, tag := range tags {
		s, ok := t.byTag[tag]
		if !ok {
			continue
		}
		delete(t.byTag, tag)
		t.tagRefs -= len(s)
		for _, g := range s {
			for len(g.flows) > 0 { // remove takes each out of g
				t.remove(g.flows[len(g.flows)-1])
				n++
			}
		}
	}
	t.invalidated.Add(uint64(n))
	return n
}

// Flush implements datapath.Datapath.
func (dp *Datapath) Flush() int {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	t := &dp.table
	// Drop the tag index first, so that removals do not compact it.
	t.byTag = map[uint64][]*flowGroup{}
	t.tagRefs = 0
	n := 0
	for f := t.head; f != nil; {
		next := f.next
		t.remove(f)
		n++
		f = next
	}
	t.invalidated.Add(uint64(n))
	return n
}

// removePortFlows removes the flows entering by p or outputting to it;
// Datapath.mu is held. A scan of the whole table: detaching a port is rare.
func (t *table) removePortFlows(p *port) {
	for f := t.head; f != nil; {
		next := f.next
		if f.in == p || f.outputsTo(p) {
			t.remove(f)
			t.removed.Add(1)
		}
		f = next
	}
}

func (f *flowEntry) outputsTo(p *port) bool {
	for i := range f.acts {
		if f.acts[i].out == p {
			return true
		}
	}
	return false
}

// sweepChunk is how many flows the expiry sweep examines before letting
// Install and Invalidate take the lock.
const sweepChunk = 4096

// expire removes flows idle longer than their class's timeout.
func (t *table) expire(now int64) {
	var timeout [datapath.NumFlowClasses]int64
	for i, d := range t.dp.flows.IdleTimeout {
		timeout[i] = int64(d)
	}
	mu := &t.dp.mu
	mu.Lock()
	defer mu.Unlock()
	i := 0
	for f := t.head; f != nil; i++ {
		if i%sweepChunk == sweepChunk-1 {
			mu.Unlock()
			runtime.Gosched()
			mu.Lock()
		}
		next := f.next
		if !f.dead && now-f.lastUsed.Load() > timeout[f.class] {
			t.remove(f)
			t.expired.Add(1)
		}
		f = next
	}
}

func (t *table) stats(s *datapath.Stats) {
	s.Flows = int(t.countPub.Load())
	s.FlowsInstalled = t.installed.Load()
	s.FlowsExpired = t.expired.Load()
	s.FlowsEvicted = t.evicted.Load()
	s.FlowsInvalidated = t.invalidated.Load()
	s.FlowsRemoved = t.removed.Load()
}

// Flows implements datapath.Datapath.
func (dp *Datapath) Flows(fn func(info *datapath.FlowInfo)) {
	dp.FlowsUntil(func(info *datapath.FlowInfo) bool { fn(info); return true })
}

// flowsChunk is how many flows walk takes from the list per hold of the
// lock.
const flowsChunk = 256

// walk calls fn for each live flow in install order until it returns
// false. It takes the flows from the list a chunk at a time under the
// lock and calls fn without it, so that a sample of a large table costs
// the sample, and fn may call back into the datapath. A removed flow keeps
// its next pointer, so the walk resumes from the chunk's last flow even
// if it was removed meanwhile.
func (dp *Datapath) walk(fn func(f *flowEntry) bool) {
	var (
		chunk [flowsChunk]*flowEntry
		last  *flowEntry
	)
	for {
		n := 0
		dp.mu.Lock()
		f := dp.table.head
		if last != nil {
			f = last.next
		}
		for ; f != nil && n < flowsChunk; f = f.next {
			if !f.dead {
				chunk[n] = f
				n++
			}
		}
		dp.mu.Unlock()
		if n == 0 {
			return
		}
		last = chunk[n-1]
		for _, f := range chunk[:n] {
			if !fn(f) {
				return
			}
		}
		clear(chunk[:n])
		if f == nil {
			return
		}
	}
}

// FlowsUntil implements datapath.FlowLister.
func (dp *Datapath) FlowsUntil(fn func(info *datapath.FlowInfo) bool) {
	var info datapath.FlowInfo
	dp.walk(func(f *flowEntry) bool {
		acts := make([]flow.Action, len(f.acts))
		for i := range f.acts {
			acts[i] = f.acts[i].Action
		}
		info = datapath.FlowInfo{
			Key: f.key, InPortID: f.in.cfg.PortID, Actions: acts, Tags: f.group.tags,
			Class: f.class, MTU: f.mtu, State: f.state, Packets: f.packets.Load(), Bytes: f.bytes.Load(),
			Installed: dp.wallTime(f.installed), LastUsed: dp.wallTime(f.lastUsed.Load()),
		}
		return fn(&info)
	})
}

// LiveState implements datapath.StateLister, allocating nothing.
func (dp *Datapath) LiveState(since time.Time, fn func(state []flowstate.Key)) {
	if dp.table.stateful.Load() == 0 {
		return
	}
	dp.walk(func(f *flowEntry) bool {
		if f.stateful && !dp.wallTime(f.lastUsed.Load()).Before(since) {
			fn(f.state)
		}
		return true
	})
}
