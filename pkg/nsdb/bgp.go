package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
)

// The BGP state agents publish (pkg/agent/bgp), each key under its
// host's id (RBAC lets a host write nothing else, see HostPermissions)
// and the liveness lease of the gateway whose agent speaks for the port:
// when it dies, what it learned and what it said about its sessions go
// with it. While a port moves from one gateway to another both may hold
// a copy for a while; readers take the newest (HostEntries).
const (
	// LearnedRoutePrefix holds the routes BGP peers announce:
	// <hostID>/<portID>/<escaped prefix> → LearnedRoute as JSON.
	LearnedRoutePrefix = root + "state/route/"
	// bgpPeerStatePrefix holds the sessions' state: <hostID>/<peerID> →
	// BGPPeerStatus as JSON.
	bgpPeerStatePrefix = root + "state/bgp-peer/"
)

// maxTxnOps stays under etcd's --max-txn-ops (128).
const maxTxnOps = 100

// LearnedRoute is a route a BGP peer announced to a router port.
type LearnedRoute struct {
	RouterID string       `json:"router_id"`
	PortID   string       `json:"port_id"`
	Dst      netip.Prefix `json:"dst"`
	Gateway  netip.Addr   `json:"gateway"`
	// HostID is the gateway whose agent learned it.
	HostID string `json:"host_id"`
	// PeerID is the BGP peer that announced it.
	PeerID string `json:"peer_id,omitempty"`
}

// ID is the route's id as the model shows it (model.LearnedRouteID): the
// same whichever gateway learned it.
func (r LearnedRoute) ID() string { return model.LearnedRouteID(r.PortID, r.Dst.Masked()) }

// Key is where the route's host keeps it.
func (r LearnedRoute) Key() string {
	return LearnedRoutePrefix + r.HostID + "/" + r.PortID + "/" + url.PathEscape(r.Dst.Masked().String())
}

// parseLearnedRouteKey returns the host and the route id of a learned
// route's key.
func parseLearnedRouteKey(key string) (host, id string, ok bool) {
	host, rest, ok := hostScoped(key, LearnedRoutePrefix)
	port, esc, found := strings.Cut(rest, "/")
	if !ok || !found || !model.IsUUID(port) {
		return "", "", false
	}
	raw, err := url.PathUnescape(esc)
	if err != nil {
		return "", "", false
	}
	dst, err := netip.ParsePrefix(raw)
	if err != nil {
		return "", "", false
	}
	return host, model.LearnedRouteID(port, dst.Masked()), true
}

// Route is the learned route as the model shows it: a normal route
// through the port, of the default weight, marked learned, whose id is
// ID.
func (r LearnedRoute) Route() *model.Route {
	dst := r.Dst.Masked()
	rt := &model.Route{RouterID: r.RouterID, Type: model.RouteNormal, Dst: dst, Gateway: r.Gateway,
		PortID: r.PortID, Learned: true}
	rt.ID = r.ID()
	model.ApplyDefaults(rt)
	return rt
}

func (r LearnedRoute) valid() error {
	switch {
	case !validHostID(r.HostID):
		return fmt.Errorf("host %q is not a host id", r.HostID)
	case !model.IsUUID(r.RouterID):
		return fmt.Errorf("router %q is not a UUID", r.RouterID)
	case !model.IsUUID(r.PortID):
		return fmt.Errorf("port %q is not a UUID", r.PortID)
	case !r.Dst.IsValid():
		return fmt.Errorf("no destination")
	case r.Gateway.IsValid() && r.Gateway.Is4() != r.Dst.Addr().Is4():
		return fmt.Errorf("gateway %s and destination %s are of different families", r.Gateway, r.Dst)
	}
	return nil
}

func parseLearnedRoute(key, value []byte) (LearnedRoute, bool) {
	var r LearnedRoute
	if !strings.HasPrefix(string(key), LearnedRoutePrefix) || json.Unmarshal(value, &r) != nil || r.valid() != nil {
		return LearnedRoute{}, false
	}
	return r, r.Key() == string(key)
}

// UpdateLearnedRoutes writes put under lease and deletes del, each under
// its own HostID, in as few transactions as etcd allows.
func (s *Store) UpdateLearnedRoutes(ctx context.Context, put, del []LearnedRoute, lease LeaseID) error {
	var ops []clientv3.Op
	for _, r := range put {
		if err := r.valid(); err != nil {
			return fmt.Errorf("nsdb: learned route: %w", err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(r.Key(), string(b), withLease(lease)...))
	}
	for _, r := range del {
		if !validHostID(r.HostID) {
			return fmt.Errorf("nsdb: learned route to withdraw: host %q is not a host id", r.HostID)
		}
		ops = append(ops, clientv3.OpDelete(r.Key()))
	}
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		if _, err := s.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("nsdb: write %d learned routes: %w", n, err)
		}
		ops = ops[n:]
	}
	return nil
}

// LearnedRoutes lists the learned routes of a router (every router's
// when routerID is empty), the newest host's of each.
func (s *Store) LearnedRoutes(ctx context.Context, routerID string) ([]LearnedRoute, error) {
	kvs, _, err := s.rangeAll(ctx, LearnedRoutePrefix, 0, false)
	if err != nil {
		return nil, err
	}
	var merged HostEntries[string, LearnedRoute]
	var out []LearnedRoute
	for _, r := range learnedRoutes(&merged, kvs) {
		if routerID == "" || r.RouterID == routerID {
			out = append(out, r)
		}
	}
	return out, nil
}

func learnedRoutes(merged *HostEntries[string, LearnedRoute], kvs []*kv) []LearnedRoute {
	merged.Reset()
	for _, kv := range kvs {
		if r, ok := parseLearnedRoute(kv.Key, kv.Value); ok {
			merged.Put(r.ID(), r.HostID, r, kv.ModRevision)
		}
	}
	var out []LearnedRoute
	merged.Each(func(_ string, r LearnedRoute) { out = append(out, r) })
	return out
}

// LearnedRouteBatch is what a learned-route watcher receives. On Reset,
// Put holds every route and replaces what the receiver had; otherwise Put
// holds the routes written (or whose newest copy changed) and Deleted the
// ids (LearnedRoute.ID) of those no host holds any more.
type LearnedRouteBatch struct {
	Reset   bool
	Put     []LearnedRoute
	Deleted []string
	Rev     int64
}

// WatchLearnedRoutes delivers the learned routes to fn: a Reset first,
// then changes, until ctx is done or fn fails.
func (s *Store) WatchLearnedRoutes(ctx context.Context, fn func(LearnedRouteBatch) error) error {
	var merged HostEntries[string, LearnedRoute]
	return s.follow(ctx, LearnedRoutePrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			return fn(LearnedRouteBatch{Reset: true, Put: learnedRoutes(&merged, kvs), Rev: rev})
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := LearnedRouteBatch{Rev: rev}
			for _, ev := range evs {
				host, id, ok := parseLearnedRouteKey(string(ev.Kv.Key))
				if !ok {
					continue
				}
				if ev.Type == mvccpb.PUT {
					if r, ok := parseLearnedRoute(ev.Kv.Key, ev.Kv.Value); ok {
						if w, changed := merged.Put(id, host, r, ev.Kv.ModRevision); changed {
							b.Put = append(b.Put, w)
						}
						continue
					}
				}
				// A malformed put is as good as a deletion: nobody can
				// route by it.
				switch w, present, changed, _ := merged.Delete(id, host); {
				case !changed:
				case present:
					b.Put = append(b.Put, w)
				default:
					b.Deleted = append(b.Deleted, id)
				}
			}
			if len(b.Put)+len(b.Deleted) == 0 {
				return nil
			}
			return fn(b)
		})
}

// BGPPeerStatus is a BGP session as the agent speaking for its port
// reports it.
type BGPPeerStatus struct {
	HostID string `json:"host_id"`
	// State is the session's state (idle, connect, active, opensent,
	// openconfirm, established), or a sentence saying why there is no
	// session.
	State string `json:"state"`
	// Since is when the session was established (zero otherwise).
	Since    time.Time `json:"since,omitzero"`
	Received uint32    `json:"received,omitempty"`
	Sent     uint32    `json:"sent,omitempty"`
}

func bgpPeerStateKey(hostID, peerID string) string { return bgpPeerStatePrefix + hostID + "/" + peerID }

// PutBGPPeerStatus publishes a session's state under st.HostID and lease.
func (s *Store) PutBGPPeerStatus(ctx context.Context, peerID string, st BGPPeerStatus, lease LeaseID) error {
	if !model.IsUUID(peerID) {
		return notFound(model.BGPPeerKind, peerID)
	}
	if !validHostID(st.HostID) {
		return fmt.Errorf("nsdb: state of BGP peer %s: host id %q: %w", peerID, st.HostID, model.ErrNotFound)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, bgpPeerStateKey(st.HostID, peerID), string(b), withLease(lease)...); err != nil {
		return fmt.Errorf("nsdb: write state of BGP peer %s: %w", peerID, err)
	}
	return nil
}

// TakeBackBGPPeerStatus deletes host hostID's state of a session (another
// host's stays).
func (s *Store) TakeBackBGPPeerStatus(ctx context.Context, hostID, peerID string) error {
	if _, err := s.cli.Delete(ctx, bgpPeerStateKey(hostID, peerID)); err != nil {
		return fmt.Errorf("nsdb: take back the state of BGP peer %s: %w", peerID, err)
	}
	return nil
}

// BGPPeerStatuses returns every session's published state by peer id
// (the newest, when several hosts wrote one).
func (s *Store) BGPPeerStatuses(ctx context.Context) (map[string]BGPPeerStatus, error) {
	kvs, _, err := s.rangeAll(ctx, bgpPeerStatePrefix, 0, false)
	if err != nil {
		return nil, err
	}
	var merged HostEntries[string, BGPPeerStatus]
	for _, kv := range kvs {
		host, id, ok := hostScoped(string(kv.Key), bgpPeerStatePrefix)
		var st BGPPeerStatus
		if ok && model.IsUUID(id) && json.Unmarshal(kv.Value, &st) == nil {
			merged.Put(id, host, st, kv.ModRevision)
		}
	}
	out := make(map[string]BGPPeerStatus, len(kvs))
	merged.Each(func(id string, st BGPPeerStatus) { out[id] = st })
	return out, nil
}
