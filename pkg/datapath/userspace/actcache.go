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

func (c *actCache) hash(acts []action) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for i := range acts {
		a := &acts[i].Action
		var b [54]byte
		b[0] = byte(a.Type)
		copy(b[1:7], a.MAC[:])
		b[7], b[8] = byte(a.VLAN), byte(a.VLAN>>8)
		b[9], b[10], b[11] = a.Count, byte(a.Tunnel), a.DSCP
		putU32(b[12:], uint32(a.Port))
		putU32(b[16:], a.TunnelKey)
		b[20], b[21] = byte(a.L4Port), byte(a.L4Port>>8)
		u, ad := a.Underlay.As16(), a.Addr.As16()
		copy(b[22:38], u[:])
		copy(b[38:54], ad[:])
		_, _ = h.Write(b[:])
		_, _ = h.WriteString(a.PortID)
		_, _ = h.WriteString(a.Interface)
		_, _ = h.WriteString(a.HostID)
	}
	return h.Sum64()
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
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
