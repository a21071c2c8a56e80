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

// The BGP state agents publish (pkg/agent/bgp), each key under the
// liveness lease of the gateway whose agent speaks for the port: when it
// dies, what it learned and what it said about its sessions go with it.
const (
	// LearnedRoutePrefix holds the routes BGP peers announce:
	// <portID>/<escaped prefix> → LearnedRoute as JSON.
	LearnedRoutePrefix = root + "state/route/"
	// bgpPeerStatePrefix holds the sessions' state: <peerID> →
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

// Key is where the route lives.
func (r LearnedRoute) Key() string {
	return LearnedRoutePrefix + r.PortID + "/" + url.PathEscape(r.Dst.Masked().String())
}

// Route is the learned route as the model shows it: a normal route
// through the port, of the default weight, marked learned, whose id is
// model.LearnedRouteID.
func (r LearnedRoute) Route() *model.Route {
	dst := r.Dst.Masked()
	rt := &model.Route{RouterID: r.RouterID, Type: model.RouteNormal, Dst: dst, Gateway: r.Gateway,
		PortID: r.PortID, Learned: true}
	rt.ID = model.LearnedRouteID(r.PortID, dst)
	model.ApplyDefaults(rt)
	return rt
}

func (r LearnedRoute) valid() error {
	switch {
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

// UpdateLearnedRoutes writes put and deletes del (by key) under lease, in
// as few transactions as etcd allows. A deletion removes only a key this
// lease wrote: a route the port's next gateway learned since stays.
func (s *Store) UpdateLearnedRoutes(ctx context.Context, put, del []LearnedRoute, lease LeaseID) error {
	type op struct {
		cmp *clientv3.Cmp
		op  clientv3.Op
	}
	var ops []op
	for _, r := range put {
		if err := r.valid(); err != nil {
			return fmt.Errorf("nsdb: learned route: %w", err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		ops = append(ops, op{op: clientv3.OpPut(r.Key(), string(b), withLease(lease)...)})
	}
	for _, r := range del {
		key := r.Key()
		cmp := clientv3.Compare(clientv3.LeaseValue(key), "=", lease)
		ops = append(ops, op{cmp: &cmp, op: clientv3.OpDelete(key)})
	}
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		batch := ops[:n]
		ops = ops[n:]
		// Deletions of keys that are no longer ours are done one by one
		// (a compare per key would fail the whole batch).
		var plain []clientv3.Op
		for _, o := range batch {
			if o.cmp == nil {
				plain = append(plain, o.op)
				continue
			}
			if _, err := s.cli.Txn(ctx).If(*o.cmp).Then(o.op).Commit(); err != nil {
				return fmt.Errorf("nsdb: delete learned route: %w", err)
			}
		}
		if len(plain) > 0 {
			if _, err := s.cli.Txn(ctx).Then(plain...).Commit(); err != nil {
				return fmt.Errorf("nsdb: write %d learned routes: %w", len(plain), err)
			}
		}
	}
	return nil
}

// LearnedRoutes lists the learned routes of a router (every router's
// when routerID is empty).
func (s *Store) LearnedRoutes(ctx context.Context, routerID string) ([]LearnedRoute, error) {
	kvs, _, err := s.rangeAll(ctx, LearnedRoutePrefix, 0, false)
	if err != nil {
		return nil, err
	}
	var out []LearnedRoute
	for _, kv := range kvs {
		if r, ok := parseLearnedRoute(kv.Key, kv.Value); ok && (routerID == "" || r.RouterID == routerID) {
			out = append(out, r)
		}
	}
	return out, nil
}

// LearnedRouteBatch is what a learned-route watcher receives. On Reset,
// Put holds every route and replaces what the receiver had; otherwise Put
// holds the routes written and Deleted the keys deleted or expired.
type LearnedRouteBatch struct {
	Reset   bool
	Put     []LearnedRoute
	Deleted []string
	Rev     int64
}

// WatchLearnedRoutes delivers the learned routes to fn: a Reset first,
// then changes, until ctx is done or fn fails.
func (s *Store) WatchLearnedRoutes(ctx context.Context, fn func(LearnedRouteBatch) error) error {
	return s.follow(ctx, LearnedRoutePrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			b := LearnedRouteBatch{Reset: true, Rev: rev}
			for _, kv := range kvs {
				if r, ok := parseLearnedRoute(kv.Key, kv.Value); ok {
					b.Put = append(b.Put, r)
				}
			}
			return fn(b)
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := LearnedRouteBatch{Rev: rev}
			for _, ev := range evs {
				if ev.Type == mvccpb.PUT {
					if r, ok := parseLearnedRoute(ev.Kv.Key, ev.Kv.Value); ok {
						b.Put = append(b.Put, r)
						continue
					}
				}
				// A malformed put is as good as a deletion: nobody can
				// route by it.
				b.Deleted = append(b.Deleted, string(ev.Kv.Key))
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

func bgpPeerStateKey(peerID string) string { return bgpPeerStatePrefix + peerID }

// PutBGPPeerStatus publishes a session's state under lease.
func (s *Store) PutBGPPeerStatus(ctx context.Context, peerID string, st BGPPeerStatus, lease LeaseID) error {
	if !model.IsUUID(peerID) {
		return notFound(model.BGPPeerKind, peerID)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, bgpPeerStateKey(peerID), string(b), withLease(lease)...); err != nil {
		return fmt.Errorf("nsdb: write state of BGP peer %s: %w", peerID, err)
	}
	return nil
}

// TakeBackBGPPeerStatus deletes a session's state if this lease wrote it.
func (s *Store) TakeBackBGPPeerStatus(ctx context.Context, peerID string, lease LeaseID) error {
	key := bgpPeerStateKey(peerID)
	_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("nsdb: take back the state of BGP peer %s: %w", peerID, err)
	}
	return nil
}

// BGPPeerStatuses returns every session's published state by peer id.
func (s *Store) BGPPeerStatuses(ctx context.Context) (map[string]BGPPeerStatus, error) {
	kvs, _, err := s.rangeAll(ctx, bgpPeerStatePrefix, 0, false)
	if err != nil {
		return nil, err
	}
	out := make(map[string]BGPPeerStatus, len(kvs))
	for _, kv := range kvs {
		id := strings.TrimPrefix(string(kv.Key), bgpPeerStatePrefix)
		var st BGPPeerStatus
		if model.IsUUID(id) && json.Unmarshal(kv.Value, &st) == nil {
			out[id] = st
		}
	}
	return out, nil
}
