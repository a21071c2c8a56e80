//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// flowRec is the agent side of an installed flow: what the kernel does
// not need (tags, state keys, the actions as given) and what Flows
// reports. The kernel entry holds the counters and the action list id.
type flowRec struct {
	key   flow.Key
	in    *port
	outs  []*port
	acts  []flow.Action
	tags  []uint64
	state []flowstate.Key
	class datapath.FlowClass
	mtu   int
	list  uint32 // action list id; 0 for a slow flow
	slow  bool
	wall  time.Time // installed
	mono  uint64    // installed, CLOCK_MONOTONIC ns
	dead  bool      // removed; still in some tag slices until compaction
	// adopted is when a flow installed by a previous agent is removed
	// unless installed again; zero for this agent's flows.
	adopted time.Time
	prev    *flowRec
	next    *flowRec
}

// flowTable is the agent side of the flow table. Guarded by Datapath.mu.
//
// Flows sit on one list in install order, which gives eviction its
// candidates (the oldest). The tag index maps a tag to the flows carrying
// it; a flow removed otherwise than by that tag stays in the tag's slice,
// marked dead, until the dead entries outnumber the live ones.
type flowTable struct {
	recs       map[flow.Key]*flowRec
	head, tail *flowRec
	byTag      map[uint64][]*flowRec
	tagRefs    int
	liveRefs   int

	installed, expired, evicted, invalidated, removed atomic.Uint64
	count                                             atomic.Int64
}

func (t *flowTable) init() {
	t.recs = map[flow.Key]*flowRec{}
	t.byTag = map[uint64][]*flowRec{}
}

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
	sc := compileScratch.Get().(*compiled)
	defer compileScratch.Put(sc)
	list, outs, err := compileList(ps, &spec.Key, spec.Actions, sc)
	if err != nil {
		return fmt.Errorf("datapath: install: %w", err)
	}
	r := &flowRec{key: spec.Key, in: in, class: spec.Class, mtu: spec.MTU, slow: list == nil}
	if len(spec.State) > 0 {
		r.state = slices.Clone(spec.State)
	}
	val := flowValue{Class: uint8(spec.Class)}
	if spec.MTU > 0 {
		val.Mtu = uint32(spec.MTU)
	}
	if r.slow {
		val.Flags |= flowSlow
	}

	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	if in.gone.Load() {
		return fmt.Errorf("datapath: install: in-port %s: %w", in.cfg.PortID, datapath.ErrUnknownPort)
	}
	for _, o := range outs { // sc's: not retained
		if o.gone.Load() {
			return fmt.Errorf("datapath: install: output to port %s: %w", o.cfg.PortID, datapath.ErrUnknownPort)
		}
	}
	t := &dp.table
	old := t.recs[r.key]
	if old == nil && len(t.recs) >= dp.flows.MaxFlows {
		if err := dp.evictBatch(); err != nil {
			return fmt.Errorf("datapath: install: evict: %w", err)
		}
	}
	// Resolved under the lock, so that no id the flow names is freed
	// (and reused) before the flow is in the table.
	if ids, dir, n := dp.ct.refs(r.state); n > 0 {
		// The kernel tracks the connections: it advances them itself.
		val.Flags |= flowCT
		val.Ct, val.CtDir = ids, dir
	} else if r.state != nil {
		val.Flags |= flowStateful
	}
	if list != nil {
		ref, err := dp.lists.get(list)
		if err != nil {
			return fmt.Errorf("datapath: install: %w", err)
		}
		r.list, val.Acts = ref.id, ref.id
		// Flows with one kernel list mostly have one action list too
		// (every flow to a VM through a router), and often the same
		// tags: they share the first one's copies, all read-only,
		// instead of one each.
		if ref.acts != nil && slices.Equal(ref.acts, spec.Actions) && slices.Equal(ref.outs, outs) {
			r.acts, r.outs = ref.acts, ref.outs
		} else {
			r.acts, r.outs = slices.Clone(spec.Actions), slices.Clone(outs)
			if ref.acts == nil {
				ref.acts, ref.outs = r.acts, r.outs
			}
		}
		if ref.tags != nil && slices.Equal(ref.tags, spec.Tags) {
			r.tags = ref.tags
		} else {
			r.tags = slices.Clone(spec.Tags)
			if ref.tags == nil {
				ref.tags = r.tags
			}
		}
	} else {
		r.acts, r.outs, r.tags = slices.Clone(spec.Actions), slices.Clone(outs), slices.Clone(spec.Tags)
	}
	r.wall, r.mono = time.Now(), monoNow()
	val.Installed, val.Used = r.mono, r.mono
	var oldList uint32
	if old != nil {
		oldList = old.list
	}
	if dp.queueInstall(r, &val, oldList) {
		// Written at the end of the batch: the old flow's list stays
		// until then, for the packets that still find the old flow.
		if old != nil {
			t.unlink(old)
		}
		t.link(r)
		t.installed.Add(1)
		return nil
	}
	if err := dp.objs.Flows.Update(toKernelKey(&r.key), &val, ebpf.UpdateAny); err != nil {
		dp.lists.put(r.list)
		return fmt.Errorf("datapath: install: write flow: %w", err)
	}
	if old != nil {
		t.unlink(old)
		dp.lists.put(old.list)
	}
	t.link(r)
	t.installed.Add(1)
	return nil
}

// compiled is compileList's scratch space: Install compiles every new
// flow, which must not cost an allocation of its own.
type compiled struct {
	list actionList
	outs []*port
}

var compileScratch = sync.Pool{New: func() any { return new(compiled) }}

// compileList resolves acts against the attached ports into a kernel
// action list, or nil if the kernel cannot apply them (a slow flow, whose
// packets the agent side executes): too many actions, an ICMP quote
// rewrite, or a GRE encapsulation the program cannot build (gre_encap in
// bpf/actions.h). Actions after the last output change nothing anyone
// sees and are left out. The list and the output ports are sc's, valid
// until its next use.
func compileList(ps *portSet, key *flow.Key, acts []flow.Action, sc *compiled) (*actionList, []*port, error) {
	outs := sc.outs[:0]
	defer func() { sc.outs = outs[:0] }()
	list := &sc.list
	*list = actionList{LastOut: noOutput}
	for i := range acts {
		a := &acts[i]
		var out *port
		if a.Type == flow.ActOutput {
			if out = ps.byIndex[a.Port]; out == nil {
				return nil, nil, fmt.Errorf("action %d: output to port %d (%s): %w", i, a.Port, a.PortID, datapath.ErrUnknownPort)
			}
			outs = append(outs, out)
		}
		if a.Type == flow.ActSetDSCP || a.Type == flow.ActMirror {
			// QoS marking and port mirrors are not in the kernel
			// programs yet: the flow is slow, its packets executed here
			// (execute.go).
			if err := a.Check(); err != nil {
				return nil, nil, fmt.Errorf("action %d: %w", i, err)
			}
			list = nil
			continue
		}
		if a.Type == flow.ActInnerSrc || a.Type == flow.ActInnerDst {
			// Per-packet rewrites of an ICMP error's quote: never in a
			// flow's kernel program; the agent executes them.
			if !a.Addr.IsValid() {
				return nil, nil, fmt.Errorf("action %d: %s to %q: not an address", i, a.Type, a.Addr)
			}
			list = nil
			continue
		}
		k, err := compileAction(a, out)
		if err != nil {
			return nil, nil, fmt.Errorf("action %d: %w", i, err)
		}
		if list == nil {
			continue
		}
		if i >= maxActs {
			list = nil
			continue
		}
		list.Acts[i] = k
		list.N = uint8(i + 1)
		if a.Type == flow.ActOutput || a.Type == flow.ActEncap {
			list.LastOut = uint8(i)
		}
	}
	if list != nil && list.LastOut != noOutput {
		list.N = list.LastOut + 1
		if !greFits(key, acts, int(list.LastOut)) {
			list = nil
		}
	}
	return list, outs, nil
}

// link adds r to the table; unlink removes it. Both keep the kernel
// untouched.
func (t *flowTable) link(r *flowRec) {
	t.recs[r.key] = r
	r.prev = t.tail
	if t.tail != nil {
		t.tail.next = r
	} else {
		t.head = r
	}
	t.tail = r
	for _, tag := range r.tags {
		t.byTag[tag] = append(t.byTag[tag], r)
	}
	t.tagRefs += len(r.tags)
	t.liveRefs += len(r.tags)
	t.count.Store(int64(len(t.recs)))
}

func (t *flowTable) unlink(r *flowRec) {
	if t.recs[r.key] == r {
		delete(t.recs, r.key)
	}
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		t.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		t.tail = r.prev
	}
	r.prev, r.next = nil, nil
	r.dead = true
	t.liveRefs -= len(r.tags)
	if t.tagRefs > 1024 && t.tagRefs > 2*t.liveRefs {
		t.compact()
	}
	t.count.Store(int64(len(t.recs)))
}

// compact drops dead flows from the tag index.
func (t *flowTable) compact() {
	for tag, rs := range t.byTag {
		rs = slices.DeleteFunc(rs, func(r *flowRec) bool { return r.dead })
		if len(rs) == 0 {
			delete(t.byTag, tag)
		} else {
			t.byTag[tag] = rs
		}
	}
	t.tagRefs = t.liveRefs
}

// removeFlows deletes rs from the kernel (one system call for a few
// thousand) and the table; Datapath.mu is held.
func (dp *Datapath) removeFlows(rs []*flowRec) error {
	if len(rs) == 0 {
		return nil
	}
	keys := make([]kernelKey, len(rs))
	for i, r := range rs {
		keys[i] = *toKernelKey(&r.key)
	}
	err := dp.deleteKernelFlows(keys)
	for _, r := range rs {
		dp.table.unlink(r)
		// After the flow, so that a packet that found the flow finds its
		// list (or, in a race, misses and asks the agent).
		dp.lists.put(r.list)
	}
	return err
}

// deleteKernelFlows deletes keys from the flow map; keys that are not
// there (a flow whose write is still queued) are skipped.
func (dp *Datapath) deleteKernelFlows(keys []kernelKey) error {
	for len(keys) > 0 {
		n, err := dp.objs.Flows.BatchDelete(keys, nil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			keys = keys[min(n+1, len(keys)):]
		default:
			return fmt.Errorf("delete flows: %w", err)
		}
	}
	return nil
}

// evictBatch makes room in a full table: it removes the oldest flows,
// 1/64 of the table at once, so that a table kept full by new flows
// (more new flows per idle timeout than it holds) costs one system call
// per few thousand installs instead of several per install. OVS's
// revalidators likewise cut the idle timeout when flows exceed the limit.
func (dp *Datapath) evictBatch() error {
	n := max(1, dp.flows.MaxFlows/64)
	rs := make([]*flowRec, 0, n)
	for r := dp.table.head; r != nil && len(rs) < n; r = r.next {
		rs = append(rs, r)
	}
	dp.table.evicted.Add(uint64(len(rs)))
	return dp.removeFlows(rs)
}

// Invalidate implements datapath.Datapath.
func (dp *Datapath) Invalidate(tags ...uint64) int {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.invalidateLocked(tags...)
}

// invalidateLocked is Invalidate with Datapath.mu held.
func (dp *Datapath) invalidateLocked(tags ...uint64) int {
	var rs []*flowRec
	var seen map[*flowRec]bool // a flow carrying several of the tags
	if len(tags) > 1 {
		seen = map[*flowRec]bool{}
	}
	for _, tag := range tags {
		for _, r := range dp.table.byTag[tag] {
			dp.table.tagRefs--
			if r.dead || seen[r] {
				continue
			}
			if seen != nil {
				seen[r] = true
			}
			rs = append(rs, r)
		}
		delete(dp.table.byTag, tag)
	}
	if err := dp.removeFlows(rs); err != nil {
		dp.log.Warn("datapath: invalidate", "err", err)
	}
	dp.table.invalidated.Add(uint64(len(rs)))
	return len(rs)
}

// Flush implements datapath.Datapath.
func (dp *Datapath) Flush() int {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	rs := dp.table.all(func(*flowRec) bool { return true })
	if err := dp.removeFlows(rs); err != nil {
		dp.log.Warn("datapath: flush", "err", err)
	}
	dp.table.invalidated.Add(uint64(len(rs)))
	return len(rs)
}

// all returns the flows that match.
func (t *flowTable) all(match func(r *flowRec) bool) []*flowRec {
	var rs []*flowRec
	for r := t.head; r != nil; r = r.next {
		if match(r) {
			rs = append(rs, r)
		}
	}
	return rs
}

// removePortFlows removes every flow entering by p or outputting to it;
// Datapath.mu is held.
func (t *flowTable) removePortFlows(dp *Datapath, p *port) {
	rs := t.all(func(r *flowRec) bool {
		return r.in == p || slices.Contains(r.outs, p) || r.in == nil && r.key.InPort == uint32(p.cfg.Index)
	})
	if err := dp.removeFlows(rs); err != nil {
		dp.log.Warn("datapath: remove port", "err", err)
	}
	t.removed.Add(uint64(len(rs)))
}

// expire removes flows idle longer than their class's timeout, reading
// the last-used times the program writes in batches. A flow replaced
// since the read is kept; one that hit since then goes anyway, and its
// next packet misses (as with OVS's revalidators).
func (dp *Datapath) expire() error {
	now := monoNow()
	type staleFlow struct {
		key       flow.Key
		installed uint64
	}
	var stale []staleFlow
	err := dp.scanFlows(func(k *kernelKey, v *flowValue) {
		class := datapath.FlowClass(v.Class)
		if class >= datapath.NumFlowClasses {
			class = datapath.ClassNormal
		}
		if now > v.Used && time.Duration(now-v.Used) > dp.flows.IdleTimeout[class] && !dp.connAlive(v, now) {
			stale = append(stale, staleFlow{fromKernelKey(k), v.Installed})
		}
	})
	if err != nil {
		return fmt.Errorf("scan flows: %w", err)
	}
	if len(stale) == 0 {
		return nil
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	rs := make([]*flowRec, 0, len(stale))
	for i := range stale {
		if r := dp.table.recs[stale[i].key]; r != nil && r.mono == stale[i].installed {
			rs = append(rs, r)
		}
	}
	dp.table.expired.Add(uint64(len(rs)))
	return dp.removeFlows(rs)
}

// connAlive reports whether v is a connection's flow whose connections
// all live on in the kernel's map: such a flow outlives its idle timeout,
// so that a connection that pauses does not meet the agent again.
func (dp *Datapath) connAlive(v *flowValue, now uint64) bool {
	if v.Flags&flowCT == 0 {
		return false
	}
	var e ctEntry
	for _, id := range v.Ct {
		if id == 0 {
			break
		}
		if dp.objs.Ct.Lookup(id, &e) != nil || e.Expires <= now {
			return false
		}
	}
	return true
}

// Flows implements datapath.Datapath. It reads the kernel's table in
// batches, joins each batch with the agent-side records under the lock
// (a map lookup per flow, no copy of the table), and calls fn for the
// batch without the lock.
func (dp *Datapath) Flows(fn func(info *datapath.FlowInfo)) {
	dp.FlowsUntil(func(f *datapath.FlowInfo) bool { fn(f); return true })
}

// FlowsUntil implements datapath.FlowLister: Flows, stopping when fn
// returns false.
func (dp *Datapath) FlowsUntil(fn func(info *datapath.FlowInfo) bool) {
	infos := make([]datapath.FlowInfo, 0, scanBatch)
	err := dp.scanFlowBatches(func(keys []kernelKey, vals []flowValue) bool {
		dp.mu.Lock()
		for i := range keys {
			r := dp.table.recs[fromKernelKey(&keys[i])]
			if r == nil {
				continue // installed or removed since the batch was read
			}
			v := &vals[i]
			inPortID := ""
			if r.in != nil {
				inPortID = r.in.cfg.PortID
			}
			f := datapath.FlowInfo{Key: r.key, InPortID: inPortID, Actions: r.acts, Tags: r.tags, Class: r.class,
				MTU: r.mtu, State: r.state, Installed: r.wall, LastUsed: r.wall, Packets: v.Packets, Bytes: v.Bytes}
			if v.Used > v.Installed {
				f.LastUsed = f.Installed.Add(time.Duration(v.Used - v.Installed))
			}
			infos = append(infos, f)
		}
		dp.mu.Unlock()
		more := true
		for i := range infos {
			if more = fn(&infos[i]); !more {
				break
			}
		}
		clear(infos)
		infos = infos[:0]
		return more
	})
	if err != nil {
		dp.log.Warn("datapath: read the flow table", "err", err)
	}
}

// scanBatch is how many flows scanFlows reads per system call.
const scanBatch = 4096

// scanFlows calls fn for every flow in the kernel's table, reading them
// in batches: one system call per few thousand flows, where iterating
// costs two per flow (the expiry sweep of a full table would otherwise
// cost more than the misses it serves).
func (dp *Datapath) scanFlows(fn func(k *kernelKey, v *flowValue)) error {
	return dp.scanFlowBatches(func(keys []kernelKey, vals []flowValue) bool {
		for i := range keys {
			fn(&keys[i], &vals[i])
		}
		return true
	})
}

// scanFlowBatches calls fn with every batch of the kernel's flows until
// fn returns false.
func (dp *Datapath) scanFlowBatches(fn func(keys []kernelKey, vals []flowValue) bool) error {
	keys := make([]kernelKey, scanBatch)
	vals := make([]flowValue, scanBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := dp.objs.Flows.BatchLookup(&cursor, keys, vals, nil)
		if n > 0 && !fn(keys[:n], vals[:n]) {
			return nil
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (t *flowTable) stats(s *datapath.Stats) {
	s.Flows = int(t.count.Load())
	s.FlowsInstalled, s.FlowsExpired, s.FlowsEvicted = t.installed.Load(), t.expired.Load(), t.evicted.Load()
	s.FlowsInvalidated, s.FlowsRemoved = t.invalidated.Load(), t.removed.Load()
}

// actionLists owns the "actions" map: action lists by id, shared by every
// flow with the same list and reference counted. Guarded by Datapath.mu.
type actionLists struct {
	m    *ebpf.Map
	byID map[uint32]*listRef
	byV  map[string]*listRef
	next uint32
}

type listRef struct {
	id   uint32
	refs int
	v    string
	// acts, outs and tags are the first flow's actions, output ports
	// and tags with this list, which later flows with the same share.
	acts []flow.Action
	outs []*port
	tags []uint64
}

func (l *actionLists) init(m *ebpf.Map) {
	l.m = m
	l.byID = map[uint32]*listRef{}
	l.byV = map[string]*listRef{}
}

// get returns list's reference, counting one more user, and writes list
// to the kernel if it is new.
func (l *actionLists) get(list *actionList) (*listRef, error) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(list)), unsafe.Sizeof(*list))
	if r := l.byV[string(b)]; r != nil {
		r.refs++
		return r, nil
	}
	// Ids are not reused until the counter wraps, so a packet that found
	// a flow an instant before it was replaced never applies another
	// flow's list.
	l.next++
	for l.next == 0 || l.byID[l.next] != nil {
		l.next++
	}
	r := &listRef{id: l.next, refs: 1, v: string(b)}
	if err := l.m.Update(r.id, list, ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("write action list: %w", err)
	}
	l.byID[r.id], l.byV[r.v] = r, r
	return r, nil
}

// adopt registers a list found in the pinned map, with no references yet.
func (l *actionLists) adopt(id uint32, list *actionList) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(list)), unsafe.Sizeof(*list))
	r := &listRef{id: id, v: string(b)}
	l.byID[id] = r
	if l.byV[r.v] == nil {
		l.byV[r.v] = r
	}
	l.next = max(l.next, id)
}

// ref adds a reference to an adopted list; false if there is none.
func (l *actionLists) ref(id uint32) bool {
	r := l.byID[id]
	if r == nil {
		return false
	}
	r.refs++
	return true
}

// dropUnused deletes adopted lists no flow uses.
func (l *actionLists) dropUnused() {
	for id, r := range l.byID {
		if r.refs == 0 {
			r.refs = 1
			l.put(id)
		}
	}
}

// put drops a reference, deleting the list with the last.
func (l *actionLists) put(id uint32) {
	r := l.byID[id]
	if r == nil {
		return
	}
	if r.refs--; r.refs > 0 {
		return
	}
	delete(l.byID, id)
	delete(l.byV, r.v)
	_ = l.m.Delete(id) // only fails if already gone
}

// greFits reports whether the kernel can apply the GRE encapsulations of
// acts: only as the last output (last), of an untagged IP frame that no
// action tags.
func greFits(key *flow.Key, acts []flow.Action, last int) bool {
	tagged := key.VLAN[0] != 0 || key.EtherType != packet.EtherTypeIPv4 && key.EtherType != packet.EtherTypeIPv6
	for i := 0; i <= last && i < len(acts); i++ {
		switch acts[i].Type {
		case flow.ActPushVLAN:
			tagged = true
		case flow.ActPopVLAN:
			// A pop can only make an inner tag the outer one.
		case flow.ActEncap:
			if acts[i].Tunnel == packet.TunnelGRE && (i != last || tagged) {
				return false
			}
		}
	}
	return true
}
