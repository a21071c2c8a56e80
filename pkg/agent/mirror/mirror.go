// Package mirror is the agent's copy of the virtual topology: it applies
// the NSDB's topology watch (and the pool members' health, which it folds
// into the members' derived Status, the hosts' liveness, folded into
// Host.Alive, and the routes the gateways' BGP peers announced, which it
// adds as routes marked learned), and after every change publishes an
// immutable Snapshot — every object, and the simulator's Topology built
// from them — and invalidates exactly the flows the change made stale.
//
// A host the applied liveness says dead is unreachable (in the agent,
// pkg/agent/reach says which: a host whose lease ended and whose datapath
// does not answer echo probes either, or a revoked one): the simulator's
// topology leaves out its tunnel-zone memberships, so nothing is tunnelled to its ports (the
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
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/nagare/nagare/internal/persist"
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
//
// Snapshots are made incrementally: a new one shares its objects and its
// simulator's topology with the one before, so a change costs what it
// touches, not what the topology holds. Readers do the same: Changes and
// ChangedSince say what a snapshot changed, so that work done on an
// earlier one is redone only where needed.
type Snapshot struct {
	// Version grows by one with every snapshot published.
	Version uint64
	// Topo is the simulator's topology of the objects, without the
	// tunnel-zone memberships of Unreachable hosts.
	Topo *sim.Topology
	// Unreachable are the hosts known dead (none before liveness is
	// known; never this agent's own).
	Unreachable map[string]bool
	// Reset is true when the snapshot replaced everything (the first
	// one, a relist); Changes are then nil.
	Reset bool
	// Changes are the changes since the previous snapshot, in order,
	// with Prev filled.
	Changes []nsdb.Event

	objs  objects
	since map[string]uint64 // change key (changeKeys) → version that last changed it
}

// Each calls fn with every object of kind k, in no particular order,
// until fn returns false. Pool members carry their health in Status.
func (s *Snapshot) Each(k *model.Kind, fn func(model.Object) bool) {
	m := s.objs[k]
	m.Each(func(_ string, o model.Object) bool { return fn(o) })
}

// Get returns the object of kind k with id.
func (s *Snapshot) Get(k *model.Kind, id string) (model.Object, bool) {
	m := s.objs[k]
	return m.Get(id)
}

// Objects returns every object: a full scan, for what needs them all.
func (s *Snapshot) Objects() []model.Object {
	var out []model.Object
	for _, k := range model.Kinds() {
		s.Each(k, func(o model.Object) bool {
			out = append(out, o)
			return true
		})
	}
	return out
}

// Change keys, beyond kind names: ports of routers and uplink ports
// changed (what load-balancer health checks and uplinks read of ports).
const (
	RouterPorts = "router-ports"
	UplinkPorts = "uplink-ports"
)

// ChangedSince reports whether any of keys — kind names (model.Kind.Name),
// RouterPorts, UplinkPorts — changed after version v: a reader that did
// its work on snapshot v need not redo it otherwise.
func (s *Snapshot) ChangedSince(v uint64, keys ...string) bool {
	for _, k := range keys {
		if s.since[k] > v {
			return true
		}
	}
	return false
}

// changeKeys are the keys an event changes.
func changeKeys(ev nsdb.Event) []string {
	keys := []string{ev.Kind.Name}
	for _, o := range []model.Object{ev.Prev, ev.Object} {
		if p, ok := o.(*model.Port); ok && p != nil {
			if p.RouterID != "" {
				keys = append(keys, RouterPorts)
			}
			if p.PhysicalNetwork != "" {
				keys = append(keys, UplinkPorts)
			}
		}
	}
	return keys
}

// objects are the objects of a snapshot by kind, each kind a persistent
// map shared with the snapshots before and after it.
type objects map[*model.Kind]persist.Map[string, model.Object]

// Each implements sim.Objects.
func (o objects) Each(k *model.Kind, fn func(model.Object) bool) {
	m := o[k]
	m.Each(func(_ string, x model.Object) bool { return fn(x) })
}

// with returns a copy of o to change in generation gen.
func (o objects) with() objects {
	c := make(objects, len(o))
	for k, m := range o {
		c[k] = m
	}
	return c
}

func (o objects) put(x model.Object, gen uint64) {
	k := model.KindOf(x)
	m, ok := o[k]
	if !ok {
		m = persist.NewMap[string, model.Object](persist.HashString)
	}
	m.Put(x.GetMeta().ID, x, gen)
	o[k] = m
}

func (o objects) del(k *model.Kind, id string, gen uint64) {
	if m, ok := o[k]; ok {
		m.Del(id, gen)
		o[k] = m
	}
}

func (o objects) get(k *model.Kind, id string) model.Object {
	m := o[k]
	x, _ := m.Get(id)
	return x
}

// allKeys marks every change key as changed at version v (a reset).
func allKeys(v uint64) map[string]uint64 {
	since := map[string]uint64{RouterPorts: v, UplinkPorts: v}
	for _, k := range model.Kinds() {
		since[k.Name] = v
	}
	return since
}

// ObjectSnapshot is a snapshot of objs whose simulator topology is empty:
// for tests of readers of objects only, whose objects need not make a
// valid topology.
func ObjectSnapshot(version uint64, objs ...model.Object) *Snapshot {
	o, gen := objects{}, persist.NextGen()
	for _, x := range objs {
		o.put(x, gen)
	}
	empty, err := sim.Build(nil)
	if err != nil {
		panic("mirror: the empty topology does not build: " + err.Error())
	}
	return &Snapshot{Version: version, Topo: empty, Reset: true, objs: o, since: allKeys(version)}
}

// NewSnapshot builds a snapshot of objs (for tests and the empty start).
func NewSnapshot(version uint64, objs ...model.Object) (*Snapshot, error) {
	o, gen := objects{}, persist.NextGen()
	for _, x := range objs {
		o.put(x, gen)
	}
	topo, err := sim.BuildFrom(o)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Version: version, Topo: topo, Reset: true, objs: o, since: allKeys(version)}, nil
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

	mu sync.Mutex // the watches' state below, and the order of Publish
	// objs are the objects as the watches last said: the next snapshot's.
	objs objects
	gen  uint64 // objs' generation: parts of it this mirror may change in place
	// pending are changes no snapshot has published yet (a failed build
	// keeps the previous snapshot), and stale says the next topology must
	// be built whole.
	pending []nsdb.Event
	stale   bool
	// health is the pool members' status (nsdb state keys), copied into
	// the members' derived Status.
	health map[string]string
	// learned are the routes BGP peers announced, by route id; included
	// are those in objs (their port exists).
	learned  map[string]*model.Route
	included map[string]*model.Route
	// alive are the hosts holding their lease (liveKnown once the
	// liveness watch delivered), copied into Host.Alive; unreachable
	// are the mirrored hosts known dead (not this one).
	alive       map[string]bool
	liveKnown   bool
	unreachable map[string]bool
	// members indexes objs' tunnel-zone memberships by host, so a host
	// coming or going costs its own memberships, not a scan of every
	// host's (O(hosts) per registration at a thousand hosts).
	members hostMembers
}

// New returns a mirror of the empty topology.
func New(cfg Config) *Mirror {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Mirror{cfg: cfg, objs: objects{}, gen: persist.NextGen(), health: map[string]string{}, alive: map[string]bool{},
		learned: map[string]*model.Route{}, included: map[string]*model.Route{}, members: hostMembers{}}
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

// Apply is the topology watch's callback.
func (m *Mirror) Apply(b nsdb.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var events []nsdb.Event
	if b.Reset {
		m.objs, m.gen, m.members = objects{}, persist.NextGen(), hostMembers{}
		for _, o := range b.Objects {
			m.objs.put(m.withHealth(o), m.gen)
			m.members.add(o)
		}
	} else {
		for _, ev := range b.Events {
			if ev.Prev == nil || ev.Kind == model.TunnelZoneMemberKind {
				had := m.objs.get(ev.Kind, ev.ID)
				if ev.Prev == nil {
					ev.Prev = had
				}
				m.members.del(had)
			}
			if ev.Type == nsdb.Delete {
				m.objs.del(ev.Kind, ev.ID, m.gen)
			} else {
				ev.Object = m.withHealth(ev.Object)
				m.objs.put(ev.Object, m.gen)
				m.members.add(ev.Object)
			}
			events = append(events, ev)
		}
	}
	m.commit(events, b.Reset)
	return nil
}

// withHealth returns o with its derived fields filled: a copy of a pool
// member with its status, of a host with its liveness. The watch's
// objects are read-only: a process running many agents shares them
// (nsdb.ShareDecoded).
func (m *Mirror) withHealth(o model.Object) model.Object {
	switch x := o.(type) {
	case *model.PoolMember:
		c := *x
		c.Status = m.health[x.ID]
		return &c
	case *model.Host:
		c := *x
		c.Alive = m.alive[x.ID]
		return &c
	}
	return o
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
			m.objs.Each(model.HostKind, func(o model.Object) bool {
				if h := o.(*model.Host); !next[h.ID] {
					changed[h.ID] = false
				}
				return true
			})
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
		for _, zm := range m.members.of(m.objs, id) {
			events = append(events, nsdb.Event{Type: nsdb.Put, Kind: model.TunnelZoneMemberKind, ID: zm.ID, Object: zm, Prev: zm})
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

// rederive replaces the mirrored object k/id by a copy whose derived
// field set changes, as if the object itself had changed, and returns the
// event; false when the object is not mirrored. m.mu is held.
func rederive[T model.Object](m *Mirror, k *model.Kind, id string, set func(T)) (nsdb.Event, bool) {
	prev, ok := m.objs.get(k, id).(T)
	if !ok {
		return nsdb.Event{}, false
	}
	cur := model.Clone(prev).(T)
	set(cur)
	m.objs.put(cur, m.gen)
	return nsdb.Event{Type: nsdb.Put, Kind: k, ID: id, Object: cur, Prev: prev}, true
}

// reachable is the mirror's objects as the simulator sees them: without
// the tunnel-zone memberships of unreachable hosts.
type reachable struct {
	objects
	unreachable map[string]bool
}

func (r reachable) Each(k *model.Kind, fn func(model.Object) bool) {
	if k != model.TunnelZoneMemberKind || len(r.unreachable) == 0 {
		r.objects.Each(k, fn)
		return
	}
	r.objects.Each(k, func(o model.Object) bool {
		if r.unreachable[o.(*model.TunnelZoneMember).HostID] {
			return true
		}
		return fn(o)
	})
}

// updateUnreachable follows the hosts the events (all, after a reset)
// changed. m.mu is held.
func (m *Mirror) updateUnreachable(events []nsdb.Event, reset bool) {
	dead := func(h *model.Host) bool { return m.liveKnown && !h.Alive && h.ID != m.cfg.HostID }
	if reset {
		m.unreachable = nil
		m.objs.Each(model.HostKind, func(o model.Object) bool {
			if h := o.(*model.Host); dead(h) {
				if m.unreachable == nil {
					m.unreachable = map[string]bool{}
				}
				m.unreachable[h.ID] = true
			}
			return true
		})
		return
	}
	for _, ev := range events {
		if ev.Kind != model.HostKind {
			continue
		}
		h, _ := ev.Object.(*model.Host)
		now := h != nil && dead(h)
		if now == m.unreachable[ev.ID] {
			continue
		}
		u := make(map[string]bool, len(m.unreachable)+1) // published snapshots hold the old map
		for id := range m.unreachable {
			u[id] = true
		}
		if now {
			u[ev.ID] = true
		} else {
			delete(u, ev.ID)
		}
		if len(u) == 0 {
			u = nil
		}
		m.unreachable = u
	}
}

// commit publishes a snapshot of the mirror and invalidates the flows the
// events made stale (all of them after a reset). m.mu is held.
func (m *Mirror) commit(events []nsdb.Event, reset bool) {
	old := m.cur.Load()
	events = append(append(m.pending, events...), m.syncLearned(reset)...)
	before := m.unreachable // replaced, never changed in place
	m.updateUnreachable(events, reset)
	view := reachable{m.objs, m.unreachable}
	var topo *sim.Topology
	var err error
	if reset || m.stale {
		topo, err = sim.BuildFrom(view)
	} else {
		topo, err = old.Topo.Apply(simChanges(events, before, view, m.members), view)
	}
	if err != nil {
		m.cfg.Log.Error("topology rebuild failed; keeping the previous one", "err", err)
		m.pending, m.stale = events, true
		return
	}
	next := &Snapshot{Version: old.Version + 1, Topo: topo, Unreachable: m.unreachable, objs: m.objs}
	if reset {
		next.Reset, next.since = true, allKeys(next.Version)
	} else {
		next.Changes = events
		next.since = make(map[string]uint64, len(old.since)+2)
		for k, v := range old.since {
			next.since[k] = v
		}
		for _, ev := range events {
			for _, k := range changeKeys(ev) {
				next.since[k] = next.Version
			}
		}
	}
	// The published objects are frozen: later changes copy what they touch.
	m.objs, m.gen = m.objs.with(), persist.NextGen()
	m.pending, m.stale = nil, false
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

// simChanges are events as the simulator's topology sees them: without
// the tunnel-zone memberships of unreachable hosts (before: the set the
// old topology was built with; view: the objects now, with the set now).
// A host that died or came back is its memberships deleted or created,
// so liveness is applied incrementally like any other change: with a
// thousand hosts, every agent sees every other one come and go.
func simChanges(events []nsdb.Event, before map[string]bool, view reachable, members hostMembers) []sim.Change {
	after := view.unreachable
	flipped := map[string]bool{}
	for id := range before {
		if !after[id] {
			flipped[id] = true
		}
	}
	for id := range after {
		if !before[id] {
			flipped[id] = true
		}
	}
	// Each membership touched, from the version the old topology had (the
	// first event's Prev) to the last.
	type span struct{ old, cur model.Object }
	spans := map[string]*span{}
	var order []string
	changes := make([]sim.Change, 0, len(events))
	for _, ev := range events {
		if ev.Kind != model.TunnelZoneMemberKind {
			changes = append(changes, sim.Change{Old: ev.Prev, New: ev.Object})
			continue
		}
		sp := spans[ev.ID]
		if sp == nil {
			sp = &span{old: ev.Prev}
			spans[ev.ID] = sp
			order = append(order, ev.ID)
		}
		sp.cur = ev.Object
	}
	for _, h := range slices.Sorted(maps.Keys(flipped)) {
		for _, zm := range members.of(view.objects, h) {
			if spans[zm.ID] == nil {
				spans[zm.ID] = &span{old: zm, cur: zm}
				order = append(order, zm.ID)
			}
		}
	}
	seen := func(o model.Object, unreachable map[string]bool) model.Object {
		if o == nil || unreachable[o.(*model.TunnelZoneMember).HostID] {
			return nil
		}
		return o
	}
	for _, id := range order {
		sp := spans[id]
		c := sim.Change{Old: seen(sp.old, before), New: seen(sp.cur, after)}
		if c.Old != nil || c.New != nil {
			changes = append(changes, c)
		}
	}
	return changes
}
