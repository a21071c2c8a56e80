package nsdb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
)

// TestFreshDatapathStatus: a reader's request reaches the agent's watch,
// the status the agent publishes in answer is what the reader gets; an
// agent that does not answer leaves the reader the last status; a host
// without an agent is not found; the request goes with the agent's lease.
func TestFreshDatapathStatus(t *testing.T) {
	f := newFixture(t)
	const h = "00000000-0000-4000-8000-000000000003"
	if _, err := f.s.FreshDatapathStatus(f.ctx, h, time.Second); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("a host without an agent: %v, want not found", err)
	}
	lease, err := f.s.GrantLease(f.ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutDatapathStatus(f.ctx, &DatapathStatus{HostID: h, Hits: 1}, lease); err != nil {
		t.Fatal(err)
	}
	// No agent watches yet: the reader gets the last status after the wait.
	st, err := f.s.FreshDatapathStatus(f.ctx, h, 200*time.Millisecond)
	if err != nil || st.Hits != 1 {
		t.Fatalf("unanswered: %+v, %v; want the last status (1 hit)", st, err)
	}
	// The agent: answers each request with its counters of now.
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	hits := uint64(1)
	go func() {
		done <- f.s.WatchDatapathStatusRequests(ctx, h, func() error {
			hits += 10
			return f.s.PutDatapathStatus(ctx, &DatapathStatus{HostID: h, Hits: hits}, lease)
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("the request watch ended with %v", err)
		}
	}()
	// The watch may not have started: ask until it answers.
	deadline := time.Now().Add(10 * time.Second)
	for st.Hits == 1 && time.Now().Before(deadline) {
		if st, err = f.s.FreshDatapathStatus(f.ctx, h, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if st.Hits < 11 {
		t.Fatalf("asked: %+v, want the agent's answer", st)
	}
	prev := st.Hits
	if st, err = f.s.FreshDatapathStatus(f.ctx, h, 5*time.Second); err != nil || st.Hits != prev+10 {
		t.Fatalf("asked again: %+v, %v; want %d hits", st, err, prev+10)
	}
	resp, err := f.cli.Get(f.ctx, datapathRefreshPrefix+h)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != int64(lease) {
		t.Fatalf("the request key: %+v, %v; want it under the agent's lease %x", resp, err, int64(lease))
	}
}
