package nsdbmem

import (
	"context"
	"fmt"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

const (
	routeP   = "route/"
	bgpPeerP = "bgp-peer/"
)

func routeKey(r nsdb.LearnedRoute) string {
	return routeP + strings.TrimPrefix(r.Key(), nsdb.LearnedRoutePrefix)
}

// UpdateLearnedRoutes writes and deletes learned routes like
// nsdb.Store.UpdateLearnedRoutes: deletions only of keys lease wrote.
func (s *Store) UpdateLearnedRoutes(ctx context.Context, put, del []nsdb.LearnedRoute, lease nsdb.LeaseID) error {
	for _, r := range put {
		if !model.IsUUID(r.RouterID) || !model.IsUUID(r.PortID) || !r.Dst.IsValid() {
			return fmt.Errorf("nsdbmem: learned route %+v is malformed", r)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range put {
		if err := s.putLocked(routeKey(r), r, lease); err != nil {
			return err
		}
	}
	for _, r := range del {
		if e := s.keys[routeKey(r)]; e != nil && e.lease == lease {
			s.deleteLocked(routeKey(r))
		}
	}
	return nil
}

// LearnedRoutes lists a router's learned routes (all, for "").
func (s *Store) LearnedRoutes(ctx context.Context, routerID string) ([]nsdb.LearnedRoute, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []nsdb.LearnedRoute
	for k, e := range s.keys {
		if r, ok := e.value.(nsdb.LearnedRoute); ok && strings.HasPrefix(k, routeP) && (routerID == "" || r.RouterID == routerID) {
			out = append(out, r)
		}
	}
	return out, nil
}

// WatchLearnedRoutes delivers learned routes like
// nsdb.Store.WatchLearnedRoutes.
func (s *Store) WatchLearnedRoutes(ctx context.Context, fn func(nsdb.LearnedRouteBatch) error) error {
	return s.follow(ctx, routeP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.LearnedRouteBatch{Reset: true, Rev: rev}
			for _, e := range snap {
				b.Put = append(b.Put, e.value.(nsdb.LearnedRoute))
			}
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.LearnedRouteBatch{Rev: rev}
			for _, c := range cs {
				if r, ok := c.value.(nsdb.LearnedRoute); ok {
					b.Put = append(b.Put, r)
				} else {
					b.Deleted = append(b.Deleted, nsdb.LearnedRoutePrefix+strings.TrimPrefix(c.key, routeP))
				}
			}
			return fn(b)
		})
}

// PutBGPPeerStatus publishes a session's state under lease.
func (s *Store) PutBGPPeerStatus(ctx context.Context, peerID string, st nsdb.BGPPeerStatus, lease nsdb.LeaseID) error {
	if !model.IsUUID(peerID) {
		return fmt.Errorf("bgp-peer %s does not exist: %w", peerID, model.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(bgpPeerP+peerID, st, lease)
}

// TakeBackBGPPeerStatus deletes a session's state if lease wrote it.
func (s *Store) TakeBackBGPPeerStatus(ctx context.Context, peerID string, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.keys[bgpPeerP+peerID]; e != nil && e.lease == lease {
		s.deleteLocked(bgpPeerP + peerID)
	}
	return nil
}

// BGPPeerStatuses returns every session's state by peer id.
func (s *Store) BGPPeerStatuses(ctx context.Context) (map[string]nsdb.BGPPeerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]nsdb.BGPPeerStatus{}
	for k, e := range s.keys {
		if id, ok := strings.CutPrefix(k, bgpPeerP); ok {
			out[id] = e.value.(nsdb.BGPPeerStatus)
		}
	}
	return out, nil
}
