package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
)

// On-demand status. An agent republishes its datapath status only when
// what readers use changes (ports, flow-state bounds) or, for counters
// alone, at a slow period: a thousand agents rewriting their counters
// every 2 s were most of etcd's writes. A reader that wants the counters
// of now (the CLI's `host X show datapath`, the dashboard's host page)
// asks: it writes the host's refresh key, the agent watching it publishes
// at once, and the reader waits for that publication.

// datapathRefreshPrefix holds one key per host that readers write to ask
// its agent for a fresh status. A request is written under the lease of
// the status it refreshes, so it disappears with the agent.
const datapathRefreshPrefix = "/nagare/v1/state/datapath-refresh/"

// RequestDatapathStatus asks the agent on hostID to publish its status
// now. It returns the revision of the status it found (a fresh one has a
// higher one) and the request's revision; it wraps model.ErrNotFound when
// no agent runs there.
func (s *Store) RequestDatapathStatus(ctx context.Context, hostID string) (statusRev, reqRev int64, err error) {
	resp, err := s.cli.Get(ctx, DatapathStatusKey(hostID))
	if err != nil {
		return 0, 0, fmt.Errorf("read datapath status of host %s: %w", hostID, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, fmt.Errorf("host %s has no running agent: %w", hostID, model.ErrNotFound)
	}
	kv := resp.Kvs[0]
	put, err := s.cli.Put(ctx, datapathRefreshPrefix+hostID, time.Now().UTC().Format(time.RFC3339Nano),
		withLease(LeaseID(kv.Lease))...)
	if err != nil {
		return 0, 0, fmt.Errorf("nsdb: ask host %s for its datapath status: %w", hostID, err)
	}
	return kv.ModRevision, put.Header.Revision, nil
}

// FreshDatapathStatus asks the agent on hostID for its status and returns
// the first one it publishes after the request, or, if none comes within
// wait (an agent starved of CPU or cut off from the NSDB), the last one it
// published: its Updated says how old it is. It wraps model.ErrNotFound
// when no agent runs there.
func (s *Store) FreshDatapathStatus(ctx context.Context, hostID string, wait time.Duration) (*DatapathStatus, error) {
	_, reqRev, err := s.RequestDatapathStatus(ctx, hostID)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for wr := range s.cli.Watch(wctx, DatapathStatusKey(hostID), clientv3.WithRev(reqRev+1)) {
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT {
				return nil, fmt.Errorf("host %s has no running agent: %w", hostID, model.ErrNotFound)
			}
			var st DatapathStatus
			if err := json.Unmarshal(ev.Kv.Value, &st); err != nil {
				return nil, fmt.Errorf("decode datapath status of host %s: %w", hostID, err)
			}
			return &st, nil
		}
		if wr.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return s.DatapathStatus(ctx, hostID)
}

// WatchDatapathStatusRequests calls fn whenever a reader asks the agent on
// hostID for a fresh status (RequestDatapathStatus), until ctx is done or
// fn fails. The list at its start delivers nothing (the agent publishes
// when it starts anyway); a request made while the watch was interrupted
// is delivered when it resumes.
func (s *Store) WatchDatapathStatusRequests(ctx context.Context, hostID string, fn func() error) error {
	return s.follow(ctx, datapathRefreshPrefix+hostID, 0, true,
		func([]*kv, int64) error { return nil },
		func(evs []*clientv3.Event, _ int64) error {
			for _, ev := range evs {
				if ev.Type == mvccpb.PUT {
					return fn()
				}
			}
			return nil
		})
}
