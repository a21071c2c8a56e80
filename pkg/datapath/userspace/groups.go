package userspace

import (
	"hash/maphash"
	"slices"
	"sync"
)

// Flow groups: most flows of a table do the same thing to different
// 5-tuples (every flow to one VM rewrites the same MACs, outputs to the
// same port, and depends on the same objects), so flows with equal
// compiled actions and equal tags share one group, which holds the
// actions (a compiled list of four is ~600 bytes), the tags, and its
// flows. The tag index names groups, not flows: a flow costs one slot in
// its group instead of a copy of its tags and a slot per tag, which at
// 100,000 routed flows was a fifth of the table's memory. Tags name
// objects (ports, routers, MAC and ARP entries, chains), never a single
// flow, so groups stay few. A group is immutable but for its flows, and
// goes with the last of them. Guarded by Datapath.mu.
type groupCache struct {
	seed   maphash.Seed
	groups map[uint64][]*flowGroup
}

type flowGroup struct {
	acts  []action
	tags  []uint64
	flows []*flowEntry // flowEntry.slot is its index here
	hash  uint64
	// dead: the group lost its last flow and left the cache; tag index
	// slices may still name it until compaction.
	dead bool
}

func (c *groupCache) init() {
	c.seed = maphash.MakeSeed()
	c.groups = map[uint64][]*flowGroup{}
}

// join adds f to the group of acts (a scratch list the caller keeps) and
// tags, creating it — copying both — when there is none; it reports
// whether the group is new, whose tags the caller then indexes.
func (c *groupCache) join(f *flowEntry, acts []action, tags []uint64) (*flowGroup, bool) {
	h := c.hash(acts, tags)
	var g *flowGroup
	for _, x := range c.groups[h] {
		if sameActs(x.acts, acts) && slices.Equal(x.tags, tags) {
			g = x
			break
		}
	}
	isNew := g == nil
	if isNew {
		g = &flowGroup{acts: append(make([]action, 0, len(acts)), acts...), tags: slices.Clone(tags), hash: h}
		c.groups[h] = append(c.groups[h], g)
	}
	f.group, f.slot = g, int32(len(g.flows))
	g.flows = append(g.flows, f)
	return g, isNew
}

// leave takes f out of its group; when that was the group's last flow,
// the group leaves the cache, is marked dead and leave returns true.
// f.group stays set: the hit path may still read f.acts.
func (c *groupCache) leave(f *flowEntry) bool {
	g := f.group
	last := len(g.flows) - 1
	if moved := g.flows[last]; moved != f {
		g.flows[f.slot] = moved
		moved.slot = f.slot
	}
	g.flows[last] = nil
	g.flows = g.flows[:last]
	if last > 0 {
		if cap(g.flows) > 64 && last < cap(g.flows)/4 { // shrink after a mass expiry
			g.flows = append(make([]*flowEntry, 0, 2*last), g.flows...)
		}
		return false
	}
	g.dead = true
	l := c.groups[g.hash]
	for i, x := range l {
		if x == g {
			l[i] = l[len(l)-1]
			l[len(l)-1] = nil
			l = l[:len(l)-1]
			break
		}
	}
	if len(l) == 0 {
		delete(c.groups, g.hash)
	} else {
		c.groups[g.hash] = l
	}
	return true
}

// hash hashes the actions as installed (flow.Action is comparable; what
// compile derived from them follows from them) and the tags.
func (c *groupCache) hash(acts []action, tags []uint64) uint64 {
	h := uint64(len(acts))
	for i := range acts {
		h = h*0x9e3779b97f4a7c15 ^ maphash.Comparable(c.seed, acts[i].Action)
	}
	for _, t := range tags {
		h = h*0x9e3779b97f4a7c15 ^ maphash.Comparable(c.seed, t)
	}
	return h
}

// sameActs compares compiled lists field by field (action is not
// comparable on purpose).
func sameActs(a, b []action) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Action != y.Action || x.out != y.out || x.dst != y.dst || x.hdr != y.hdr || x.cp != y.cp {
			return false
		}
	}
	return true
}

// compileScratch holds Install's compiled lists until they are shared.
var compileScratch = sync.Pool{New: func() any { s := make([]action, 0, 8); return &s }}
