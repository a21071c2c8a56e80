// Package mirror is the agent's copy of the virtual topology: it applies
// the NSDB's topology watch (and the pool members' health, which it folds
// into the members' derived Status, the hosts' liveness, folded into
// Host.Alive, and the routes the gateways' BGP peers announced, which it
// adds as routes marked learned), and after every change publishes an
// immutable Snapshot — every object, and the simulator's Topology built
// from them — and invalidates exactly the flows the change made stale.
//
// A host whose agent holds no lease (dead, or revoked: the server ends a
// revoked host's lease) is unreachable: the simulator's topology leaves out
// its tunnel-zone memberships, so nothing is tunnelled to its ports (the
// walk drops, and the drop is re-simulated when it comes back), and the
// tunnel peers (Snapshot.Unreachable) leave it out, so nothing it sends is
// accepted either.
//
// The other feature packages read snapshots; none of them locks the
// mirror.
package mirror

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// NSDB is what the mirror watches.
type NSDB interface {
	Watch(ctx context.Context, fn func(nsdb.Batch) error) error
	WatchMemberStatus(ctx context.Context, fn func(nsdb.MemberStatusBatch) error) error
	WatchLearnedRoutes(ctx context.Context, fn func(nsdb.LearnedRouteBatch) error) error
}

// Flows is where stale flows are removed.
type Flows interface {
	Invalidate(tags ...uint64) int
	Flush() int
}

// Snapshot is the topology at one moment. It and everything it holds are
// read-only.
type Snapshot struct {
	// Version grows with every change.
	Version uint64
	// Objects are every object of the topology, pool members with their
	// health in Status.
	Objects []model.Object
	// Topo is the simulator's topology of Objects, without the
	// tunnel-zone memberships of Unreachable hosts.
	Topo *sim.Topology
	// Unreachable are the hosts known dead (none before liveness is
	// known; never this agent's own).
	Unreachable map[string]bool
}

// NewSnapshot builds a snapshot of objs (for tests and the empty start).
func NewSnapshot(version uint64, objs ...model.Object) (*Snapshot, error) {
	topo, err := sim.Build(objs)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Version: version, Objects: objs, Topo: topo}, nil
}

// Config wires a mirror.
type Config struct {
	// HostID is this agent's host, never unreachable to itself.
	HostID string
	Flows  Flows
	// Publish is called with every new snapshot, one at a time and in
	// order, before the flows the change made stale are invalidated, so
	// that the packets that miss again are simulated on the new topology.
	Publish func(*Snapshot)
	Log     *slog.Logger
}

// Mirror is the topology as the NSDB last said.
type Mirror struct {
	cfg Config
	cur atomic.Pointer[Snapshot]

	mu   sync.Mutex // the watches' state below, and the order of Publish
	objs map[string]model.Object
	// health is the pool members' status (nsdb state keys), copied into
	// the members' derived Status.
	health map[string]string
	// learned are the routes BGP peers announced, by NSDB key; included
	// are those in the last snapshot (their port exists), by route id.
	learned  map[string]*model.Route
	included map[string]*model.Route
	// alive are the hosts holding their lease (liveKnown once the
	// liveness watch delivered), copied into Host.Alive.
	alive     map[string]bool
	liveKnown bool
}

// New returns a mirror of the empty topology.
func New(cfg Config) *Mirror {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Mirror{cfg: cfg, objs: map[string]model.Object{}, health: map[string]string{}, alive: map[string]bool{},
		learned: map[string]*model.Route{}, included: map[string]*model.Route{}}
	empty, err := NewSnapshot(0)
	if err != nil {
		panic("mirror: the empty topology does not build: " + err.Error())
	}
	m.cur.Store(empty)
	return m
}

// Current is the latest snapshot.
func (m *Mirror) Current() *Snapshot { return m.cur.Load() }

// Run follows the topology and the members' health until ctx is done.
func (m *Mirror) Run(ctx context.Context, db NSDB) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return db.Watch(ctx, m.Apply) })
	g.Go(func() error { return db.WatchMemberStatus(ctx, m.ApplyMemberStatus) })
	g.Go(func() error { return db.WatchLearnedRoutes(ctx, m.ApplyLearnedRoutes) })
	return g.Wait()
}

func objKey(k *model.Kind, id string) string { return k.Name + "/" + id }

// Apply is the topology watch's callback.
func (m *Mirror) Apply(b nsdb.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var events []nsdb.Event
	if b.Reset {
		m.objs = make(map[string]model.Object, len(b.Objects))
		for _, o := range b.Objects {
			m.withHealth(o)
			m.objs[objKey(model.KindOf(o), o.GetMeta().ID)] = o
		}
	} else {
		for _, ev := range b.Events {
			key := objKey(ev.Kind, ev.ID)
			if ev.Prev == nil {
				ev.Prev = m.objs[key]
			}
			if ev.Type == nsdb.Delete {
				delete(m.objs, key)
			} else {
				m.withHealth(ev.Object)
				m.objs[key] = ev.Object
			}
			events = append(events, ev)
		}
	}
	m.commit(events, b.Reset)
	return nil
}

// withHealth fills a pool member's derived status and a host's liveness
// (the object is the watch's fresh copy, ours to change).
func (m *Mirror) withHealth(o model.Object) {
	switch x := o.(type) {
	case *model.PoolMember:
		x.Status = m.health[x.ID]
	case *model.Host:
		x.Alive = m.alive[x.ID]
	}
}

// ApplyLiveness is the host-liveness watch's callback: a host whose
// liveness changed is replaced by a copy with the new Alive, and its
// tunnel-zone memberships count as changed, so that the flows through it
// (or dropped for want of it) are simulated again.
func (m *Mirror) ApplyLiveness(l nsdb.Liveness) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := map[string]bool{}
	if l.Reset || !m.liveKnown {
		for id := range m.alive {
			if !l.Alive[id] {
				changed[id] = false
			}
		}
		next := map[string]bool{}
		for id, up := range l.Alive {
			if up {
				next[id] = true
				if !m.alive[id] || !m.liveKnown {
					changed[id] = true
				}
			}
		}
		if !m.liveKnown { // every mirrored host not alive is news too
			for _, o := range m.objs {
				if h, ok := o.(*model.Host); ok && !next[h.ID] {
					changed[h.ID] = false
				}
			}
		}
		m.alive, m.liveKnown = next, true
	} else {
		for id, up := range l.Alive {
			if m.alive[id] != up {
				changed[id] = up
			}
			if up {
				m.alive[id] = true
			} else {
				delete(m.alive, id)
			}
		}
	}
	var events []nsdb.Event
	for id, up := range changed {
		ev, ok := rederive(m, model.HostKind, id, func(h *model.Host) { h.Alive = up })
		if !ok {
			continue // a host not (yet) mirrored takes its liveness when it comes
		}
		events = append(events, ev)
		for _, o := range m.objs {
			if zm, ok := o.(*model.TunnelZoneMember); ok && zm.HostID == id {
				events = append(events, nsdb.Event{Type: nsdb.Put, Kind: model.TunnelZoneMemberKind, ID: zm.ID, Object: zm, Prev: zm})
			}
		}
	}
	if len(events) > 0 {
		m.commit(events, false)
	}
	return nil
}

// ApplyMemberStatus is the member-health watch's callback: a member whose
// health changed is replaced by a copy with the new status, as if the
// member itself had changed, so the new topology leaves a down member out
// and the flows that read it (and its pool) are invalidated.
func (m *Mirror) ApplyMemberStatus(b nsdb.MemberStatusBatch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := map[string]string{}
	if b.Reset {
		for id, s := range m.health {
			if b.Status[id] != s {
				changed[id] = b.Status[id]
			}
		}
		for id, s := range b.Status {
			if m.health[id] != s {
				changed[id] = s
			}
		}
		m.health = b.Status
	} else {
		for id, s := range b.Status {
			if m.health[id] != s {
				changed[id] = s
			}
			if s == "" {
				delete(m.health, id)
			} else {
				m.health[id] = s
			}
		}
	}
	var events []nsdb.Event
	for id, s := range changed {
		if ev, ok := rederive(m, model.PoolMemberKind, id, func(pm *model.PoolMember) { pm.Status = s }); ok {
			events = append(events, ev)
		} // else a member not (yet) mirrored takes its status when it comes
	}
	if len(events) > 0 {
		m.cfg.Log.Info("pool member health changed", "members", changed)
		m.commit(events, false)
	}
	return nil
}

// ApplyLearnedRoutes is the learned-route watch's callback: the routes
// join the topology as routes marked learned (their port must exist; one
// whose port is gone, or not yet mirrored, waits for it).
func (m *Mirror) ApplyLearnedRoutes(b nsdb.LearnedRouteBatch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.Reset {
		m.learned = make(map[string]*model.Route, len(b.Put))
	}
	for _, key := range b.Deleted {
		delete(m.learned, key)
	}
	for _, r := range b.Put {
		m.learned[r.ID()] = r.Route()
	}
	m.commit(nil, false)
	return nil
}

// withLearned adds to objs the learned routes whose port is a port of
// their router, and returns the events of those that joined or left the
// topology since the last snapshot. m.mu is held.
func (m *Mirror) withLearned(objs []model.Object) ([]model.Object, []nsdb.Event) {
	now := map[string]*model.Route{}
	for _, r := range m.learned {
		p, ok := m.objs[objKey(model.PortKind, r.PortID)].(*model.Port)
		if ok && p.RouterID == r.RouterID && m.objs[objKey(model.RouterKind, r.RouterID)] != nil {
			now[r.ID] = r
			objs = append(objs, r)
		}
	}
	var events []nsdb.Event
	for id, r := range now {
		switch prev := m.included[id]; {
		case prev == nil:
			events = append(events, nsdb.Event{Type: nsdb.Put, Kind: model.RouteKind, ID: id, Object: r})
		case *prev != *r:
			events = append(events, nsdb.Event{Type: nsdb.Put, Kind: model.RouteKind, ID: id, Object: r, Prev: prev})
		}
	}
	for id, prev := range m.included {
		if now[id] == nil {
			events = append(events, nsdb.Event{Type: nsdb.Delete, Kind: model.RouteKind, ID: id, Prev: prev})
		}
	}
	m.included = now
	return objs, events
}

// rederive replaces the mirrored object k/id by a copy whose derived
// field set changes, as if the object itself had changed, and returns the
// event; false when the object is not mirrored. m.mu is held.
func rederive[T model.Object](m *Mirror, k *model.Kind, id string, set func(T)) (nsdb.Event, bool) {
	key := objKey(k, id)
	prev, ok := m.objs[key].(T)
	if !ok {
		return nsdb.Event{}, false
	}
	cur := model.Clone(prev).(T)
	set(cur)
	m.objs[key] = cur
	return nsdb.Event{Type: nsdb.Put, Kind: k, ID: id, Object: cur, Prev: prev}, true
}

// commit publishes a snapshot of the mirror and invalidates the flows the
// events made stale (all of them after a reset). m.mu is held.
func (m *Mirror) commit(events []nsdb.Event, reset bool) {
	old := m.cur.Load()
	objs := make([]model.Object, 0, len(m.objs)+len(m.learned))
	reachable := make([]model.Object, 0, len(m.objs)+len(m.learned))
	var unreachable map[string]bool
	for _, o := range m.objs {
		objs = append(objs, o)
		if h, ok := o.(*model.Host); ok && m.liveKnown && !h.Alive && h.ID != m.cfg.HostID {
			if unreachable == nil {
				unreachable = map[string]bool{}
			}
			unreachable[h.ID] = true
		}
	}
	objs, learnedEvents := m.withLearned(objs)
	events = append(events, learnedEvents...)
	for _, o := range objs {
		if zm, ok := o.(*model.TunnelZoneMember); !ok || !unreachable[zm.HostID] {
			reachable = append(reachable, o)
		}
	}
	topo, err := sim.Build(reachable)
	next := &Snapshot{Version: old.Version + 1, Objects: objs, Topo: topo, Unreachable: unreachable}
	if err != nil {
		m.cfg.Log.Error("topology rebuild failed; keeping the previous one", "err", err)
		return
	}
	m.cur.Store(next)
	if m.cfg.Publish != nil {
		m.cfg.Publish(next)
	}
	if reset {
		m.cfg.Flows.Flush()
		return
	}
	var tags []uint64
	for _, ev := range events {
		tags = append(tags, InvalidationTags(old.Topo, next.Topo, ev)...)
	}
	if len(tags) > 0 {
		m.cfg.Flows.Invalidate(tags...)
	}
}

// InvalidationTags returns the tags whose flows a topology event makes
// stale. Every flow carries the tags of the objects its simulation read, so
// the changed object's own tag covers most of it; sim's ChangeTags adds the
// decisions that depended on an object's absence (a new route covering
// destinations that used a shorter prefix or had no route, a port joining a
// bridge's flood set). The old version is read against the old topology and
// the new version against the new one, so a moved or deleted object
// invalidates both where it was and where it is.
func InvalidationTags(old, cur *sim.Topology, ev nsdb.Event) []uint64 {
	var tags []uint64
	if ev.Prev != nil && old != nil {
		tags = append(tags, old.ChangeTags(ev.Prev)...)
	}
	if ev.Object != nil {
		tags = append(tags, cur.ChangeTags(ev.Object)...)
	}
	if len(tags) == 0 {
		tags = append(tags, sim.ObjectTag(ev.Kind, ev.ID))
	}
	return tags
}
