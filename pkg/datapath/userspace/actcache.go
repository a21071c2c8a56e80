package userspace

import (
	"hash/maphash"
	"sync"
)

// actCache shares compiled action lists between flows: most flows of a
// table do the same thing to different 5-tuples (every flow to one VM
// rewrites the same MACs and outputs to the same port), and a compiled
// list of four actions is ~600 bytes, half of what a routed flow holds.
// Lists are immutable once compiled, so flows can share them; each is
// counted and goes with the last flow using it. Guarded by Datapath.mu.
type actCache struct {
	seed  maphash.Seed
	lists map[uint64][]*sharedActs
}

type sharedActs struct {
	acts []action
	refs int
}

func (c *actCache) init() {
	c.seed = maphash.MakeSeed()
	c.lists = map[uint64][]*sharedActs{}
}

// acquire returns the shared list equal to acts (a scratch list the
// caller keeps), copying acts into a new one when there is none.
func (c *actCache) acquire(acts []action) (*sharedActs, uint64) {
	h := c.hash(acts)
	for _, s := range c.lists[h] {
		if sameActs(s.acts, acts) {
			s.refs++
			return s, h
		}
	}
	s := &sharedActs{acts: append(make([]action, 0, len(acts)), acts...), refs: 1}
	c.lists[h] = append(c.lists[h], s)
	return s, h
}

// release drops a flow's reference to s, found under hash h.
func (c *actCache) release(s *sharedActs, h uint64) {
	if s.refs--; s.refs > 0 {
		return
	}
	l := c.lists[h]
	for i, x := range l {
		if x == s {
			l[i] = l[len(l)-1]
			l[len(l)-1] = nil
			l = l[:len(l)-1]
			break
		}
	}
	if len(l) == 0 {
		delete(c.lists, h)
	} else {
		c.lists[h] = l
	}
}

// hash hashes the lists' actions as installed (flow.Action is
// comparable); what compile derived from them follows from them.
func (c *actCache) hash(acts []action) uint64 {
	h := uint64(len(acts))
	for i := range acts {
		h = h*0x9e3779b97f4a7c15 ^ maphash.Comparable(c.seed, acts[i].Action)
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
