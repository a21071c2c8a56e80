package nsdb

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
)

// TestRangeCompare pins down what the prefix compare of a range read does,
// because the store's correctness rests on it: a key appearing under the
// prefix after the read fails the commit; an empty range that stays empty
// passes (etcd compares an empty range as one zero key, ModRevision 0); a
// key deleted from a small range fails through its own compare.
func TestRangeCompare(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name    string
		before  []string // keys under the prefix before the read
		between func(prefix string)
		wantOK  bool
	}{
		{"empty range stays empty", nil, nil, true},
		{"key appears in empty range", nil, func(p string) { f.put(p + "new") }, false},
		{"key appears in non-empty range", []string{"a"}, func(p string) { f.put(p + "new") }, false},
		{"key in range modified", []string{"a"}, func(p string) { f.put(p + "a") }, false},
		{"key in range deleted", []string{"a", "b"}, func(p string) { f.del(p + "a") }, false},
		{"key outside range written", []string{"a"}, func(p string) { f.put(p[:len(p)-1] + "-other") }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "/nagare/test/" + uuid.NewString() + "/"
			for _, k := range tc.before {
				f.put(prefix + k)
			}
			// Another key pins the snapshot first, so the range is read at a
			// revision other than its own last write, as in real transactions.
			f.put("/nagare/test/pin")
			tx := newTx(f.s, f.ctx, false)
			if _, _, err := tx.get("/nagare/test/pin"); err != nil {
				t.Fatal(err)
			}
			es, err := tx.scan(prefix, false)
			if err != nil || len(es) != len(tc.before) {
				t.Fatalf("scan: %v %v", es, err)
			}
			if tc.between != nil {
				tc.between(prefix)
			}
			tx.put(prefix+"written", []byte("x"))
			_, ok, err := tx.commit()
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK {
				t.Fatalf("commit succeeded = %v, want %v", ok, tc.wantOK)
			}
		})
	}
}

func (f *fixture) put(key string) {
	f.t.Helper()
	if _, err := f.cli.Put(f.ctx, key, uuid.NewString()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) del(key string) {
	f.t.Helper()
	if _, err := f.cli.Delete(f.ctx, key); err != nil {
		f.t.Fatal(err)
	}
}

// TestTxSeesOwnWrites: reads inside a transaction see its buffered writes,
// and List orders objects it created after stored ones, in creation order.
func TestTxSeesOwnWrites(t *testing.T) {
	f := newFixture(t)
	old := f.bridge("old")
	var ids []string
	_, err := f.s.Update(f.ctx, func(tx *Tx) error {
		ids = ids[:0]
		for i := range 3 {
			o, err := tx.Create(&model.Bridge{Name: strconv.Itoa(i)})
			if err != nil {
				return err
			}
			ids = append(ids, o.GetMeta().ID)
		}
		if err := tx.Delete(model.BridgeKind, ids[1]); err != nil {
			return err
		}
		list, err := tx.List(model.BridgeKind, "", "")
		if err != nil {
			return err
		}
		var got []string
		for _, o := range list {
			got = append(got, o.GetMeta().ID)
		}
		if want := []string{old.ID, ids[0], ids[2]}; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("list in tx = %v, want %v", got, want)
		}
		if _, err := tx.Get(model.BridgeKind, ids[1]); !errors.Is(err, model.ErrNotFound) {
			return fmt.Errorf("deleted in tx: get = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.gone(model.BridgeKind, ids[1])
	f.get(model.BridgeKind, ids[2])
}

// TestConcurrentModifySameRevision: two writers based on the same revision;
// exactly one wins, the other is told its revision is stale, and the stored
// object is the winner's.
func TestConcurrentModifySameRevision(t *testing.T) {
	f := newFixture(t)
	b := f.bridge("start")
	for round := range 20 {
		cur := f.get(model.BridgeKind, b.ID)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() {
				_, errs[i] = f.s.Modify(f.ctx, model.BridgeKind, b.ID, cur.GetMeta().Revision, func(o model.Object) error {
					o.(*model.Bridge).Name = fmt.Sprintf("r%d-w%d", round, i)
					return nil
				})
			})
		}
		wg.Wait()
		winners := 0
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
				winner = i
			case !errors.Is(err, model.ErrConflict):
				t.Fatalf("round %d writer %d: %v", round, i, err)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d writers succeeded (%v), want exactly 1", round, winners, errs)
		}
		if got, want := f.get(model.BridgeKind, b.ID).(*model.Bridge).Name, fmt.Sprintf("r%d-w%d", round, winner); got != want {
			t.Fatalf("round %d: stored name %q, want the winner's %q", round, got, want)
		}
	}
}

// TestNoLostUpdate: unconditional read-modify-write from many goroutines;
// the transaction reruns losers, so every increment lands.
func TestNoLostUpdate(t *testing.T) {
	f := newFixture(t)
	b := f.bridge("0")
	const writers = 20
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			_, err := f.s.Modify(f.ctx, model.BridgeKind, b.ID, 0, func(o model.Object) error {
				n, _ := strconv.Atoi(o.(*model.Bridge).Name)
				o.(*model.Bridge).Name = strconv.Itoa(n + 1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := f.get(model.BridgeKind, b.ID).(*model.Bridge).Name; got != strconv.Itoa(writers) {
		t.Fatalf("counter = %s after %d increments", got, writers)
	}
}

// TestRemoveVersusCreate races deleting a bridge against adding a port to
// it: whatever the interleaving, no port may outlive its bridge.
func TestRemoveVersusCreate(t *testing.T) {
	f := newFixture(t)
	for round := range 30 {
		b := f.bridge(fmt.Sprint(round))
		var wg sync.WaitGroup
		var removeErr, createErr error
		wg.Go(func() { removeErr = f.s.Remove(f.ctx, model.BridgeKind, b.ID, 0) })
		wg.Go(func() { _, createErr = f.s.Create(f.ctx, &model.Port{BridgeID: b.ID}) })
		wg.Wait()
		ports, _, err := f.s.List(f.ctx, model.PortKind, "bridge_id", b.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, getErr := f.s.Get(f.ctx, model.BridgeKind, b.ID)
		switch {
		case removeErr == nil && createErr == nil:
			t.Fatalf("round %d: both the bridge delete and the port create succeeded", round)
		case removeErr == nil: // the port lost: its bridge is gone
			var fe *model.FieldError
			if !errors.As(createErr, &fe) || fe.Field != "bridge_id" || len(ports) != 0 || getErr == nil {
				t.Fatalf("round %d: bridge deleted; create: %v, %d ports left, get bridge: %v", round, createErr, len(ports), getErr)
			}
		default: // the port won: the bridge still has it
			if !errors.Is(removeErr, model.ErrConflict) || len(ports) != 1 || getErr != nil {
				t.Fatalf("round %d: port created; remove: %v, %d ports, get bridge: %v", round, removeErr, len(ports), getErr)
			}
		}
	}
	// And a scan over everything: no port names a missing bridge.
	ports, _, err := f.s.List(f.ctx, model.PortKind, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if _, err := f.s.Get(f.ctx, model.BridgeKind, p.(*model.Port).BridgeID); err != nil {
			t.Errorf("port %s: %v", p.GetMeta().ID, err)
		}
	}
}

// TestCommitIsOneTransaction: a cascade is one etcd revision.
func TestCommitIsOneTransaction(t *testing.T) {
	f := newFixture(t)
	c := f.chain("c")
	for range 50 {
		f.rule(c.ID, 0)
	}
	_, before := f.snapshot()
	if err := f.s.Remove(f.ctx, model.ChainKind, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, after := f.snapshot(); after != before+1 {
		t.Fatalf("deleting a chain of 50 rules took revisions %d..%d, want one", before, after)
	}
}

// TestSnapshotReads: every read of a transaction comes from the revision
// its first read saw, whether a single get, a batched prefetch or a scan,
// so the write rules never see half of another transaction.
func TestSnapshotReads(t *testing.T) {
	f := newFixture(t)
	for _, k := range []string{"a", "b", "c/1"} {
		if _, err := f.cli.Put(f.ctx, "/nagare/snap/"+k, "old"); err != nil {
			t.Fatal(err)
		}
	}
	tx := newTx(f.s, f.ctx, false)
	if v, _, err := tx.get("/nagare/snap/a"); err != nil || string(v) != "old" {
		t.Fatalf("first read: %q %v", v, err)
	}
	for _, k := range []string{"b", "c/1", "c/2"} {
		if _, err := f.cli.Put(f.ctx, "/nagare/snap/"+k, "new"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.prefetch([]string{"/nagare/snap/b"}); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := tx.get("/nagare/snap/b"); string(v) != "old" {
		t.Errorf("prefetched b = %q, want the snapshot's old value", v)
	}
	es, err := tx.scan("/nagare/snap/c/", false)
	if err != nil || len(es) != 1 || string(es[0].value) != "old" {
		t.Errorf("scan = %+v %v, want only c/1 with its old value", es, err)
	}
	tx.put("/nagare/snap/out", nil)
	if _, ok, err := tx.commit(); err != nil || ok {
		t.Errorf("commit over changed reads: ok %v err %v, want refused", ok, err)
	}
}

// TestListGuards: objects listed through the reverse index inside a
// transaction are guarded like single reads, whether few (each key
// compared) or many (the kind's prefix compared).
func TestListGuards(t *testing.T) {
	f := newFixture(t)
	for _, n := range []int{3, rangeKeyCompares + 6} {
		for _, change := range []string{"modify", "add", "delete"} {
			if n > rangeKeyCompares && change == "delete" {
				continue // large ranges do not see deletions (see the package doc)
			}
			t.Run(fmt.Sprintf("%d ports/%s", n, change), func(t *testing.T) {
				b := f.bridge("b")
				fill(t, f.s, b.ID, n)
				tx := newTx(f.s, f.ctx, false)
				ports, err := tx.List(model.PortKind, "bridge_id", b.ID)
				if err != nil || len(ports) != n {
					t.Fatalf("list: %d ports, %v", len(ports), err)
				}
				victim := ports[n/2].GetMeta().ID
				switch change {
				case "modify":
					f.modify(model.PortKind, victim, func(o model.Object) { o.(*model.Port).VLAN = 7 })
				case "add":
					f.bridgePort(b.ID)
				case "delete":
					if err := f.s.Remove(f.ctx, model.PortKind, victim, 0); err != nil {
						t.Fatal(err)
					}
				}
				tx.put("/nagare/test/out", nil)
				if _, ok, err := tx.commit(); err != nil || ok {
					t.Fatalf("commit after a listed port changed: ok %v err %v, want refused", ok, err)
				}
			})
		}
	}
}
