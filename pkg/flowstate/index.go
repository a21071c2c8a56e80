package flowstate

// The index maps keys to entries. It is an open-addressing table with
// linear probing over uint64 slots, each holding the low 32 bits of the
// key's hash and a reference (entry index << 1 | 1 for the reverse key,
// plus one so that 0 means empty). Deletion shifts later slots back instead
// of leaving tombstones, so probe lengths never degrade with churn.
//
// Why not a Go map: map[Key]uint32 costs 190-270 bytes per connection for
// its two keys (measured, 1M connections), the index about 32; and the
// entries a map would hold could not be chained into expiry lists without
// a second structure. The hash is seeded per table (maphash), so a flood of
// crafted tuples cannot pile up in one probe sequence.

const (
	minIndex  = 1 << 10
	maxLoadOf = 4 // grow when more than 3/4 of the slots are used
)

func slotRef(s uint64) uint32  { return uint32(s) - 1 }
func slotHash(s uint64) uint32 { return uint32(s >> 32) }
func mkSlot(h uint32, ei int32, rev bool) uint64 {
	r := uint32(ei) << 1
	if rev {
		r |= 1
	}
	return uint64(h)<<32 | uint64(r+1)
}

// find returns the slot holding k, or -1.
func (t *Table) find(k *Key, h uint32) int {
	mask := len(t.idx) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := t.idx[i]
		if s == 0 {
			return -1
		}
		if slotHash(s) == h {
			r := slotRef(s)
			e := t.ent(int32(r >> 1))
			kk := &e.fwd
			if r&1 == 1 {
				kk = &e.rev
			}
			if *kk == *k {
				return i
			}
		}
	}
}

// locate returns the entry k is a key of, and whether k is its reverse
// (reply) key; ok is false when k is in no entry.
func (t *Table) locate(k *Key, h uint32) (i int32, reply, ok bool) {
	s := t.find(k, h)
	if s < 0 {
		return -1, false, false
	}
	r := slotRef(t.idx[s])
	return int32(r >> 1), r&1 == 1, true
}

// place stores a slot for a key known to be absent, growing the index
// first if it is getting full.
func (t *Table) place(h uint32, ei int32, rev bool) {
	if (t.used+1)*maxLoadOf > len(t.idx)*(maxLoadOf-1) {
		t.grow()
	}
	t.put(mkSlot(h, ei, rev))
	t.used++
}

func (t *Table) put(s uint64) {
	mask := len(t.idx) - 1
	i := int(slotHash(s)) & mask
	for t.idx[i] != 0 {
		i = (i + 1) & mask
	}
	t.idx[i] = s
}

// grow doubles the index. Slots carry their hash, so nothing is rehashed.
func (t *Table) grow() {
	old := t.idx
	t.idx = make([]uint64, 2*len(old))
	for _, s := range old {
		if s != 0 {
			t.put(s)
		}
	}
}

// unplace empties slot i, shifting back the slots after it whose probe
// sequence passes through i (Knuth 6.4 algorithm R).
func (t *Table) unplace(i int) {
	mask := len(t.idx) - 1
	j := i
	for {
		j = (j + 1) & mask
		s := t.idx[j]
		if s == 0 {
			break
		}
		home := int(slotHash(s)) & mask
		// The slot at j may move to i unless its home lies cyclically in
		// (i, j]: then i is before the start of its probe sequence.
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		t.idx[i] = s
		i = j
	}
	t.idx[i] = 0
	t.used--
}
