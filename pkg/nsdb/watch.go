package nsdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/internal/backoff"
	"github.com/nagare/nagare/pkg/model"
)

// EventType says whether an object was written or deleted.
type EventType int

const (
	Put EventType = iota
	Delete
)

func (t EventType) String() string { return [...]string{"put", "delete"}[t] }

// Event is one change of one object.
type Event struct {
	Type   EventType
	Kind   *model.Kind
	ID     string
	Object model.Object // the new version, with Revision; nil on Delete
	Prev   model.Object // the version before, when etcd still had it; nil on create
}

// Batch is what a watcher receives. A Reset batch carries the complete
// state (Objects) at Rev: the receiver replaces whatever it had. Other
// batches carry the changes (Events) of one or more whole etcd
// transactions, in order; after applying them the receiver's state is the
// state at Rev.
type Batch struct {
	Reset   bool
	Objects []model.Object
	Events  []Event
	Rev     int64
}

// Watch delivers the topology to fn: first a Reset batch with every object,
// then the changes as they happen. It runs until ctx is done (returning
// ctx's error) or fn fails (returning fn's error). Interruptions are
// survived: a broken watch resumes where it stopped, or, when etcd has
// compacted that history, lists again and delivers a new Reset batch.
// Derived fields are not filled (see WatchHostLiveness for liveness).
// The objects are read-only: they may be shared with other watches and
// with the process's cache of decoded objects (CacheDecoded).
func (s *Store) Watch(ctx context.Context, fn func(Batch) error) error {
	return s.WatchFrom(ctx, 0, fn)
}

// WatchFrom is Watch for a receiver that already holds the state at rev
// (from an earlier Batch): it starts with the changes after rev, or with a
// Reset batch when those are compacted away. rev 0 is Watch.
func (s *Store) WatchFrom(ctx context.Context, rev int64, fn func(Batch) error) error {
	return s.follow(ctx, objPrefix, rev, false,
		func(kvs []*kv, rev int64) error {
			objs := make([]model.Object, 0, len(kvs))
			order := make(map[model.Object][2]int64, len(kvs))
			for _, kv := range kvs {
				k, _, ok := parseObjKey(string(kv.Key))
				if !ok {
					continue // a kind this binary does not know
				}
				o, err := decodeShared(k, string(kv.Key), kv.Value, kv.ModRevision)
				if err != nil {
					return err
				}
				o = shared.share(string(kv.Key), o)
				objs = append(objs, o)
				order[o] = [2]int64{int64(slices.Index(model.Kinds(), k)), kv.CreateRevision}
			}
			// Kinds in declaration order (referenced before referrers, where
			// the schema allows), then creation order within a kind.
			slices.SortFunc(objs, func(a, b model.Object) int {
				x, y := order[a], order[b]
				return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]))
			})
			return fn(Batch{Reset: true, Objects: objs, Rev: rev})
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := Batch{Rev: rev, Events: make([]Event, 0, len(evs))}
			for _, ev := range evs {
				e, ok, err := objectEvent(ev)
				if err != nil {
					return err
				}
				if ok {
					b.Events = append(b.Events, e)
				}
			}
			return fn(b)
		})
}

func objectEvent(ev *clientv3.Event) (Event, bool, error) {
	key := string(ev.Kv.Key)
	k, id, ok := parseObjKey(key)
	if !ok {
		return Event{}, false, nil
	}
	e := Event{Type: Put, Kind: k, ID: id}
	var err error
	if ev.Type == mvccpb.DELETE {
		e.Type = Delete
		shared.forget(key, ev.Kv.ModRevision)
	} else if e.Object, err = decodeShared(k, key, ev.Kv.Value, ev.Kv.ModRevision); err != nil {
		return Event{}, false, err
	} else {
		e.Object = shared.share(key, e.Object)
	}
	if ev.PrevKv != nil {
		if e.Prev, err = decodeShared(k, key, ev.PrevKv.Value, ev.PrevKv.ModRevision); err != nil {
			return Event{}, false, err
		}
		e.Prev = shared.share(key, e.Prev)
	}
	return e, true, nil
}

// Liveness is what a liveness watcher receives. On Reset, Alive holds every
// live host (all true) and replaces what the receiver had; otherwise it
// holds the changes: true for a host that came alive, false for one whose
// lease ended.
type Liveness struct {
	Reset bool
	Alive map[string]bool
	Rev   int64
}

// LiveHosts is the set of hosts whose agents hold their lease, kept by a
// liveness watch: WatchHostLiveness(ctx, live.Apply). It is safe for
// concurrent use; the zero value is empty.
type LiveHosts struct {
	mu    sync.Mutex
	alive map[string]bool
	rev   int64
}

// Apply is the liveness watch's callback. The set is replaced, never
// changed: readers keep what Alive gave them.
func (h *LiveHosts) Apply(l Liveness) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := make(map[string]bool, len(h.alive)+len(l.Alive))
	if h.alive != nil && !l.Reset {
		for id := range h.alive {
			next[id] = true
		}
	}
	for id, up := range l.Alive {
		if up {
			next[id] = true
		} else {
			delete(next, id)
		}
	}
	h.alive = next
	h.rev++
	return nil
}

// Alive returns the live hosts, read-only (shared with every caller:
// with a thousand hosts a copy per call was most of what the agents'
// periodic checks allocated), and a revision that changes whenever they
// may have.
func (h *LiveHosts) Alive() (map[string]bool, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.alive == nil {
		return map[string]bool{}, h.rev
	}
	return h.alive, h.rev
}

// WatchHostLiveness delivers host liveness to fn like Watch delivers
// objects: a Reset first, then changes, until ctx is done or fn fails.
func (s *Store) WatchHostLiveness(ctx context.Context, fn func(Liveness) error) error {
	return s.follow(ctx, hostStatePrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			l := Liveness{Reset: true, Alive: map[string]bool{}, Rev: rev}
			for _, kv := range kvs {
				if id, ok := parseHostAliveKey(string(kv.Key)); ok {
					l.Alive[id] = true
				}
			}
			return fn(l)
		},
		func(evs []*clientv3.Event, rev int64) error {
			l := Liveness{Alive: map[string]bool{}, Rev: rev}
			for _, ev := range evs {
				if id, ok := parseHostAliveKey(string(ev.Kv.Key)); ok {
					l.Alive[id] = ev.Type == mvccpb.PUT
				}
			}
			return fn(l)
		})
}

// errHistoryGone: the revision a watch must resume from is compacted.
var errHistoryGone = errors.New("watch history compacted")

// callbackError carries the receiver's own error out of the watch loop,
// which otherwise treats errors as interruptions to survive.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// follow is the list-then-watch loop shared by the watches: list at R
// (unless resuming from rev), watch from R+1, resume after interruptions,
// relist when the history is compacted. keysOnly lists keys without
// values, for watchers that only need to know what exists.
func (s *Store) follow(ctx context.Context, prefix string, rev int64, keysOnly bool,
	reset func([]*kv, int64) error, apply func([]*clientv3.Event, int64) error) error {
	listed := rev != 0
	for failures := 0; ; {
		if !listed {
			kvs, r, err := s.rangeAll(ctx, prefix, 0, keysOnly)
			switch {
			case err == nil:
				if err := reset(kvs, r); err != nil {
					return err
				}
				rev, listed, failures = r, true, 0
			case ctx.Err() == nil:
				slog.Warn("nsdb: cannot list for watch; retrying", "prefix", prefix, "err", err)
			}
		}
		if listed {
			err := s.watchOnce(ctx, prefix, &rev, apply)
			var cb *callbackError
			switch {
			case errors.As(err, &cb):
				return cb.err
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, errHistoryGone):
				slog.Warn("nsdb: watch history compacted; listing everything again", "prefix", prefix, "err", err)
				listed = false
				continue // relist at once: waiting only loses more history
			case err == nil:
				failures = 0
			default:
				slog.Warn("nsdb: watch interrupted; resuming", "prefix", prefix, "rev", rev, "err", err)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		if err := backoff.Sleep(ctx, backoff.Jitter(min(failures, 10), 50*time.Millisecond, 5*time.Second)); err != nil {
			return err
		}
	}
}

// watchOnce watches prefix from *rev+1 until the watch ends, advancing *rev
// past every delivered batch and every progress notification (so a resume
// starts as late as possible and is less likely to meet compaction).
func (s *Store) watchOnce(ctx context.Context, prefix string, rev *int64, apply func([]*clientv3.Event, int64) error) error {
	// RequireLeader: a member cut off from its cluster ends the watch
	// instead of going silent, and the resume finds a member with a leader.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(*rev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for wr := range wch {
		if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
			return fmt.Errorf("%w: need revision %d, history starts at %d", errHistoryGone, *rev+1, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.IsProgressNotify() {
			*rev = max(*rev, wr.Header.Revision)
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		// etcd never splits one revision (one transaction) across watch
		// responses, so a response is whole transactions. The header
		// revision can run ahead of the events while a watcher catches up,
		// so the last event says how far this batch goes.
		last := wr.Events[len(wr.Events)-1].Kv.ModRevision
		if err := apply(wr.Events, last); err != nil {
			return &callbackError{err}
		}
		*rev = max(*rev, last)
	}
	return ctx.Err()
}
