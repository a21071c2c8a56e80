package sim

import (
	"hash/maphash"
	"net/netip"

	"github.com/nagare/nagare/internal/splitmix"
)

// Persistent containers: what lets Topology.Apply make a new Topology out
// of an old one in time proportional to the change, while the old one stays
// valid for the walks still reading it. Both are split in fixed parts (the
// pages of a vector, the shards of a map); a new version copies the table
// of parts and the parts it changes, and shares the rest with the old one.
//
// Each part records the generation (gen) of the Topology that made it. A
// Topology being built owns the parts of its own generation and changes
// them in place; parts of an older generation are copied first. A
// Topology's generation is never reused, so a published Topology is never
// written to.

const (
	pageBits  = 6
	pageSize  = 1 << pageBits
	shardBits = 8
	nShards   = 1 << shardBits
)

// vec is a persistent vector of T indexed by int32.
type vec[T any] struct {
	pages    []*vpage[T]
	n        int32
	tableGen uint64
}

type vpage[T any] struct {
	gen   uint64
	items [pageSize]T
}

func (v *vec[T]) len() int32 { return v.n }

// at returns element i for reading.
func (v *vec[T]) at(i int32) *T { return &v.pages[i>>pageBits].items[i&(pageSize-1)] }

// mut returns element i for writing in generation gen.
func (v *vec[T]) mut(i int32, gen uint64) *T {
	if v.tableGen != gen {
		v.pages = append([]*vpage[T](nil), v.pages...)
		v.tableGen = gen
	}
	p := v.pages[i>>pageBits]
	if p.gen != gen {
		c := *p
		c.gen = gen
		p = &c
		v.pages[i>>pageBits] = p
	}
	return &p.items[i&(pageSize-1)]
}

// push appends x in generation gen and returns its index.
func (v *vec[T]) push(x T, gen uint64) int32 {
	i := v.n
	if i&(pageSize-1) == 0 {
		if v.tableGen != gen {
			v.pages = append([]*vpage[T](nil), v.pages...)
			v.tableGen = gen
		}
		v.pages = append(v.pages, &vpage[T]{gen: gen})
	}
	v.n++
	*v.mut(i, gen) = x
	return i
}

// hmap is a persistent hash map. The zero value is empty; hash must be
// set before the first put.
type hmap[K comparable, V any] struct {
	shards   *[nShards]*hshard[K, V]
	tableGen uint64
	hash     func(K) uint64
	n        int
}

type hshard[K comparable, V any] struct {
	gen uint64
	m   map[K]V
}

func newHmap[K comparable, V any](hash func(K) uint64) hmap[K, V] { return hmap[K, V]{hash: hash} }

func (h *hmap[K, V]) get(k K) (V, bool) {
	if h.shards != nil {
		if s := h.shards[h.hash(k)>>(64-shardBits)]; s != nil {
			v, ok := s.m[k]
			return v, ok
		}
	}
	var zero V
	return zero, false
}

func (h *hmap[K, V]) len() int { return h.n }

// shard returns k's shard for writing in generation gen.
func (h *hmap[K, V]) shard(k K, gen uint64) *hshard[K, V] {
	if h.tableGen != gen {
		t := new([nShards]*hshard[K, V])
		if h.shards != nil {
			*t = *h.shards
		}
		h.shards, h.tableGen = t, gen
	}
	i := h.hash(k) >> (64 - shardBits)
	s := h.shards[i]
	switch {
	case s == nil:
		s = &hshard[K, V]{gen: gen, m: map[K]V{}}
		h.shards[i] = s
	case s.gen != gen:
		m := make(map[K]V, len(s.m)+1)
		for k, v := range s.m {
			m[k] = v
		}
		s = &hshard[K, V]{gen: gen, m: m}
		h.shards[i] = s
	}
	return s
}

func (h *hmap[K, V]) put(k K, v V, gen uint64) {
	s := h.shard(k, gen)
	if _, ok := s.m[k]; !ok {
		h.n++
	}
	s.m[k] = v
}

func (h *hmap[K, V]) del(k K, gen uint64) {
	if _, ok := h.get(k); !ok {
		return
	}
	delete(h.shard(k, gen).m, k)
	h.n--
}

// each calls fn for every entry, in no particular order, until it returns
// false.
func (h *hmap[K, V]) each(fn func(K, V) bool) {
	if h.shards == nil {
		return
	}
	for _, s := range h.shards {
		if s == nil {
			continue
		}
		for k, v := range s.m {
			if !fn(k, v) {
				return
			}
		}
	}
}

var seed = maphash.MakeSeed()

func hashID(s string) uint64 { return maphash.String(seed, s) }

func hashUint32(k uint32) uint64 { return splitmix.Mix64(uint64(k)) }

func hashMACKey(k macKey) uint64 {
	return splitmix.Mix64(uint64(uint32(k.dev))<<16 ^ uint64(k.vlan) ^ macBits(k.mac)<<8)
}

func hashIPKey(k ipKey) uint64 {
	return splitmix.Mix64(uint64(uint32(k.dev))<<16^uint64(k.vlan)) ^ addrHash(netip.AddrFrom16(k.ip))
}

func hashAddr(a netip.Addr) uint64 { return addrHash(a) }
