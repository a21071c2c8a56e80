//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
)

// Connection tracking in the kernel (datapath.ConntrackOffloader). The
// agent offloads the entries of its flowstate.Table into the LRU map "ct"
// (bpf/nagare.h), each under an id this file hands out; a flow that read
// an offloaded entry names its id (flow_val.ct), and the program advances
// the entry's state and lifetime as the flow's packets pass (bpf/ct.h).
// The agent side only keeps which id holds which entry, so that Install
// can resolve a flow's state keys.

type (
	ctKey   = datapathCtKey
	ctEntry = datapathCtEntry
)

// flowstate.Key is the kernel's ct_key byte for byte (layout_test.go).
var _ [unsafe.Sizeof(flowstate.Key{}) - unsafe.Sizeof(ctKey{})]struct{}
var _ [unsafe.Sizeof(ctKey{}) - unsafe.Sizeof(flowstate.Key{})]struct{}

func toCtKey(k *flowstate.Key) ctKey   { return *(*ctKey)(unsafe.Pointer(k)) }
func fromCtKey(k *ctKey) flowstate.Key { return *(*flowstate.Key)(unsafe.Pointer(k)) }

// DefaultConntrackMax is the default capacity of the kernel's connection
// map (Options.ConntrackMax). An LRU map is allocated whole when it is
// created, so this is what every agent pays: about 24 MiB.
const DefaultConntrackMax = 1 << 17

// ctRef names an offloaded entry by one of its keys.
type ctRef struct {
	id  uint32
	rev bool // the key is the entry's reverse key
}

// ctHeld is an id's entry.
type ctHeld struct {
	fwd, rev flowstate.Key
	gen      uint64 // the last sync that saw it in the kernel, or during which it was put
}

// conntrack is the agent side of the "ct" map. Guarded by its mutex,
// taken after Datapath.mu where both are held.
//
// An id is reused only after the flows that named it are gone: freeing
// one invalidates the tags of its entry's keys, which every flow that
// read the entry carries. So a flow never names another connection than
// the one it was installed for.
type conntrack struct {
	mu       sync.Mutex
	byKey    map[flowstate.Key]ctRef
	byID     map[uint32]*ctHeld
	next     uint32   // the next never-used id
	free     []uint32 // ids no entry holds and no flow names
	gen      uint64   // syncs so far
	timeouts [flowstate.NumTimeoutClasses]time.Duration
	max      int
}

func (c *conntrack) init(max int) {
	c.byKey = map[flowstate.Key]ctRef{}
	c.byID = map[uint32]*ctHeld{}
	c.next = 1 // 0 ends a flow's list of ids
	c.timeouts = flowstate.Timeouts{}.ByClass()
	c.max = max
}

// newID returns an id no entry holds and no flow names; c.mu is held.
func (c *conntrack) newID() uint32 {
	if n := len(c.free); n > 0 {
		id := c.free[n-1]
		c.free = c.free[:n-1]
		return id
	}
	for c.next == 0 || c.byID[c.next] != nil {
		c.next++
	}
	id := c.next
	c.next++
	return id
}

// hold records that id holds the entry with keys fwd and rev; c.mu is
// held.
func (c *conntrack) hold(id uint32, fwd, rev flowstate.Key) {
	c.byKey[fwd] = ctRef{id: id}
	c.byKey[rev] = ctRef{id: id, rev: true}
	c.byID[id] = &ctHeld{fwd: fwd, rev: rev, gen: c.gen}
}

// forgetLocked drops id from the index, invalidates the flows that named
// it and frees it; Datapath.mu and c.mu are held. The kernel's entry, if
// any, is the caller's to delete.
func (dp *Datapath) forgetLocked(id uint32) {
	c := &dp.ct
	h := c.byID[id]
	if h == nil {
		return
	}
	delete(c.byID, id)
	for _, k := range [2]*flowstate.Key{&h.fwd, &h.rev} {
		if r, ok := c.byKey[*k]; ok && r.id == id {
			delete(c.byKey, *k)
		}
	}
	dp.invalidateLocked(h.fwd.Tag(), h.rev.Tag())
	c.free = append(c.free, id)
}

// refs resolves a flow's state keys to the ids of the offloaded entries
// they belong to, deduplicated, and which of them the flow's packets
// reply to (bit i of dir for ids[i]); Datapath.mu is held, so that no id
// is freed between this and the flow's install.
func (c *conntrack) refs(keys []flowstate.Key) (ids [ctRefs]uint32, dir uint8, n int) {
	if len(keys) == 0 {
		return ids, 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
outer:
	for i := range keys {
		r, ok := c.byKey[keys[i]]
		if !ok {
			continue
		}
		for j := range n {
			if ids[j] == r.id {
				continue outer
			}
		}
		if n == ctRefs {
			break
		}
		ids[n] = r.id
		if r.rev {
			dir |= 1 << n
		}
		n++
	}
	return ids, dir, n
}

// SetConntrackTimeouts implements datapath.ConntrackOffloader.
func (dp *Datapath) SetConntrackTimeouts(t flowstate.Timeouts) error {
	by := t.ByClass()
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	for i, d := range by {
		dp.kcfg.CtTimeout[i] = uint64(d)
	}
	if err := dp.objs.Config.Put(uint32(0), &dp.kcfg); err != nil {
		return fmt.Errorf("datapath: set conntrack timeouts: %w", err)
	}
	dp.ct.mu.Lock()
	dp.ct.timeouts = by
	dp.ct.mu.Unlock()
	return nil
}

// PutConns implements datapath.ConntrackOffloader.
func (dp *Datapath) PutConns(entries []datapath.ConnEntry) error {
	if len(entries) == 0 {
		return nil
	}
	ids := make([]uint32, 0, len(entries))
	vals := make([]ctEntry, 0, len(entries))
	wall, mono := time.Now().UnixNano(), monoNow()
	toMono := func(t int64) uint64 { return uint64(max(int64(mono)+t-wall, 0)) }
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	c := &dp.ct
	c.mu.Lock()
	defer c.mu.Unlock()
	var stale []uint32
	for i := range entries {
		e := &entries[i]
		v := ctEntry{Fwd: toCtKey(&e.Fwd), Rev: toCtKey(&e.Rev), Used: toMono(e.LastUsed), Expires: toMono(e.Expires),
			State: uint8(e.State)}
		fr, fok := c.byKey[e.Fwd]
		id := fr.id
		if h := c.byID[id]; fok && !fr.rev && h != nil && h.rev == e.Rev {
			var cur ctEntry
			if err := dp.objs.Ct.Lookup(id, &cur); err == nil && cur.Fwd == v.Fwd && cur.Rev == v.Rev {
				// The kernel's copy went on without the agent: merge.
				st := flowstate.State(cur.State).Merge(e.State)
				v.State = uint8(st)
				v.Used = max(cur.Used, v.Used)
				v.Expires = v.Used + uint64(c.timeouts[flowstate.TimeoutClass(e.Fwd.Proto, st)])
			}
			h.gen = c.gen
		} else {
			// A key of another entry belongs to this one now: the
			// agent's table holds one entry per key, so that one is
			// stale.
			for _, k := range [2]*flowstate.Key{&e.Fwd, &e.Rev} {
				if r, ok := c.byKey[*k]; ok {
					stale = append(stale, r.id)
					dp.forgetLocked(r.id)
				}
			}
			id = c.newID()
			c.hold(id, e.Fwd, e.Rev)
		}
		ids = append(ids, id)
		vals = append(vals, v)
	}
	var errs []error
	if len(stale) > 0 {
		if _, err := dp.objs.Ct.BatchDelete(stale, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete replaced connections: %w", err))
		}
	}
	if _, err := dp.objs.Ct.BatchUpdate(ids, vals, nil); err != nil {
		for _, id := range ids {
			dp.forgetLocked(id)
		}
		errs = append(errs, fmt.Errorf("write connections: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("datapath: offload connections: %w", err)
	}
	return nil
}

// SyncConns implements datapath.ConntrackOffloader: it reads the ct map
// in batches, calls fn for every entry without holding a lock, deletes
// the entries fn rejects, and forgets the ids whose entries the kernel
// dropped (LRU).
func (dp *Datapath) SyncConns(fn func(c *datapath.ConnEntry) bool) error {
	if dp.isClosed() {
		return datapath.ErrClosed
	}
	c := &dp.ct
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.mu.Unlock()

	keys := make([]uint32, scanBatch)
	vals := make([]ctEntry, scanBatch)
	var stale []uint32
	var cursor ebpf.MapBatchCursor
	var ce datapath.ConnEntry
	for {
		n, err := dp.objs.Ct.BatchLookup(&cursor, keys, vals, nil)
		wall, mono := time.Now().UnixNano(), int64(monoNow())
		c.mu.Lock()
		for i := range n {
			if h := c.byID[keys[i]]; h != nil && h.fwd == fromCtKey(&vals[i].Fwd) {
				h.gen = gen
			}
		}
		c.mu.Unlock()
		for i := range n {
			v := &vals[i]
			ce = datapath.ConnEntry{Entry: flowstate.Entry{Fwd: fromCtKey(&v.Fwd), Rev: fromCtKey(&v.Rev), State: flowstate.State(v.State)},
				LastUsed: wall - (mono - int64(v.Used)), Expires: wall - (mono - int64(v.Expires))}
			if !fn(&ce) {
				stale = append(stale, keys[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("datapath: read connections: %w", err)
		}
	}
	var errs []error
	if len(stale) > 0 {
		if _, err := dp.objs.Ct.BatchDelete(stale, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("datapath: delete connections: %w", err))
		}
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range stale {
		dp.forgetLocked(id)
	}
	// Entries neither seen by this walk nor put during it are gone from
	// the kernel (evicted).
	for id, h := range c.byID {
		if h.gen < gen {
			dp.forgetLocked(id)
		}
	}
	return errors.Join(errs...)
}

// ConntrackStats implements datapath.ConntrackOffloader.
func (dp *Datapath) ConntrackStats() datapath.ConntrackStats {
	c := &dp.ct
	c.mu.Lock()
	n := len(c.byID)
	c.mu.Unlock()
	s := datapath.ConntrackStats{Entries: n, Max: c.max, BytesPerEntry: dp.ctBytes}
	if dp.isClosed() {
		return s
	}
	k := dp.counters()
	s.Missing, s.Expired = k[cCtMissing], k[cCtExpired]
	return s
}

var _ datapath.ConntrackOffloader = (*Datapath)(nil)

// initConfig reads the config entry (a predecessor's, when the maps were
// adopted: its tunnels keep working until SetTunnels) and writes it back
// with the default conntrack timeouts until SetConntrackTimeouts.
func (dp *Datapath) initConfig() error {
	if err := dp.objs.Config.Lookup(uint32(0), &dp.kcfg); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	for i, d := range dp.ct.timeouts {
		if dp.kcfg.CtTimeout[i] == 0 {
			dp.kcfg.CtTimeout[i] = uint64(d)
		}
	}
	if err := dp.objs.Config.Put(uint32(0), &dp.kcfg); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if n, err := mapMemlock(dp.objs.Ct); err == nil && dp.opts.ConntrackMax > 0 {
		dp.ctBytes = int(n / uint64(dp.opts.ConntrackMax))
	}
	return nil
}

// mapMemlock reads the kernel's account of a map's memory (fdinfo
// memlock): for a preallocated map, what it takes whole; for a hash map
// without preallocation, what its elements take.
func mapMemlock(m *ebpf.Map) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no memlock in fdinfo")
}

// adoptConns rebuilds the index from a predecessor's pinned connection
// map; the agent reads the entries back into its table with SyncConns.
func (dp *Datapath) adoptConns() (int, error) {
	var (
		id uint32
		e  ctEntry
	)
	c := &dp.ct
	it := dp.objs.Ct.Iterate()
	for it.Next(&id, &e) {
		fwd, rev := fromCtKey(&e.Fwd), fromCtKey(&e.Rev)
		if _, taken := c.byKey[fwd]; taken || c.byKey[rev] != (ctRef{}) || fwd == rev || id == 0 {
			_ = dp.objs.Ct.Delete(id) // not an entry this layout writes
			continue
		}
		c.hold(id, fwd, rev)
		c.next = max(c.next, id+1)
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("adopt connections: %w", err)
	}
	return len(c.byID), nil
}
