package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Scoper names the native objects a project member may see (by objKey);
// nagare-server passes neutron.Service.NativeScope.
type Scoper func(ctx context.Context, c *identity.Context) (map[string]bool, error)

// hub mirrors the part of the NSDB the picture is drawn from and fans its
// changes out to the event streams, each filtered for its viewer. It is fed
// by three watches (topology, host liveness, internal kinds); Run owns
// them.
type hub struct {
	log   *slog.Logger
	scope Scoper

	mu      sync.Mutex
	objs    map[string]model.Object // by objKey; streamed kinds only
	alive   map[string]bool         // host id → alive (absent: not alive)
	rev     int64                   // of the topology mirror
	svcRev  int64                   // of the internal kinds, as last notified
	topoOK  bool                    // the topology watch delivered its first snapshot
	liveOK  bool                    // the liveness watch did
	ready   chan struct{}           // closed once both did
	subs    map[*sub]bool
	scopes  map[string]*projectScope // by project id
	stopped bool

	rescope chan struct{} // internal kinds changed: recompute members' scopes
}

type projectScope struct {
	ids    map[string]bool
	svcRev int64 // the internal kinds' revision it was computed after
}

// sub is one event stream.
type sub struct {
	viewer
	sent map[string]int64 // objKey → revision of the version sent
	out  chan event       // closed when the hub drops the subscriber
}

// event is one Server-Sent Event.
type event struct {
	name string
	data []byte
}

// subBuffer bounds what a stream may fall behind by: a subscriber whose
// buffer is full is dropped (its stream ends) rather than slowing the hub
// or growing without bound; the page reconnects and starts from a new
// snapshot.
const subBuffer = 256

func newHub(scope Scoper, log *slog.Logger) *hub {
	return &hub{log: log, scope: scope, objs: map[string]model.Object{}, alive: map[string]bool{},
		ready: make(chan struct{}), subs: map[*sub]bool{}, scopes: map[string]*projectScope{},
		rescope: make(chan struct{}, 1)}
}

// wireObject is an object as the page receives it.
type wireObject struct {
	Kind   string       `json:"kind"`
	Object model.Object `json:"object"`
}

type snapshotMsg struct {
	Rev     int64           `json:"rev"`
	Admin   bool            `json:"admin"`
	Objects []wireObject    `json:"objects"`
	Alive   map[string]bool `json:"alive,omitempty"`
}

type changeMsg struct {
	Rev    int64           `json:"rev"`
	Put    []wireObject    `json:"put,omitempty"`
	Delete []string        `json:"delete,omitempty"`
	Alive  map[string]bool `json:"alive,omitempty"`
}

// run feeds the hub until ctx ends, then ends every stream.
func (h *hub) run(ctx context.Context, store *nsdb.Store) {
	var wg sync.WaitGroup
	watch := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && ctx.Err() == nil {
				h.log.Error("dashboard: watch ended", "watch", name, "err", err)
			}
		})
	}
	watch("topology", func() error { return store.Watch(ctx, h.applyTopology) })
	watch("liveness", func() error { return store.WatchHostLiveness(ctx, h.applyLiveness) })
	watch("internal kinds", func() error { return store.WatchInternalChanges(ctx, h.internalChanged) })
	wg.Go(func() { h.rescopeLoop(ctx) })
	wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for s := range h.subs {
		h.drop(s)
	}
}

func (h *hub) applyTopology(b nsdb.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	touched := map[string]bool{}
	if b.Reset {
		for k := range h.objs {
			touched[k] = true
		}
		h.objs = map[string]model.Object{}
		for _, o := range b.Objects {
			if streamed[model.KindOf(o)] {
				h.objs[keyOf(o)] = o
				touched[keyOf(o)] = true
			}
		}
	}
	for _, e := range b.Events {
		if !streamed[e.Kind] {
			continue
		}
		k := objKey(e.Kind, e.ID)
		touched[k] = true
		if e.Type == nsdb.Delete {
			delete(h.objs, k)
		} else {
			h.objs[k] = e.Object
		}
	}
	h.rev = b.Rev
	if !h.topoOK {
		h.topoOK = true
		h.markReady()
		return nil
	}
	for s := range h.subs {
		// An administrator's view is the mirror: only what the batch
		// touched can differ. A member's visibility of a port depends on
		// other objects (its peer, its router), so the whole view is
		// compared; it is small (one project) and this is map lookups.
		keys := touched
		if !s.admin {
			keys = nil
		}
		h.send(s, h.diff(s, keys), nil)
	}
	return nil
}

func (h *hub) applyLiveness(l nsdb.Liveness) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := map[string]bool{}
	if l.Reset {
		for id := range h.alive {
			changed[id] = false
		}
		h.alive = map[string]bool{}
	}
	for id, up := range l.Alive {
		changed[id] = up
		if up {
			h.alive[id] = true
		} else {
			delete(h.alive, id)
		}
	}
	if !h.liveOK {
		h.liveOK = true
		h.markReady()
		return nil
	}
	for s := range h.subs {
		if s.admin && len(changed) > 0 {
			h.send(s, changeMsg{}, changed)
		}
	}
	return nil
}

func (h *hub) markReady() {
	if h.topoOK && h.liveOK {
		close(h.ready)
	}
}

// internalChanged notes that Neutron's objects (or identity's) changed:
// members' scopes are recomputed, a little later and once for a burst.
func (h *hub) internalChanged(rev int64) error {
	h.mu.Lock()
	h.svcRev = rev
	h.mu.Unlock()
	select {
	case h.rescope <- struct{}{}:
	default:
	}
	return nil
}

// rescopeDelay gathers a burst of Neutron writes (a port create is one
// transaction, a script of them many) into one recomputation per project.
const rescopeDelay = 100 * time.Millisecond

func (h *hub) rescopeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.rescope:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rescopeDelay):
		}
		h.mu.Lock()
		projects := map[string]bool{}
		for s := range h.subs {
			if !s.admin {
				projects[s.project] = true
			}
		}
		h.mu.Unlock()
		for p := range projects {
			ids, err := h.scopeOf(ctx, p)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Warn("dashboard: cannot recompute a project's view; its streams keep the old one", "project", p, "err", err)
				}
				continue
			}
			h.mu.Lock()
			for s := range h.subs {
				if !s.admin && s.project == p {
					s.ids = ids
					h.send(s, h.diff(s, nil), nil)
				}
			}
			h.mu.Unlock()
		}
	}
}

// scopeOf returns a project's scope, computing it unless the cached one
// was computed after the last change of the internal kinds.
func (h *hub) scopeOf(ctx context.Context, project string) (map[string]bool, error) {
	h.mu.Lock()
	cur := h.svcRev
	sc := h.scopes[project]
	h.mu.Unlock()
	if sc != nil && sc.svcRev == cur {
		return sc.ids, nil
	}
	if h.scope == nil {
		return map[string]bool{}, nil
	}
	// Neutron's visibility depends on the project alone (owner, shared,
	// external), not on which member or role asks.
	ids, err := h.scope(ctx, &identity.Context{ProjectID: project, ProjectName: project, Roles: []string{identity.RoleMember}})
	if err != nil {
		return nil, fmt.Errorf("the view of project %s: %w", project, err)
	}
	h.mu.Lock()
	h.scopes[project] = &projectScope{ids: ids, svcRev: cur}
	h.mu.Unlock()
	return ids, nil
}

// errStopped: the server is shutting down.
var errStopped = errors.New("the dashboard is stopping")

// viewerOf builds the viewer for a caller (computing a member's scope).
func (h *hub) viewerOf(ctx context.Context, c *identity.Context) (viewer, error) {
	if c.IsAdmin() {
		return viewer{admin: true, project: c.ProjectID}, nil
	}
	ids, err := h.scopeOf(ctx, c.ProjectID)
	if err != nil {
		return viewer{}, err
	}
	return viewer{project: c.ProjectID, ids: ids}, nil
}

// waitReady waits for the mirror's first snapshot.
func (h *hub) waitReady(ctx context.Context) error {
	select {
	case <-h.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the dashboard's view of the NSDB is not ready: %w", ctx.Err())
	}
}

// subscribe registers a stream for v; its first event is the snapshot.
func (h *hub) subscribe(v viewer) (*sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, errStopped
	}
	s := &sub{viewer: v, sent: map[string]int64{}, out: make(chan event, subBuffer)}
	snap := snapshotMsg{Rev: h.rev, Admin: v.admin, Objects: h.diff(s, nil).Put}
	if v.admin {
		snap.Alive = h.aliveOfHosts()
	}
	s.out <- event{"snapshot", mustJSON(snap)}
	h.subs[s] = true
	return s, nil
}

// unsubscribe ends a stream whose reader has gone.
func (h *hub) unsubscribe(s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[s] {
		h.drop(s)
	}
}

func (h *hub) drop(s *sub) {
	delete(h.subs, s)
	close(s.out)
}

// view returns what v sees of the mirror now (the snapshot of a stream,
// or a one-off read), in key order.
func (h *hub) view(v viewer) snapshotMsg {
	s := &sub{viewer: v, sent: map[string]int64{}}
	h.mu.Lock()
	defer h.mu.Unlock()
	snap := snapshotMsg{Rev: h.rev, Admin: v.admin, Objects: h.diff(s, nil).Put}
	if v.admin {
		snap.Alive = h.aliveOfHosts()
	}
	return snap
}

// lookup returns an object of the mirror if v may see it.
func (h *hub) lookup(v viewer, k *model.Kind, id string) (model.Object, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.objs[objKey(k, id)]
	if !ok || !v.visible(h.objs, o) {
		return nil, false
	}
	return h.shown(v, o), true
}

func (h *hub) aliveOfHosts() map[string]bool {
	out := map[string]bool{}
	for _, o := range h.objs {
		if hst, ok := o.(*model.Host); ok {
			out[hst.ID] = h.alive[hst.ID]
		}
	}
	return out
}

// diff brings s up to date over keys (nil: every key of the mirror and
// every key s was sent): objects that became visible or changed are put,
// objects gone or no longer visible are deleted. Callers hold mu.
func (h *hub) diff(s *sub, keys map[string]bool) changeMsg {
	if keys == nil {
		keys = make(map[string]bool, len(h.objs)+len(s.sent))
		for k := range h.objs {
			keys[k] = true
		}
		for k := range s.sent {
			keys[k] = true
		}
	}
	order := make([]string, 0, len(keys))
	for k := range keys {
		order = append(order, k)
	}
	slices.Sort(order)
	m := changeMsg{Rev: h.rev}
	for _, k := range order {
		o, ok := h.objs[k]
		if ok && s.visible(h.objs, o) {
			if rev, was := s.sent[k]; !was || rev != o.GetMeta().Revision {
				s.sent[k] = o.GetMeta().Revision
				m.Put = append(m.Put, wireObject{model.KindOf(o).Name, h.shown(s.viewer, o)})
			}
			continue
		}
		if _, was := s.sent[k]; was {
			delete(s.sent, k)
			m.Delete = append(m.Delete, k)
		}
	}
	return m
}

// shown is o as v receives it: redacted, and a host with its liveness.
func (h *hub) shown(v viewer, o model.Object) model.Object {
	if hst, ok := o.(*model.Host); ok {
		cp := *hst
		cp.Alive = h.alive[hst.ID]
		return &cp
	}
	return v.redact(o)
}

// send queues a change for s, when there is one; a subscriber that cannot
// keep up is dropped. Callers hold mu.
func (h *hub) send(s *sub, m changeMsg, alive map[string]bool) {
	m.Alive = alive
	if len(m.Put) == 0 && len(m.Delete) == 0 && len(m.Alive) == 0 {
		return
	}
	m.Rev = h.rev
	select {
	case s.out <- event{"change", mustJSON(m)}:
	default:
		h.log.Warn("dashboard: an event stream fell behind and was closed; the page will reconnect", "project", s.project)
		h.drop(s)
	}
}

// mustJSON encodes the hub's own message types, which always encode.
// encoding/json escapes <, > and & in strings, so no name can become
// markup in any page that would (wrongly) insert it as HTML, and newlines
// are escaped, so no name can end a Server-Sent Event early.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ui: encode %T: %v", v, err))
	}
	return b
}
