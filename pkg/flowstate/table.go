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
	s := t.find(k, h)
	if s < 0 {
		t.mu.Unlock()
		return Match{}
	}
	r := slotRef(t.idx[s])
	i := int32(r >> 1)
	e := t.ent(i)
	if e.expires <= now {
		t.retire(i, now)
		t.stats.Expired++
		t.mu.Unlock()
		return Match{}
	}
	t.stats.Hits++
	reply := r&1 == 1
	t.refresh(i, e.state.advance(e.fwd.Proto, tcpFlags, reply), now)
	m := Match{Entry: Entry{Fwd: e.fwd, Rev: e.rev, State: e.state}, Found: true, Reply: reply}
	t.mu.Unlock()
	return m
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
	s := t.find(k, h)
	if s < 0 {
		return Match{}
	}
	r := slotRef(t.idx[s])
	e := t.ent(int32(r >> 1))
	if e.expires <= now {
		return Match{}
	}
	t.stats.Hits++
	return Match{Entry: Entry{Fwd: e.fwd, Rev: e.rev, State: e.state}, Found: true, Reply: r&1 == 1}
}

// Touch refreshes the lifetime of the entry k is a key of, without
// changing its state: the agent calls it for the state keys of flows that
// are still forwarding (the datapath does not show their packets to the
// simulation). It reports whether the entry exists.
func (t *Table) Touch(k *Key, now int64) bool {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.find(k, h)
	if s < 0 {
		return false
	}
	i := int32(slotRef(t.idx[s]) >> 1)
	if t.ent(i).expires <= now {
		return false // Sweep reports it
	}
	t.refresh(i, t.ent(i).state, now)
	return true
}

// Get returns the entry k is a key of, without refreshing it.
func (t *Table) Get(k *Key) (Entry, bool) {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.find(k, h)
	if s < 0 {
		return Entry{}, false
	}
	e := t.ent(int32(slotRef(t.idx[s]) >> 1))
	return Entry{Fwd: e.fwd, Rev: e.rev, State: e.state}, true
}

// Remove deletes the entry k is a key of. Its tags are reported by the
// next Sweep, like an expiry's.
func (t *Table) Remove(k *Key, now int64) (Entry, bool) {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.find(k, h)
	if s < 0 {
		return Entry{}, false
	}
	i := int32(slotRef(t.idx[s]) >> 1)
	e := t.ent(i)
	out := Entry{Fwd: e.fwd, Rev: e.rev, State: e.state}
	t.retire(i, now)
	t.stats.Removed++
	return out, true
}

// retire removes entry i: both index slots, its list, its zone count and,
// for a local SNAT binding, its port. The tags of its keys are queued for
// Sweep, since flows that read them must be invalidated.
func (t *Table) retire(i int32, now int64) {
	e := t.ent(i)
	for _, k := range [2]*Key{&e.fwd, &e.rev} {
		if s := t.find(k, t.hash(k)); s >= 0 {
			t.unplace(s)
		}
		if len(t.dead) < maxDeadTags {
			t.dead = append(t.dead, k.Tag())
		} else {
			t.stats.TagsDropped++
		}
	}
	if e.flags&fOwnsPort != 0 {
		t.releasePort(e.fwd.Zone, e.rev.Dst, e.fwd.Proto, e.rev.DstPort, now)
	}
	t.unlink(i)
	if c := t.zones[e.fwd.Zone] - 1; c > 0 {
		t.zones[e.fwd.Zone] = c
	} else {
		delete(t.zones, e.fwd.Zone)
	}
	*e = entry{next: t.free}
	t.free = i
	t.n--
}

// reap removes up to budget expired entries, oldest first in each class.
// Refreshed entries met at a list's head are moved to its tail (at most
// budget of them too), so a sweep's work stays bounded.
func (t *Table) reap(now int64, budget int) int {
	n := 0
	for c := range t.head {
		for moved := 0; n < budget && moved < budget; {
			i := t.head[c]
			if i < 0 {
				break
			}
			e := t.ent(i)
			switch {
			case e.expires <= now:
				t.retire(i, now)
				t.stats.Expired++
				n++
			case e.flags&fRequeue != 0:
				e.flags &^= fRequeue
				t.unlink(i)
				t.link(i)
				moved++
			default:
				moved = budget // the oldest unrefreshed entry is alive: so are all behind it
			}
		}
	}
	return n
}

// Sweep removes up to budget expired entries (all of them if budget <=
// 0), returns the port blocks that stayed idle past Config.BlockIdle, and
// appends to tags the tags of every entry removed since the last Sweep
// (expired, removed, or found expired by a lookup). The agent invalidates
// the flows carrying them. It returns tags and the number of entries
// removed by this call.
func (t *Table) Sweep(now int64, budget int, tags []uint64) ([]uint64, int) {
	if budget <= 0 {
		budget = int(^uint(0) >> 1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.reap(now, budget)
	t.releaseIdleBlocks(now)
	tags = append(tags, t.dead...)
	t.dead = t.dead[:0]
	return tags, n
}

// Commit makes the entries of tx visible, all or none. A key that belongs
// to a live entry makes it fail with ErrExists unless that entry is the
// same one (two walks of one connection raced: the second refreshes it).
// When the table or a zone is full, expired entries are removed first;
// if there is still no room it fails with ErrTableFull or ErrZoneFull.
// On failure the ports tx reserved are released. Either way tx is left
// holding its entries (the simulation reports them) and must be reset
// before reuse.
func (t *Table) Commit(tx *Tx, now int64) error {
	if tx.n == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var fresh [MaxTxEntries]bool
	need := 0
	if tx.selfClash() {
		t.stats.RefusedExists++
		t.abort(tx, now)
		return ErrExists
	}
	for j := range tx.n {
		dup, err := t.checkNew(&tx.entries[j], now)
		if err != nil {
			t.stats.RefusedExists++
			t.abort(tx, now)
			return err
		}
		if !dup {
			fresh[j] = true
			need++
		}
	}
	if err := t.room(tx, &fresh, need, now); err != nil {
		t.abort(tx, now)
		return err
	}
	for j := range tx.n {
		e := &tx.entries[j]
		if !fresh[j] {
			// Already there: refresh it, and return the port reserved for
			// the duplicate.
			i := int32(slotRef(t.idx[t.find(&e.Fwd, t.hash(&e.Fwd))]) >> 1)
			t.refresh(i, t.ent(i).state, now)
			if tx.owns[j] {
				t.releasePort(e.Fwd.Zone, e.Rev.Dst, e.Fwd.Proto, e.Rev.DstPort, now)
			}
			continue
		}
		var fl uint8
		if tx.owns[j] {
			fl = fOwnsPort
		}
		t.insert(e, fl, now)
		t.stats.Inserted++
	}
	return nil
}

// checkNew reports whether e is already in the table (dup), or fails if
// one of its keys belongs to a different live entry. Expired holders are
// removed on the way.
func (t *Table) checkNew(e *Entry, now int64) (dup bool, err error) {
	for side, k := range [2]*Key{&e.Fwd, &e.Rev} {
		s := t.find(k, t.hash(k))
		if s < 0 {
			continue
		}
		r := slotRef(t.idx[s])
		i := int32(r >> 1)
		old := t.ent(i)
		if old.expires <= now {
			t.retire(i, now)
			t.stats.Expired++
			continue
		}
		if int(r&1) == side && old.fwd == e.Fwd && old.rev == e.Rev {
			dup = true
			continue
		}
		return false, ErrExists
	}
	return dup, nil
}

// room makes sure the fresh entries of tx fit, globally and per zone.
func (t *Table) room(tx *Tx, fresh *[MaxTxEntries]bool, need int, now int64) error {
	fits := func() error {
		if t.n+need > t.cfg.MaxEntries {
			return ErrTableFull
		}
		for j := range tx.n {
			if !fresh[j] {
				continue
			}
			z := tx.entries[j].Fwd.Zone
			k := 0
			for i := range tx.n {
				if fresh[i] && tx.entries[i].Fwd.Zone == z {
					k++
				}
			}
			if int(t.zones[z])+k > t.cfg.MaxPerZone {
				return ErrZoneFull
			}
		}
		return nil
	}
	err := fits()
	if err != nil && t.reap(now, reapBudget) > 0 {
		err = fits()
	}
	switch err {
	case ErrTableFull:
		t.stats.RefusedFull++
	case ErrZoneFull:
		t.stats.RefusedZoneFull++
	}
	return err
}

func (t *Table) insert(e *Entry, flags uint8, now int64) int32 {
	i := t.alloc()
	x := t.ent(i)
	*x = entry{fwd: e.Fwd, rev: e.Rev, state: e.State, cls: classOf(e.Fwd.Proto, e.State), flags: fUsed | flags}
	x.expires = now + t.timeout[x.cls]
	t.link(i)
	t.place(t.hash(&x.fwd), i, false)
	t.place(t.hash(&x.rev), i, true)
	t.zones[e.Fwd.Zone]++
	t.n++
	return i
}

// Abort releases the ports tx reserved; its entries are dropped.
func (t *Table) Abort(tx *Tx, now int64) {
	t.mu.Lock()
	t.abort(tx, now)
	t.mu.Unlock()
}

func (t *Table) abort(tx *Tx, now int64) {
	for j := range tx.n {
		if tx.owns[j] {
			e := &tx.entries[j]
			t.releasePort(e.Fwd.Zone, e.Rev.Dst, e.Fwd.Proto, e.Rev.DstPort, now)
			tx.owns[j] = false
		}
	}
}

// Import adds or refreshes an entry a peer created (its push ahead of the
// data packet, MidoNet's model). Its port, if any, belongs to the peer's
// block, so the entry never returns it to this host's pool. An entry whose
// keys clash with a different live entry is refused with ErrExists.
func (t *Table) Import(e *Entry, now int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.importEntry(e, now)
	return err
}

// Restore imports an entry this host saved before a restart, with at most
// ttl of its lifetime left (what RangeTTL reported), so that a restart
// does not extend lifetimes. Like Import, it is bounded by the table's
// limits.
func (t *Table) Restore(e *Entry, ttl time.Duration, now int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, err := t.importEntry(e, now)
	if err == nil {
		if x := t.ent(i); now+int64(ttl) < x.expires {
			x.expires = now + int64(ttl)
		}
	}
	return err
}

func (t *Table) importEntry(e *Entry, now int64) (int32, error) {
	if e.Fwd == e.Rev {
		t.stats.RefusedExists++
		return -1, ErrExists
	}
	if s := t.find(&e.Fwd, t.hash(&e.Fwd)); s >= 0 {
		i := int32(slotRef(t.idx[s]) >> 1)
		if x := t.ent(i); x.expires > now && x.fwd == e.Fwd && x.rev == e.Rev {
			t.refresh(i, e.State|x.state&replied, now)
			t.stats.Imported++
			return i, nil
		}
	}
	var tx Tx
	tx.add(*e, false)
	fresh := [MaxTxEntries]bool{true}
	if _, err := t.checkNew(e, now); err != nil {
		t.stats.RefusedExists++
		return -1, err
	}
	if err := t.room(&tx, &fresh, 1, now); err != nil {
		return -1, err
	}
	i := t.insert(e, 0, now)
	t.stats.Imported++
	return i, nil
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

// Range calls fn for every entry, in no particular order, until fn
// returns false. It holds the table's lock: fn must not call the Table.
// The agent uses it to hand state over (a restart, a migrating port).
func (t *Table) Range(fn func(e *Entry) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.top {
		x := t.ent(i)
		if x.flags&fUsed == 0 {
			continue
		}
		e := Entry{Fwd: x.fwd, Rev: x.rev, State: x.state}
		if !fn(&e) {
			return
		}
	}
}

// RangeTTL calls fn for every live entry with its remaining lifetime at
// now, until fn returns false: what the agent saves across a restart and
// gives back to Restore. Like Range it holds the table's lock.
func (t *Table) RangeTTL(now int64, fn func(e *Entry, ttl time.Duration) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.top {
		x := t.ent(i)
		if x.flags&fUsed == 0 || x.expires <= now {
			continue
		}
		e := Entry{Fwd: x.fwd, Rev: x.rev, State: x.state}
		if !fn(&e, time.Duration(x.expires-now)) {
			return
		}
	}
}

// RangeTTLFrom is RangeTTL over at most n slots of the table's storage,
// starting at slot from (0 to begin), holding the lock only for them. It
// returns the slot to continue from, or -1 when the walk is done (or fn
// returned false). Walking a large table in chunks keeps the simulations,
// which need the lock, from waiting behind a whole walk; entries created
// or removed between chunks may be seen or missed, as in any snapshot
// taken without stopping the table.
func (t *Table) RangeTTLFrom(from, n int, now int64, fn func(e *Entry, ttl time.Duration) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	end := min(from+n, int(t.top))
	for i := from; i < end; i++ {
		x := t.ent(int32(i))
		if x.flags&fUsed == 0 || x.expires <= now {
			continue
		}
		e := Entry{Fwd: x.fwd, Rev: x.rev, State: x.state}
		if !fn(&e, time.Duration(x.expires-now)) {
			return -1
		}
	}
	if end >= int(t.top) {
		return -1
	}
	return end
}
