package flowstate

import "time"

// How entries enter the table: a simulation's transaction, a peer's
// push, a restart's restore.

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
			i, _, _ := t.locate(&e.Fwd, t.hash(&e.Fwd))
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
		i, reply, ok := t.locate(k, t.hash(k))
		if !ok || t.expired(i, now) {
			continue
		}
		if old := t.ent(i); reply == (side == 1) && old.fwd == e.Fwd && old.rev == e.Rev {
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
	if i, _, ok := t.locate(&e.Fwd, t.hash(&e.Fwd)); ok {
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
