package gateway

import (
	"net/netip"
	"slices"
	"time"
)

// reported is a gateway's word about one of its uplinks.
type reported uint8

const (
	reportedNone reported = iota // not in its last report: no news
	reportedUp
	reportedDown
)

// remote is a gateway this host probes.
type remote struct {
	addr      netip.Addr
	last      time.Time // last report
	streak    int       // reports since it was found dead
	reachable bool
	answered  bool // a report came since it was (re)found
	nsdb      bool // its last report says it reaches the NSDB
	reported  map[uint32]reported
}

// proberMemory is how long a host that probed this one is told news.
const proberMemory = 2 * time.Second

// probe sends a request to every gateway (and forgets the hosts that are
// no longer gateways).
func (g *Gateways) probe() {
	now := time.Now()
	g.mu.Lock()
	for h := range g.remote {
		if _, ok := g.topo.gateways[h]; !ok {
			delete(g.remote, h)
		}
	}
	g.seq++
	req := appendRequest(nil, g.seq)
	var to []netip.Addr
	for h, a := range g.topo.gateways {
		r := g.remote[h]
		if r == nil || r.addr != a {
			// Innocent until proven dead: it has its detection time to
			// answer the first probe.
			r = &remote{addr: a, last: now, reachable: true, reported: map[uint32]reported{}}
			g.remote[h] = r
		}
		to = append(to, a)
	}
	g.mu.Unlock()
	for _, a := range to {
		if err := g.cfg.Datapath.SendProbe(a, req); err != nil {
			g.met.probeErrors.Inc()
		} else {
			g.met.probesSent.Inc()
		}
	}
}

// expireRemote finds the gateways that stopped answering. g.mu is held.
func (g *Gateways) expireRemote(now time.Time) {
	if g.stalled {
		return
	}
	limit := g.cfg.Interval * time.Duration(g.cfg.Multiplier)
	for h, r := range g.remote {
		if r.reachable && now.Sub(r.last) > limit {
			r.reachable, r.streak = false, 0
			g.met.gatewaysLost.Inc()
			g.cfg.Log.Warn("gateway does not answer probes: its uplinks are dead", "host", h, "address", r.addr,
				"silent", now.Sub(r.last).Round(time.Millisecond))
		}
	}
}

// Probe implements datapath.ProbeHandler: requests are answered with this
// host's report, reports update what this host knows of the sender.
func (g *Gateways) Probe(from netip.Addr, payload []byte) {
	g.mu.Lock()
	m, err := decode(payload, g.buf)
	if err != nil {
		g.mu.Unlock()
		g.met.malformed.Inc()
		return
	}
	now := time.Now()
	if m.typ == msgRequest {
		g.probers[from] = now
		report := g.reportLocked(m.seq)
		g.mu.Unlock()
		g.met.probesAnswered.Inc()
		_ = g.cfg.Datapath.SendProbe(from, report)
		return
	}
	g.buf = m.uplinks[:0]
	var r *remote
	host := ""
	for h, x := range g.remote {
		if x.addr == from {
			r, host = x, h
			break
		}
	}
	if r == nil {
		g.mu.Unlock()
		g.met.unsolicited.Inc()
		return
	}
	g.met.reports.Inc()
	changed := r.nsdb != m.nsdb || !r.answered
	r.last, r.nsdb, r.answered = now, m.nsdb, true
	if !r.reachable {
		r.streak++
		if r.streak >= g.cfg.Multiplier {
			r.reachable, changed = true, true
			g.cfg.Log.Info("gateway answers probes again", "host", host, "address", from)
		}
	}
	seen := map[uint32]bool{}
	for _, u := range m.uplinks {
		st := reportedDown
		if u.up {
			st = reportedUp
		}
		seen[u.key] = true
		if r.reported[u.key] != st {
			r.reported[u.key], changed = st, true
		}
	}
	for k := range r.reported {
		if !seen[k] {
			delete(r.reported, k)
			changed = true
		}
	}
	g.mu.Unlock()
	if changed {
		g.kick()
	}
}

// reportLocked is this host's report: its uplinks and whether they carry
// traffic. g.mu is held.
func (g *Gateways) reportLocked(seq uint32) []byte {
	ups := make([]uplinkState, 0, len(g.topo.local))
	for id, u := range g.topo.local {
		if u.key == 0 {
			continue
		}
		l := g.local[id]
		ups = append(ups, uplinkState{key: u.key, up: l != nil && l.up})
	}
	slices.SortFunc(ups, func(a, b uplinkState) int { return int(a.key) - int(b.key) })
	return appendReport(nil, seq, g.nsdbFresh(time.Now()), ups)
}

// recentProbers are the hosts that probed this one lately. g.mu is held.
func (g *Gateways) recentProbers(now time.Time) []netip.Addr {
	var out []netip.Addr
	for a, t := range g.probers {
		if now.Sub(t) > proberMemory {
			delete(g.probers, a)
			continue
		}
		out = append(out, a)
	}
	return out
}
