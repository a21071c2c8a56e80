package nsdbmem

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/nagare/nagare/internal/eventq"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// watcher is one watch of a prefix: its changes queue (without bound: a
// slow test watcher never blocks a writer) until the watch's goroutine
// delivers them.
type watcher struct {
	prefix string
	q      *eventq.Queue[change]
}

func (s *Store) notifyLocked(c change) {
	for w := range s.watchers {
		if strings.HasPrefix(c.key, w.prefix) {
			w.q.Push(c)
		}
	}
}

// follow delivers prefix's keys to reset (all of them, at a revision),
// then its changes to apply, batched by revision as etcd delivers whole
// transactions, until ctx is done or a callback fails.
func (s *Store) follow(ctx context.Context, prefix string, reset func(map[string]*entry, int64) error, apply func([]change, int64) error) error {
	w := &watcher{prefix: prefix, q: eventq.New[change]()}
	s.mu.Lock()
	snap := map[string]*entry{}
	for k, e := range s.keys {
		if strings.HasPrefix(k, prefix) {
			snap[k] = e
		}
	}
	rev := s.rev
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	if err := reset(snap, rev); err != nil {
		return err
	}
	for {
		cs, err := w.q.Take(ctx)
		if err != nil {
			return err
		}
		for len(cs) > 0 {
			n := 1
			for n < len(cs) && cs[n].rev == cs[0].rev {
				n++
			}
			if err := apply(cs[:n], cs[n-1].rev); err != nil {
				return err
			}
			cs = cs[n:]
		}
	}
}

// Watch delivers the topology like nsdb.Store.Watch: a Reset batch with
// every object (kinds in declaration order, then creation order), then
// batches of events.
func (s *Store) Watch(ctx context.Context, fn func(nsdb.Batch) error) error {
	return s.follow(ctx, objP,
		func(snap map[string]*entry, rev int64) error {
			es := make([]*entry, 0, len(snap))
			for _, e := range snap {
				es = append(es, e)
			}
			kindIndex := func(e *entry) int { return slices.Index(model.Kinds(), model.KindOf(e.value.(model.Object))) }
			slices.SortFunc(es, func(a, b *entry) int {
				return cmp.Or(cmp.Compare(kindIndex(a), kindIndex(b)), cmp.Compare(a.createRev, b.createRev))
			})
			b := nsdb.Batch{Reset: true, Rev: rev}
			for _, e := range es {
				b.Objects = append(b.Objects, s.object(e))
			}
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.Batch{Rev: rev}
			for _, c := range cs {
				kind, id, _ := strings.Cut(strings.TrimPrefix(c.key, objP), "/")
				ev := nsdb.Event{Type: nsdb.Put, Kind: model.KindByName(kind), ID: id}
				if c.value == nil {
					ev.Type = nsdb.Delete
				} else {
					ev.Object = s.object(&entry{value: c.value, modRev: c.rev})
				}
				if c.prev != nil {
					ev.Prev = model.Clone(c.prev.(model.Object))
				}
				b.Events = append(b.Events, ev)
			}
			return fn(b)
		})
}

// SetHostAlive marks a host alive for as long as lease lives.
func (s *Store) SetHostAlive(ctx context.Context, hostID string, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(aliveP+hostID, lease, lease)
}

// HostLease is the lease keeping hostID alive, 0 if none.
func (s *Store) HostLease(ctx context.Context, hostID string) (nsdb.LeaseID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.keys[aliveP+hostID]; e != nil {
		return e.lease, nil
	}
	return 0, nil
}

// WatchHostLiveness delivers liveness like nsdb.Store.WatchHostLiveness.
func (s *Store) WatchHostLiveness(ctx context.Context, fn func(nsdb.Liveness) error) error {
	return s.follow(ctx, aliveP,
		func(snap map[string]*entry, rev int64) error {
			l := nsdb.Liveness{Reset: true, Alive: map[string]bool{}, Rev: rev}
			for k := range snap {
				l.Alive[strings.TrimPrefix(k, aliveP)] = true
			}
			return fn(l)
		},
		func(cs []change, rev int64) error {
			l := nsdb.Liveness{Alive: map[string]bool{}, Rev: rev}
			for _, c := range cs {
				l.Alive[strings.TrimPrefix(c.key, aliveP)] = c.value != nil
			}
			return fn(l)
		})
}
