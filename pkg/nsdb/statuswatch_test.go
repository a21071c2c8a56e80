package nsdb

import (
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
)

// TestWatchDatapathStatus: the statuses agents publish arrive as a Reset,
// then as changes; a status going with its agent's lease arrives as nil,
// and a value that does not decode is left out rather than ending the
// watch.
func TestWatchDatapathStatus(t *testing.T) {
	f := newFixture(t)
	put := func(host string, st *DatapathStatus, lease clientv3.LeaseID) {
		t.Helper()
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.cli.Put(f.ctx, DatapathStatusKey(host), string(b), clientv3.WithLease(lease)); err != nil {
			t.Fatal(err)
		}
	}
	const h1, h2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
	put(h1, &DatapathStatus{HostID: h1, Flows: 3}, 0)
	w := startWatch(t, f.s.WatchDatapathStatus)
	if b := w.next(); !b.Reset || len(b.Status) != 1 || b.Status[h1] == nil || b.Status[h1].Flows != 3 {
		t.Fatalf("first batch %+v, want a Reset with h1", b)
	}
	lease, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	put(h2, &DatapathStatus{HostID: h2, Flows: 7, SimulationDrops: map[string]uint64{"rule-drop": 2}}, lease.ID)
	if b := w.next(); b.Reset || b.Status[h2] == nil || b.Status[h2].SimulationDrops["rule-drop"] != 2 {
		t.Fatalf("h2 published: %+v", b)
	}
	if _, err := f.cli.Put(f.ctx, DatapathStatusKey(h1), "{not json"); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); len(b.Status) != 0 {
		t.Fatalf("a malformed status delivered: %+v", b)
	}
	if _, err := f.cli.Revoke(f.ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); len(b.Status) != 1 {
		t.Fatalf("h2's lease revoked: %+v", b)
	} else if st, ok := b.Status[h2]; !ok || st != nil {
		t.Fatalf("h2's lease revoked: %+v, want h2 reported nil", b)
	}
}

var watchTestKind = model.RegisterInternal("nsdb-watch-test", "nsdb-watch-tests", "An internal kind for TestWatchInternalChanges.", &watchTestObject{}, nil)

type watchTestObject struct {
	model.Meta
	Name string `json:"name"`
}

// TestWatchInternalChanges: a write to an internal kind is notified with
// its revision; a write to the topology is not.
func TestWatchInternalChanges(t *testing.T) {
	f := newFixture(t)
	w := startWatch(t, f.s.WatchInternalChanges)
	start := w.next()
	f.bridge("topology only")
	o := f.create(&watchTestObject{Name: "x"})
	if rev := w.next(); rev <= start || rev != o.GetMeta().Revision {
		t.Fatalf("notified revision %d after %d, want the internal write's %d", rev, start, o.GetMeta().Revision)
	}
	f.bridge("again topology only")
	select {
	case rev := <-w.ch:
		t.Fatalf("a topology write notified %d", rev)
	case <-time.After(300 * time.Millisecond):
	}
}
