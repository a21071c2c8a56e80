package flowstate

import (
	"math"
	"time"
)

// Expiry and walks: how entries leave the table, and how the agent reads
// all of them.

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
		e := x.public()
		if !fn(&e) {
			return
		}
	}
}

// RangeTTL calls fn for every live entry with its remaining lifetime at
// now, until fn returns false: what the agent saves across a restart and
// gives back to Restore. Like Range it holds the table's lock.
func (t *Table) RangeTTL(now int64, fn func(e *Entry, ttl time.Duration) bool) {
	t.RangeTTLFrom(0, math.MaxInt32, now, fn) // slab indices are int32
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
		e := x.public()
		if !fn(&e, time.Duration(x.expires-now)) {
			return -1
		}
	}
	if end >= int(t.top) {
		return -1
	}
	return end
}
