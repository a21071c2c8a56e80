package mirror

import (
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// ApplyLearnedRoutes is the learned-route watch's callback: the routes
// join the topology as routes marked learned (their port must exist; one
// whose port is gone, or not yet mirrored, waits for it).
func (m *Mirror) ApplyLearnedRoutes(b nsdb.LearnedRouteBatch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.Reset {
		m.learned = make(map[string]*model.Route, len(b.Put))
	}
	for _, id := range b.Deleted {
		delete(m.learned, id)
	}
	for _, r := range b.Put {
		m.learned[r.ID()] = r.Route()
	}
	m.commit(nil, false)
	return nil
}

// syncLearned puts into objs the learned routes whose port is a port of
// their router, takes out those that left, and returns the events of
// what changed since the last snapshot (after a reset of objs, every
// learned route is new). m.mu is held.
func (m *Mirror) syncLearned(reset bool) []nsdb.Event {
	if reset {
		m.included = map[string]*model.Route{}
	}
	now := map[string]*model.Route{}
	for id, r := range m.learned {
		p, ok := m.objs.get(model.PortKind, r.PortID).(*model.Port)
		if ok && p.RouterID == r.RouterID && m.objs.get(model.RouterKind, r.RouterID) != nil {
			now[id] = r
		}
	}
	var events []nsdb.Event
	for id, r := range now {
		prev := m.included[id]
		if prev != nil && *prev == *r {
			continue
		}
		m.objs.put(r, m.gen)
		ev := nsdb.Event{Type: nsdb.Put, Kind: model.RouteKind, ID: id, Object: r}
		if prev != nil {
			ev.Prev = prev
		}
		events = append(events, ev)
	}
	for id, prev := range m.included {
		if now[id] == nil {
			m.objs.del(model.RouteKind, id, m.gen)
			events = append(events, nsdb.Event{Type: nsdb.Delete, Kind: model.RouteKind, ID: id, Prev: prev})
		}
	}
	m.included = now
	return events
}
