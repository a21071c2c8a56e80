package bgp

import (
	"context"
	"math"
	"net/netip"
	"time"

	"github.com/nagare/nagare/pkg/nsdb"
)

// learnedPath is a best path the router may learn.
type learnedPath struct {
	nextHop netip.Addr
	peer    netip.Addr
}

// Route flap damping (RFC 2439, simplified): every change of a prefix
// (announced again, replaced, withdrawn) adds a penalty of 1 that halves
// every dampHalfLife; above dampSuppress the prefix is not learned until
// its penalty falls under dampReuse. A route flapping ten times a second
// is thus suppressed within half a second and reused some 30 s after it
// calms down, and the NSDB (and every agent's topology) sees neither the
// flapping nor a storm of writes.
const (
	dampHalfLife = 15 * time.Second
	dampSuppress = 4.0
	dampReuse    = 1.0
)

type damping struct {
	penalty    float64
	at         time.Time // when penalty was last updated
	suppressed bool
}

// current is the penalty decayed to now.
func (d *damping) current(now time.Time) float64 {
	return d.penalty * math.Exp2(-now.Sub(d.at).Seconds()/dampHalfLife.Seconds())
}

// hit records a change; it reports whether the prefix just became
// suppressed.
func (d *damping) hit(now time.Time) bool {
	d.penalty, d.at = d.current(now)+1, now
	if !d.suppressed && d.penalty >= dampSuppress {
		d.suppressed = true
		return true
	}
	return false
}

// reusable reports (and records) a suppressed prefix that calmed down.
func (d *damping) reusable(now time.Time) bool {
	if d.suppressed && d.current(now) < dampReuse {
		d.suppressed = false
		return true
	}
	return false
}

// BestPaths implements Events: the router learns what it may.
func (e portEvents) BestPaths(routes []Route) {
	c := e.c
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := c.ports[e.port]
	if ps == nil {
		return
	}
	for _, r := range routes {
		pfx := r.Prefix.Masked()
		c.met.routeChanges.Inc()
		d := ps.damp[pfx]
		if d == nil {
			d = &damping{at: now}
			ps.damp[pfx] = d
		}
		if _, had := ps.rib[pfx]; had || r.Withdrawn {
			if d.hit(now) {
				c.met.dampened.Inc()
				c.cfg.Log.Warn("BGP route flapping: suppressed until it calms down", "port", e.port, "prefix", pfx,
					"peer", r.Peer, "penalty", d.penalty)
			}
		}
		if r.Withdrawn {
			delete(ps.rib, pfx)
			c.dirty = true
			continue
		}
		if why := ps.reject(pfx, r); why != "" {
			c.met.rejected.WithLabelValues(why).Inc()
			c.cfg.Log.Warn("BGP route not learned", "port", e.port, "prefix", pfx, "next_hop", r.NextHop, "peer", r.Peer, "why", why)
			if _, had := ps.rib[pfx]; had {
				delete(ps.rib, pfx)
				c.dirty = true
			}
			continue
		}
		nh := r.NextHop
		if !nh.IsValid() || nh.IsUnspecified() {
			nh = r.Peer
		}
		ps.rib[pfx] = learnedPath{nextHop: nh, peer: r.Peer}
		c.dirty = true
	}
}

// reject says why a router must not learn a route ("" if it may): a peer
// announcing the router's own networks or subnets back (a loop, or a
// hijack), or a next hop the uplink cannot reach in one hop.
func (ps *portSpeaker) reject(pfx netip.Prefix, r Route) string {
	for _, own := range ps.conf.own {
		if own.Overlaps(pfx) && pfx.Bits() >= own.Bits() {
			return "own-prefix"
		}
	}
	nh := r.NextHop
	if nh.IsValid() && !nh.IsUnspecified() && !ps.conf.network.Contains(nh) {
		return "next-hop-off-link"
	}
	if nh == ps.conf.addr {
		return "next-hop-self"
	}
	return ""
}

// flushLearned publishes the learned routes of the uplinks that are up:
// what changed, or everything again under a new lease.
func (c *Controller) flushLearned(ctx context.Context) {
	now := time.Now()
	c.mu.Lock()
	for _, ps := range c.ports {
		for pfx, d := range ps.damp {
			if d.reusable(now) {
				c.cfg.Log.Info("BGP route calmed down: learned again", "port", ps.conf.portID, "prefix", pfx)
				c.dirty = true
			} else if !d.suppressed && d.current(now) < 0.01 {
				delete(ps.damp, pfx)
			}
		}
	}
	lease := c.cfg.Lease()
	if !c.dirty && lease == c.lease {
		c.mu.Unlock()
		return
	}
	want := map[string]nsdb.LearnedRoute{}
	for id, ps := range c.ports {
		if !c.up[id] || ps.speaker == nil {
			continue
		}
		for pfx, lp := range ps.rib {
			if d := ps.damp[pfx]; d != nil && d.suppressed {
				continue
			}
			r := nsdb.LearnedRoute{RouterID: ps.conf.routerID, PortID: id, Dst: pfx, Gateway: lp.nextHop, HostID: c.cfg.HostID}
			for _, m := range ps.conf.peers {
				if m.Address == lp.peer {
					r.PeerID = m.ID
				}
			}
			want[r.Key()] = r
		}
	}
	var put, del []nsdb.LearnedRoute
	for k, r := range want {
		if old, ok := c.written[k]; !ok || old != r || lease != c.lease {
			put = append(put, r)
		}
	}
	for k, r := range c.written {
		if _, ok := want[k]; !ok {
			del = append(del, r)
		}
	}
	c.dirty = false
	c.mu.Unlock()
	if len(put) == 0 && len(del) == 0 && lease == c.lease {
		return
	}
	if err := c.cfg.DB.UpdateLearnedRoutes(ctx, put, del, lease); err != nil {
		if ctx.Err() == nil {
			c.cfg.Log.Warn("publish learned routes; retrying", "put", len(put), "withdrawn", len(del), "err", err)
		}
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.written, c.lease = want, lease
	c.met.learned.Set(float64(len(want)))
	c.mu.Unlock()
	if len(put)+len(del) > 0 {
		c.cfg.Log.Info("learned routes published", "routes", len(want), "put", len(put), "withdrawn", len(del))
	}
}
