package flowstate

import (
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxEntries = 1 << 20
	DefaultMaxPerZone = 1 << 16
	DefaultBlockIdle  = 60 * time.Second
	// maxDeadTags bounds the tags of removed entries kept for Sweep to
	// hand out; beyond it they are counted in Stats.TagsDropped.
	maxDeadTags = 1 << 17
	// reapBudget is how many expired entries an insert into a full table
	// (or zone) may remove to make room before refusing.
	reapBudget = 256
)

// Errors of Commit, Import and AllocSNAT. They are sentinels: the per-packet
// path does not allocate to fail.
var (
	// ErrTableFull: the table holds Config.MaxEntries live entries.
	ErrTableFull = errors.New("flowstate: table full")
	// ErrZoneFull: the zone holds Config.MaxPerZone live entries.
	ErrZoneFull = errors.New("flowstate: zone full")
	// ErrExists: a key of the entry belongs to another live entry.
	ErrExists = errors.New("flowstate: key belongs to another entry")
	// ErrNoPorts: no port (or echo identifier) of the NAT targets is free
	// and no block could be leased.
	ErrNoPorts = errors.New("flowstate: NAT ports exhausted")
	// ErrNotTranslatable: the protocol has no ports to translate
	// dynamically.
	ErrNotTranslatable = errors.New("flowstate: protocol has no ports to translate")
	// ErrTxFull: the simulation's transaction holds MaxTxEntries entries.
	ErrTxFull = errors.New("flowstate: too many entries in one transaction")
)

// Config sizes a Table.
type Config struct {
	// MaxEntries bounds the live entries (connections plus NAT bindings);
	// default DefaultMaxEntries. Memory is about 150 bytes per entry
	// (see the package documentation).
	MaxEntries int
	// MaxPerZone bounds the live entries of one zone, so that a VM
	// opening connections as fast as it can fills its own zone, not the
	// table; default DefaultMaxPerZone (or MaxEntries if smaller).
	MaxPerZone int
	// Timeouts are the entries' lifetimes.
	Timeouts Timeouts
	// Blocks leases SNAT port blocks. Nil means a private MemBlocks: right
	// for one host, wrong for several (they would hand out the same ports).
	Blocks Blocks
	// BlockIdle is how long a leased block stays unused before Sweep
	// returns it (default DefaultBlockIdle): a short grace keeps a busy
	// host from leasing and releasing the same block over and over.
	BlockIdle time.Duration
}

// Stats are a Table's counters. Refusals are how exhaustion is reported:
// counted, never a crash or an unbounded allocation.
type Stats struct {
	Entries int // live entries
	Zones   int // zones with live entries

	Lookups, Hits   uint64
	Inserted        uint64 // by Commit
	Imported        uint64 // by Import, new or refreshed
	Expired         uint64 // removed because their time ran out
	Removed         uint64 // removed by Remove
	RefusedFull     uint64 // Commit or Import refused: table full
	RefusedZoneFull uint64 // refused: zone full
	RefusedExists   uint64 // refused: a key belongs to another entry
	TagsDropped     uint64 // tags of removed entries lost between Sweeps

	PortsInUse     int    // SNAT ports held by local bindings and open transactions
	BlocksLeased   int    // port blocks this table holds
	PortsExhausted uint64 // AllocSNAT failures
	LeaseFailures  uint64 // Blocks.Lease errors
}

// entry is the stored form of an Entry (120 bytes). It holds no pointer,
// so the slab is never scanned by the garbage collector.
type entry struct {
	fwd, rev   Key
	expires    int64
	prev, next int32 // expiry list of cls; next also links the free list
	state      State
	cls        class
	flags      uint8
}

// public is the Entry e stores.
func (e *entry) public() Entry { return Entry{Fwd: e.fwd, Rev: e.rev, State: e.state} }

const (
	fUsed     uint8 = 1 << iota
	fOwnsPort       // a local SNAT binding: its port returns to the pool on removal
	fRequeue        // refreshed since it was queued: the sweep moves it to the tail
)

const (
	chunkShift = 11
	chunkSize  = 1 << chunkShift
)

// Table is the connection-tracking and NAT state of one host: entries
// indexed by both their keys, expiry lists, per-zone counts and the PAT
// allocator. It is safe for concurrent use (one mutex; the simulation
// consults it only on flow misses, which it serializes per port).
// Lookups do not allocate.
type Table struct {
	mu      sync.Mutex
	cfg     Config
	timeout [numClasses]int64
	seed    maphash.Seed

	idx    []uint64
	used   int
	chunks [][]entry
	top    int32 // entries ever allocated from the chunks
	free   int32 // free list of entry indexes, -1 when empty
	n      int
	head   [numClasses]int32
	tail   [numClasses]int32
	zones  map[uint64]int32
	dead   []uint64

	pools map[poolKey]*pool
	stats Stats
}

// New returns an empty Table.
func New(cfg Config) *Table {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxPerZone <= 0 {
		cfg.MaxPerZone = DefaultMaxPerZone
	}
	cfg.MaxPerZone = min(cfg.MaxPerZone, cfg.MaxEntries)
	if cfg.Blocks == nil {
		cfg.Blocks = NewMemBlocks()
	}
	if cfg.BlockIdle <= 0 {
		cfg.BlockIdle = DefaultBlockIdle
	}
	t := &Table{cfg: cfg, timeout: cfg.Timeouts.table(), seed: maphash.MakeSeed(), idx: make([]uint64, minIndex),
		free: -1, zones: map[uint64]int32{}, pools: map[poolKey]*pool{}}
	for c := range t.head {
		t.head[c], t.tail[c] = -1, -1
	}
	return t
}

func (t *Table) hash(k *Key) uint32 { return uint32(maphash.Comparable(t.seed, *k)) }

func (t *Table) ent(i int32) *entry { return &t.chunks[i>>chunkShift][i&(chunkSize-1)] }

func (t *Table) alloc() int32 {
	if i := t.free; i >= 0 {
		t.free = t.ent(i).next
		return i
	}
	if int(t.top)>>chunkShift == len(t.chunks) {
		t.chunks = append(t.chunks, make([]entry, chunkSize))
	}
	i := t.top
	t.top++
	return i
}

func (t *Table) link(i int32) {
	e := t.ent(i)
	c := e.cls
	e.prev, e.next = t.tail[c], -1
	if e.prev >= 0 {
		t.ent(e.prev).next = i
	} else {
		t.head[c] = i
	}
	t.tail[c] = i
}

func (t *Table) unlink(i int32) {
	e := t.ent(i)
	if e.prev >= 0 {
		t.ent(e.prev).next = e.next
	} else {
		t.head[e.cls] = e.next
	}
	if e.next >= 0 {
		t.ent(e.next).prev = e.prev
	} else {
		t.tail[e.cls] = e.prev
	}
}

// refresh gives entry i a new state and a full lifetime from now. It does
// not move the entry to the tail of its class's list, which would touch
// three more entries (four cache misses on a large table, two thirds of a
// lookup's cost): it marks it, and the sweep moves marked entries when it
// finds them at the head. Lists so stay ordered by the time each entry was
// last queued, and an entry is swept at most one timeout after it
// expired; lookups check the expiry time themselves, so that lateness
// costs memory, never correctness. A change of class (SYN-sent to
// established) does move it, since the lists are per timeout.
func (t *Table) refresh(i int32, s State, now int64) {
	e := t.ent(i)
	e.state = s
	if c := classOf(e.fwd.Proto, s); c != e.cls {
		t.unlink(i)
		e.cls = c
		e.flags &^= fRequeue
		t.link(i)
	} else {
		e.flags |= fRequeue
	}
	e.expires = now + t.timeout[e.cls]
}

// Lookup finds the entry that k (with zone and type set) is a key of,
// advances its state with the packet's TCP flags (0 for other protocols)
// and refreshes its lifetime. An expired entry is removed and not found.
func (t *Table) Lookup(k *Key, tcpFlags uint8, now int64) Match {
	h := t.hash(k)
	t.mu.Lock()
	t.stats.Lookups++
	// The per-packet path spells locate and expired out: neither inlines,
	// and with the two calls BenchmarkLookupHit measured ~20% slower.
	s := t.find(k, h)
	if s < 0 {
		t.mu.Unlock()
		return Match{}
	}
	r := slotRef(t.idx[s])
	i, reply := int32(r>>1), r&1 == 1
	e := t.ent(i)
	if e.expires <= now {
		t.expire(i, now)
		t.mu.Unlock()
		return Match{}
	}
	t.stats.Hits++
	t.refresh(i, e.state.advance(e.fwd.Proto, tcpFlags, reply), now)
	m := Match{Entry: e.public(), Found: true, Reply: reply}
	t.mu.Unlock()
	return m
}

// expired removes entry i and reports true if its lifetime ended before
// now. Lookups call it on what they find, so that an entry the sweep has
// not reached yet is never taken for live.
func (t *Table) expired(i int32, now int64) bool {
	if t.ent(i).expires > now {
		return false
	}
	t.expire(i, now)
	return true
}

func (t *Table) expire(i int32, now int64) {
	t.retire(i, now)
	t.stats.Expired++
}

// Peek finds the entry k is a key of like Lookup, but changes nothing:
// what an ICMP error is looked up with. An error is evidence neither that
// the connection progressed nor that it is alive (Linux conntrack does not
// let related packets refresh either), and anyone can send one.
func (t *Table) Peek(k *Key, now int64) Match {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Lookups++
	i, reply, ok := t.locate(k, h)
	if !ok || t.ent(i).expires <= now {
		return Match{}
	}
	t.stats.Hits++
	return Match{Entry: t.ent(i).public(), Found: true, Reply: reply}
}

// Touch refreshes the lifetime of the entry k is a key of, without
// changing its state: the agent calls it for the state keys of flows that
// are still forwarding (the datapath does not show their packets to the
// simulation). It reports whether the entry exists.
func (t *Table) Touch(k *Key, now int64) bool {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _, ok := t.locate(k, h)
	if !ok || t.ent(i).expires <= now {
		return false // Sweep reports an expired one
	}
	t.refresh(i, t.ent(i).state, now)
	return true
}

// Get returns the entry k is a key of, without refreshing it.
func (t *Table) Get(k *Key) (Entry, bool) {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _, ok := t.locate(k, h)
	if !ok {
		return Entry{}, false
	}
	return t.ent(i).public(), true
}

// Remove deletes the entry k is a key of. Its tags are reported by the
// next Sweep, like an expiry's.
func (t *Table) Remove(k *Key, now int64) (Entry, bool) {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _, ok := t.locate(k, h)
	if !ok {
		return Entry{}, false
	}
	out := t.ent(i).public()
	t.retire(i, now)
	t.stats.Removed++
	return out, true
}

// Len returns the number of live (or not yet swept) entries.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// ZoneLen returns the number of entries of one zone.
func (t *Table) ZoneLen(zone uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.zones[zone])
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Entries, s.Zones = t.n, len(t.zones)
	s.PortsInUse, s.BlocksLeased = t.portsInUse()
	return s
}
