// Package persist has the persistent containers incremental snapshots are
// made of: a paged vector and a sharded hash map. A new version copies the
// table of parts and the parts it changes and shares the rest with the
// old one, which stays valid for its readers.
package persist

import (
	"hash/maphash"
	"sync/atomic"
)

// Each part records the generation (gen) of the version that made it. A
// version being built owns the parts of its own generation and changes
// them in place; parts of an older generation are copied first. The
// caller never reuses a generation (NextGen), so a published version is
// never written to.

const (
	pageBits  = 6
	pageSize  = 1 << pageBits
	shardBits = 8
	nShards   = 1 << shardBits
)

// Vec is a persistent vector of T indexed by int32.
type Vec[T any] struct {
	pages    []*vpage[T]
	n        int32
	tableGen uint64
}

type vpage[T any] struct {
	gen   uint64
	items [pageSize]T
}

func (v *Vec[T]) Len() int32 { return v.n }

// At returns element i for reading.
func (v *Vec[T]) At(i int32) *T { return &v.pages[i>>pageBits].items[i&(pageSize-1)] }

// Mut returns element i for writing in generation gen.
func (v *Vec[T]) Mut(i int32, gen uint64) *T {
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

// Push appends x in generation gen and returns its index.
func (v *Vec[T]) Push(x T, gen uint64) int32 {
	i := v.n
	if i&(pageSize-1) == 0 {
		if v.tableGen != gen {
			v.pages = append([]*vpage[T](nil), v.pages...)
			v.tableGen = gen
		}
		v.pages = append(v.pages, &vpage[T]{gen: gen})
	}
	v.n++
	*v.Mut(i, gen) = x
	return i
}

// Map is a persistent hash map. The zero value is empty; hash must be
// set before the first put.
type Map[K comparable, V any] struct {
	shards   *[nShards]*hshard[K, V]
	tableGen uint64
	hash     func(K) uint64
	n        int
}

type hshard[K comparable, V any] struct {
	gen uint64
	m   map[K]V
}

func NewMap[K comparable, V any](hash func(K) uint64) Map[K, V] { return Map[K, V]{hash: hash} }

func (h *Map[K, V]) Get(k K) (V, bool) {
	if h.shards != nil {
		if s := h.shards[h.hash(k)>>(64-shardBits)]; s != nil {
			v, ok := s.m[k]
			return v, ok
		}
	}
	var zero V
	return zero, false
}

func (h *Map[K, V]) Len() int { return h.n }

// shard returns k's shard for writing in generation gen.
func (h *Map[K, V]) shard(k K, gen uint64) *hshard[K, V] {
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

func (h *Map[K, V]) Put(k K, v V, gen uint64) {
	s := h.shard(k, gen)
	if _, ok := s.m[k]; !ok {
		h.n++
	}
	s.m[k] = v
}

func (h *Map[K, V]) Del(k K, gen uint64) {
	if _, ok := h.Get(k); !ok {
		return
	}
	delete(h.shard(k, gen).m, k)
	h.n--
}

// Each calls fn for every entry, in no particular order, until it returns
// false.
func (h *Map[K, V]) Each(fn func(K, V) bool) {
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

// HashString hashes map keys that are strings.
func HashString(s string) uint64 { return maphash.String(seed, s) }

var generation atomic.Uint64

// NextGen is a generation nobody has had.
func NextGen() uint64 { return generation.Add(1) }
