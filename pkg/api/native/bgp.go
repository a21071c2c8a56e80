package native

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// BGPStore is what the API reads of the BGP state the gateways publish.
type BGPStore interface {
	LearnedRoutes(ctx context.Context, routerID string) ([]nsdb.LearnedRoute, error)
	BGPPeerStatuses(ctx context.Context) (map[string]nsdb.BGPPeerStatus, error)
}

// withLearned adds to a list of routes the learned ones (not stored: the
// gateways publish them) that match the list's filters.
func (a *API) withLearned(ctx context.Context, k *model.Kind, objs []model.Object, filters ...[2]string) ([]model.Object, error) {
	if k != model.RouteKind {
		return objs, nil
	}
	router := ""
	for _, f := range filters {
		if f[0] == "router_id" {
			router = f[1]
		}
	}
	learned, err := a.store.LearnedRoutes(ctx, router)
	if err != nil {
		return nil, err
	}
	// Several gateways may publish the same route (a port that moved):
	// one is enough.
	seen := map[string]bool{}
next:
	for _, lr := range learned {
		r := lr.Route()
		if seen[r.ID] {
			continue
		}
		for _, f := range filters {
			if f[0] != "" && k.Field(f[0]).Text(r) != f[1] {
				continue next
			}
		}
		seen[r.ID] = true
		objs = append(objs, r)
	}
	return objs, nil
}

// learnedRoute finds a learned route by id (nil if there is none).
func (a *API) learnedRoute(ctx context.Context, id string) (*model.Route, error) {
	learned, err := a.store.LearnedRoutes(ctx, "")
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(learned, func(lr nsdb.LearnedRoute) bool { return model.LearnedRouteID(lr.PortID, lr.Dst) == id })
	if i < 0 {
		return nil, nil
	}
	return learned[i].Route(), nil
}

// notStored turns a missing route that is a learned one into a conflict
// that says why it cannot be changed.
func (a *API) notStored(ctx context.Context, k *model.Kind, id string, err error) error {
	if k != model.RouteKind || !errors.Is(err, model.ErrNotFound) {
		return err
	}
	if r, lerr := a.learnedRoute(ctx, id); lerr == nil && r != nil {
		return model.Conflictf("route %s was learned from a BGP peer and is not stored: withdraw it at the peer, or delete the peer", id)
	}
	return err
}

// decorateBGPPeers fills the sessions' state as the gateways report it.
func (a *API) decorateBGPPeers(ctx context.Context, objs []model.Object) error {
	st, err := a.store.BGPPeerStatuses(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, o := range objs {
		p := o.(*model.BGPPeer)
		s, ok := st[p.ID]
		if !ok {
			p.Status = "down: no agent speaks for the port (not bound to an interface, or its host is down)"
			continue
		}
		p.Status, p.PrefixesReceived, p.PrefixesSent, p.SpeakerHostID = s.State, s.Received, s.Sent, s.HostID
		if !s.Since.IsZero() && s.Since.Before(now) {
			p.Uptime = uint64(now.Sub(s.Since) / time.Second)
		}
	}
	return nil
}
