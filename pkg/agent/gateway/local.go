package gateway

import (
	"time"
)

// local is an uplink bound here.
type local struct {
	up bool
	// healthySince is when the uplink last became healthy; zero while
	// it is not.
	healthySince time.Time
	why          string      // why it is unhealthy
	downs        []time.Time // recent falls, for the hold-down's growth
}

// maxHoldDown caps the hold-down of an uplink that keeps flapping.
const maxHoldDown = 30 * time.Second

// holdDown is how long an uplink must stay healthy before it carries
// traffic again: the configured time, doubled for every other fall in
// the last minute.
func (g *Gateways) holdDown(l *local, now time.Time) time.Duration {
	recent := 0
	for _, t := range l.downs {
		if now.Sub(t) < time.Minute {
			recent++
		}
	}
	d := g.cfg.HoldDown
	for i := 1; i < recent && d < maxHoldDown; i++ {
		d *= 2
	}
	return min(d, maxHoldDown)
}

// health says whether an uplink bound here can carry traffic now, and
// why not. g.mu is held.
func (g *Gateways) health(u uplink, now time.Time) (bool, string) {
	if g.linksOK {
		l, ok := g.links[u.iface]
		switch {
		case !ok:
			return false, "interface " + u.iface + " is missing"
		case !l.Running:
			return false, "interface " + u.iface + " is down"
		}
	}
	if !g.nsdbOK && !g.outage {
		return false, "the NSDB does not answer (and another gateway reaches it)"
	}
	if u.bgp {
		if !g.control[u.port] {
			return false, "no BGP session established"
		}
		return true, ""
	}
	if len(u.nextHops) > 0 && !g.hops.reachable(u, now) {
		return false, "no static next hop answers ARP"
	}
	return true, ""
}

// evaluateLocal brings the uplinks bound here in line with the topology
// and judges each: down at once when unhealthy, up after the hold-down.
// It returns the changes. g.mu is held.
func (g *Gateways) evaluateLocal(now time.Time) []change {
	var out []change
	for id, l := range g.local {
		if _, ok := g.topo.local[id]; !ok {
			delete(g.local, id)
			delete(g.control, id)
			if l.up {
				out = append(out, change{id, false})
			}
		}
	}
	for id, u := range g.topo.local {
		l := g.local[id]
		if l == nil {
			l = &local{}
			g.local[id] = l
		}
		healthy, why := g.health(u, now)
		switch {
		case !healthy:
			if l.up {
				l.up = false
				l.downs = append(l.downs, now)
				if len(l.downs) > 16 {
					l.downs = l.downs[1:]
				}
				out = append(out, change{id, false})
				g.cfg.Log.Warn("uplink down", "port", id, "interface", u.iface, "why", why)
			} else if why != l.why {
				g.cfg.Log.Info("uplink not ready", "port", id, "interface", u.iface, "why", why)
			}
			l.healthySince, l.why = time.Time{}, why
		case l.up:
		case l.healthySince.IsZero():
			l.healthySince, l.why = now, ""
		case now.Sub(l.healthySince) >= g.holdDown(l, now):
			l.up = true
			out = append(out, change{id, true})
			g.cfg.Log.Info("uplink up", "port", id, "interface", u.iface, "held_down", now.Sub(l.healthySince).Round(time.Millisecond))
		}
	}
	return out
}

// nsdbFresh is how recent the last answer of the NSDB must be for this
// host's reports to say it reaches it: less than NSDBTimeout, so that when
// the NSDB fails for everyone the others' reports turn before this host's
// own verdict does.
func (g *Gateways) nsdbFresh(now time.Time) bool {
	return g.nsdbOK && now.Sub(g.nsdbAt) < g.cfg.NSDBTimeout/2
}

// judgeOutage decides, when this gateway lost the NSDB, whether it is
// alone (cut off: its uplinks go down) or the NSDB failed for every
// gateway it reaches over the tunnels (an outage: they keep forwarding).
// A gateway that reaches no other gateway is alone. g.mu is held.
func (g *Gateways) judgeOutage() {
	was := g.outage
	g.outage = false
	if !g.nsdbOK {
		others := 0
		alone := false
		for _, r := range g.remote {
			if !r.reachable || !r.answered {
				continue
			}
			others++
			if r.nsdb {
				alone = true
			}
		}
		g.outage = others > 0 && !alone
	}
	if g.outage != was {
		if g.outage {
			g.cfg.Log.Warn("the NSDB answers no gateway: keeping this gateway's uplinks on the topology it has")
		} else if !g.nsdbOK {
			g.cfg.Log.Warn("another gateway reaches the NSDB, this one does not: withdrawing its uplinks")
		}
	}
}
