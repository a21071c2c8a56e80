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
// nsdb.Store.UpdateLearnedRoutes, each under its own HostID.
func (s *Store) UpdateLearnedRoutes(ctx context.Context, put, del []nsdb.LearnedRoute, lease nsdb.LeaseID) error {
	for _, r := range del {
		if r.HostID == "" || strings.Contains(r.HostID, "/") {
			return fmt.Errorf("nsdbmem: learned route %+v has no host", r)
		}
	}
	for _, r := range put {
		if r.HostID == "" || strings.Contains(r.HostID, "/") || !model.IsUUID(r.RouterID) || !model.IsUUID(r.PortID) || !r.Dst.IsValid() {
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
		s.deleteLocked(routeKey(r))
	}
	return nil
}

// LearnedRoutes lists a router's learned routes (all, for ""), the newest
// host's of each.
func (s *Store) LearnedRoutes(ctx context.Context, routerID string) ([]nsdb.LearnedRoute, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var merged nsdb.HostEntries[string, nsdb.LearnedRoute]
	for k, e := range s.keys {
		if r, ok := e.value.(nsdb.LearnedRoute); ok && strings.HasPrefix(k, routeP) {
			merged.Put(r.ID(), r.HostID, r, e.modRev)
		}
	}
	var out []nsdb.LearnedRoute
	merged.Each(func(_ string, r nsdb.LearnedRoute) {
		if routerID == "" || r.RouterID == routerID {
			out = append(out, r)
		}
	})
	return out, nil
}

// WatchLearnedRoutes delivers learned routes like
// nsdb.Store.WatchLearnedRoutes, merging the hosts' copies the same way.
func (s *Store) WatchLearnedRoutes(ctx context.Context, fn func(nsdb.LearnedRouteBatch) error) error {
	var merged nsdb.HostEntries[string, nsdb.LearnedRoute]
	return s.follow(ctx, routeP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.LearnedRouteBatch{Reset: true, Rev: rev}
			for _, e := range snap {
				r := e.value.(nsdb.LearnedRoute)
				merged.Put(r.ID(), r.HostID, r, e.modRev)
			}
			merged.Each(func(_ string, r nsdb.LearnedRoute) { b.Put = append(b.Put, r) })
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.LearnedRouteBatch{Rev: rev}
			for _, c := range cs {
				if r, ok := c.value.(nsdb.LearnedRoute); ok {
					if w, changed := merged.Put(r.ID(), r.HostID, r, c.rev); changed {
						b.Put = append(b.Put, w)
					}
					continue
				}
				r := c.prev.(nsdb.LearnedRoute)
				switch w, present, changed, _ := merged.Delete(r.ID(), r.HostID); {
				case !changed:
				case present:
					b.Put = append(b.Put, w)
				default:
					b.Deleted = append(b.Deleted, r.ID())
				}
			}
			if len(b.Put)+len(b.Deleted) == 0 {
				return nil
			}
			return fn(b)
		})
}

// PutBGPPeerStatus publishes a session's state under st.HostID and lease.
func (s *Store) PutBGPPeerStatus(ctx context.Context, peerID string, st nsdb.BGPPeerStatus, lease nsdb.LeaseID) error {
	if !model.IsUUID(peerID) {
		return fmt.Errorf("bgp-peer %s does not exist: %w", peerID, model.ErrNotFound)
	}
	if st.HostID == "" {
		return fmt.Errorf("state of bgp-peer %s has no host: %w", peerID, model.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(bgpPeerP+st.HostID+"/"+peerID, st, lease)
}

// TakeBackBGPPeerStatus deletes host's state of a session.
func (s *Store) TakeBackBGPPeerStatus(ctx context.Context, host, peerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(bgpPeerP + host + "/" + peerID)
	return nil
}

// BGPPeerStatuses returns every session's state by peer id, the newest
// host's.
func (s *Store) BGPPeerStatuses(ctx context.Context) (map[string]nsdb.BGPPeerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var merged nsdb.HostEntries[string, nsdb.BGPPeerStatus]
	for k, e := range s.keys {
		if rest, ok := strings.CutPrefix(k, bgpPeerP); ok {
			host, id, _ := strings.Cut(rest, "/")
			merged.Put(id, host, e.value.(nsdb.BGPPeerStatus), e.modRev)
		}
	}
	out := map[string]nsdb.BGPPeerStatus{}
	merged.Each(func(id string, st nsdb.BGPPeerStatus) { out[id] = st })
	return out, nil
}
