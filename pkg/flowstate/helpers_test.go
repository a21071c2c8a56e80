package flowstate

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

const sec = int64(time.Second)

func key(zone uint64, proto uint8, src string, sp uint16, dst string, dp uint16) Key {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	k := Key{Src: s.As16(), Dst: d.As16(), Zone: zone, SrcPort: sp, DstPort: dp, Proto: proto, Family: 4}
	if !s.Is4() {
		k.Family = 6
	}
	return k
}

func tcp(zone uint64, src string, sp uint16, dst string, dp uint16) Key {
	return key(zone, packet.IPProtoTCP, src, sp, dst, dp)
}

func udp(zone uint64, src string, sp uint16, dst string, dp uint16) Key {
	return key(zone, packet.IPProtoUDP, src, sp, dst, dp)
}

// conn commits a connection from fwd (in its zone) whose replies enter
// zone revZone, as the simulation would.
func conn(t *Table, fwd Key, revZone uint64, flags uint8, now int64) error {
	rev := fwd.Reverse()
	rev.Zone = revZone
	var tx Tx
	tx.Add(NewConn(fwd, rev, flags))
	return t.Commit(&tx, now)
}

func look(t *Table, k Key, flags uint8, now int64) Match {
	k.Type = KeyConn
	return t.Lookup(&k, flags, now)
}

// check verifies the table's invariants: every used entry is reachable
// from both its keys and from exactly one expiry list, every index slot
// points at a used entry, the counts agree.
func (t *Table) check() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	used, slots := 0, 0
	zones := map[uint64]int32{}
	for i := range t.top {
		e := t.ent(i)
		if e.flags&fUsed == 0 {
			continue
		}
		used++
		zones[e.fwd.Zone]++
		for side, k := range [2]*Key{&e.fwd, &e.rev} {
			s := t.find(k, t.hash(k))
			if s < 0 {
				return fmt.Errorf("entry %d: key %d (%v) not in the index", i, side, *k)
			}
			r := slotRef(t.idx[s])
			if int32(r>>1) != i || int(r&1) != side {
				return fmt.Errorf("entry %d: key %d found at ref %d", i, side, r)
			}
		}
	}
	for _, s := range t.idx {
		if s == 0 {
			continue
		}
		slots++
		if e := t.ent(int32(slotRef(s) >> 1)); e.flags&fUsed == 0 {
			return fmt.Errorf("slot %x points at a free entry", s)
		}
	}
	listed := 0
	for c := range t.head {
		prev := int32(-1)
		last := int64(-1 << 63)
		_ = last
		for i := t.head[c]; i >= 0; i = t.ent(i).next {
			e := t.ent(i)
			if e.prev != prev || e.cls != class(c) || e.flags&fUsed == 0 {
				return fmt.Errorf("list %d broken at %d", c, i)
			}
			prev = i
			listed++
			if listed > used {
				return fmt.Errorf("list %d loops", c)
			}
		}
		if t.tail[c] != prev {
			return fmt.Errorf("list %d: tail %d, last %d", c, t.tail[c], prev)
		}
	}
	if used != t.n || slots != 2*used || t.used != slots || listed != used {
		return fmt.Errorf("counts: n %d, used entries %d, slots %d (t.used %d), listed %d", t.n, used, slots, t.used, listed)
	}
	if len(zones) != len(t.zones) {
		return fmt.Errorf("%d zones counted, %d recorded", len(zones), len(t.zones))
	}
	for z, c := range zones {
		if t.zones[z] != c {
			return fmt.Errorf("zone %x: %d entries, recorded %d", z, c, t.zones[z])
		}
	}
	return nil
}
