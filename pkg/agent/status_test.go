package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/nsdb"
)

// recordingStatusDB is a fake NSDB that records the statuses written.
type recordingStatusDB struct{ puts []*agentstatus.Datapath }

func (d *recordingStatusDB) PutDatapathStatus(_ context.Context, st *agentstatus.Datapath, _ nsdb.LeaseID) error {
	d.puts = append(d.puts, st)
	return nil
}

func (d *recordingStatusDB) WatchDatapathStatusRequests(ctx context.Context, _ string, _ func() error) error {
	<-ctx.Done()
	return ctx.Err()
}

func testStatus(ports ...string) *agentstatus.Datapath {
	st := &agentstatus.Datapath{HostID: "h", HostName: "hv1", Datapath: "memory",
		FlowState: &agentstatus.FlowState{MaxEntries: 100}}
	for i, id := range ports {
		st.Ports = append(st.Ports, agentstatus.Port{PortID: id, Index: int32(i), Interface: "tap-" + id})
	}
	return st
}

// TestStatusWrites: a status is written when first seen, when its ports
// change, when the lease changes and when asked; a status whose counters
// alone changed waits for countersEvery; an unchanged one is never written.
func TestStatusWrites(t *testing.T) {
	db := &recordingStatusDB{}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	lease := nsdb.LeaseID(1)
	p := &statusPublisher{db: db, host: "h", lease: func() nsdb.LeaseID { return lease },
		log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	counted := func(hits uint64, ports ...string) *agentstatus.Datapath {
		st := testStatus(ports...)
		st.Hits = hits
		st.Ports[0].RxPackets = hits
		return st
	}
	renamed := func(hits uint64) *agentstatus.Datapath { // ports a and b, b's interface renamed
		st := counted(hits, "a", "b")
		st.Ports[1].Interface = "tap-new"
		return st
	}
	steps := []struct {
		name    string
		advance time.Duration
		st      *agentstatus.Datapath
		asked   bool
		lease   nsdb.LeaseID
		write   bool
	}{
		{"first", 0, counted(0, "a"), false, 1, true},
		{"unchanged", statusEvery, counted(0, "a"), false, 1, false},
		{"unchanged long after", time.Hour, counted(0, "a"), false, 1, false},
		{"counters changed", statusEvery, counted(5, "a"), false, 1, true}, // the last write is an hour old
		{"counters changed again, soon", statusEvery, counted(9, "a"), false, 1, false},
		{"counters changed, still soon", countersEvery - 3*statusEvery, counted(12, "a"), false, 1, false},
		{"counters changed, countersEvery after", 2 * statusEvery, counted(13, "a"), false, 1, true},
		{"port added", statusEvery, counted(13, "a", "b"), false, 1, true},
		{"port renamed", statusEvery, renamed(13), false, 1, true},
		{"asked, unchanged", time.Second, renamed(13), true, 1, true},
		{"asked, counters changed", time.Second, renamed(20), true, 1, true},
		{"new lease", time.Second, renamed(20), false, 2, true},
		{"flow-state bound changed", statusEvery, func() *agentstatus.Datapath {
			st := renamed(20)
			st.FlowState.MaxEntries = 7
			return st
		}(), false, 2, true},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		lease = s.lease
		before := len(db.puts)
		p.write(context.Background(), s.st, s.asked)
		if wrote := len(db.puts) > before; wrote != s.write {
			t.Fatalf("%s: wrote %v, want %v", s.name, wrote, s.write)
		}
		if s.write && !db.puts[len(db.puts)-1].Updated.Equal(now) {
			t.Errorf("%s: written with Updated %s, want %s", s.name, db.puts[len(db.puts)-1].Updated, now)
		}
	}
}
