package flowstate

// What a fast path that tracks connections itself (the kernel datapath's
// connection map) needs of the table: the entries with their lifetimes,
// and a way to hand back what it saw. The table stays the source of
// truth; the fast path's copy is refreshed by packets the simulation
// never sees.

// Lifetime returns the live entry k is a key of and when it expires (in
// the table's clock), without refreshing it; ok is false when there is
// none or it has expired.
func (t *Table) Lifetime(k *Key, now int64) (e Entry, expires int64, ok bool) {
	h := t.hash(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _, found := t.locate(k, h)
	if !found || t.ent(i).expires <= now {
		return Entry{}, 0, false
	}
	x := t.ent(i)
	return x.public(), x.expires, true
}

// Seen applies what a fast path saw of entry e's connection: packets
// until lastUsed (the table's clock), leaving the state e.State. The
// entry's state becomes the merge of both copies (Merge), and if lastUsed
// is later than the table's last refresh, its lifetime runs from
// lastUsed. alive is false when the table no longer holds e (both keys,
// one entry): the fast path's copy is stale and should go; changed
// reports that the entry moved.
func (t *Table) Seen(e *Entry, lastUsed int64) (alive, changed bool) {
	h := t.hash(&e.Fwd)
	t.mu.Lock()
	defer t.mu.Unlock()
	i, reply, ok := t.locate(&e.Fwd, h)
	if !ok || reply {
		return false, false
	}
	x := t.ent(i)
	if x.fwd != e.Fwd || x.rev != e.Rev {
		return false, false
	}
	prev := x.expires - t.timeout[x.cls]
	last := max(prev, lastUsed)
	merged := x.state.Merge(e.State)
	if merged == x.state && last == prev {
		return true, false
	}
	t.refresh(i, merged, last)
	return true, true
}

// Merge returns the state of a connection two observers followed
// separately (the table and a fast path): the FINs and the reply either
// saw, in the furthest phase either reached. A SYN that reopened a closed
// tuple on one side is lost in the merge; the closing timeout still ends
// the entry only once packets stop.
func (s State) Merge(o State) State {
	bits := (s | o) &^ phaseMask
	p := max(s.Phase(), o.Phase())
	switch fins := bits & (finFwd | finRev); {
	case fins == finFwd|finRev && p < PhaseTimeWait:
		p = PhaseTimeWait
	case fins != 0 && p < PhaseFinWait:
		p = PhaseFinWait
	}
	if bits&replied != 0 && p == PhaseNew {
		p = PhaseEstablished
	}
	return bits.withPhase(p)
}
