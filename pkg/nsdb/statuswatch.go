package nsdb

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watches for readers that follow runtime state rather than the topology:
// the dashboard's history of each host's datapath, and its view of what
// changed under the internal kinds (the Neutron objects that decide what a
// project member may see).

// DatapathStatusBatch is what a datapath status watcher receives. On Reset,
// Status holds every published status and replaces what the receiver had;
// otherwise it holds the changes, nil for a status that expired with its
// agent's lease.
type DatapathStatusBatch struct {
	Reset  bool
	Status map[string]*DatapathStatus // by host id
	Rev    int64
}

// WatchDatapathStatus delivers the statuses agents publish (on change,
// every 30 s, and when asked) like WatchHostLiveness delivers liveness: a Reset first,
// then changes, until ctx is done or fn fails. A status that does not decode
// (a newer agent's format) is left out with a warning rather than failing
// the watch.
func (s *Store) WatchDatapathStatus(ctx context.Context, fn func(DatapathStatusBatch) error) error {
	return s.follow(ctx, datapathPrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			b := DatapathStatusBatch{Reset: true, Status: make(map[string]*DatapathStatus, len(kvs)), Rev: rev}
			for _, kv := range kvs {
				if id, st, ok := decodeDatapathStatus(kv.Key, kv.Value); ok {
					b.Status[id] = st
				}
			}
			return fn(b)
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := DatapathStatusBatch{Status: map[string]*DatapathStatus{}, Rev: rev}
			for _, ev := range evs {
				id := strings.TrimPrefix(string(ev.Kv.Key), datapathPrefix)
				if ev.Type != mvccpb.PUT {
					b.Status[id] = nil
					continue
				}
				if id, st, ok := decodeDatapathStatus(ev.Kv.Key, ev.Kv.Value); ok {
					b.Status[id] = st
				}
			}
			return fn(b)
		})
}

func decodeDatapathStatus(key, value []byte) (string, *DatapathStatus, bool) {
	id := strings.TrimPrefix(string(key), datapathPrefix)
	var st DatapathStatus
	if err := json.Unmarshal(value, &st); err != nil || strings.Contains(id, "/") {
		slog.Warn("nsdb: ignoring a datapath status that does not decode", "key", string(key), "err", err)
		return "", nil, false
	}
	return id, &st, true
}

// WatchInternalChanges calls fn with the revision of the internal kinds'
// state (Neutron's objects, identity's; see objKey): once at the start and
// then after every transaction that changed any of them, until ctx is done
// or fn fails. It says only that something changed: a receiver reads what
// it needs (the listing at the start reads keys, not values).
func (s *Store) WatchInternalChanges(ctx context.Context, fn func(rev int64) error) error {
	return s.follow(ctx, svcPrefix, 0, true,
		func(_ []*kv, rev int64) error { return fn(rev) },
		func(_ []*clientv3.Event, rev int64) error { return fn(rev) })
}
