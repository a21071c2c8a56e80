// Package reach decides which hosts this host's tunnels reach: the host
// liveness the topology mirror applies (mirror.ApplyLiveness), which
// leaves unreachable hosts out of the simulation's tunnels and out of the
// datapath's tunnel peers.
//
// Agent liveness and datapath liveness are two things. A host's agent is
// alive while it holds its NSDB lease; its datapath forwards while its
// datapath does, which with the kernel datapath outlives the agent: the
// programs and maps are pinned, and a host whose agent is killed,
// restarting or being upgraded goes on forwarding its established flows.
// Cutting it when its lease ends would lose across hosts what the kernel
// keeps on the host. So a host is reachable while its agent holds its
// lease and, once the lease has ended, for as long as its datapath
// answers echo probes (packet.AppendEchoRequest), which a datapath
// answers by itself — the kernel datapath in the kernel, without its
// agent. A host whose datapath stopped too (the userspace datapath dies
// with its agent; a crashed host answers nothing) is cut within the
// lease and the probes' detection time (Interval × Multiplier): the lease
// stays the backstop. A revoked host (nsdb.MarkHostRevoked, written
// before the server ends its lease) is cut at once: it is not trusted to
// stop answering.
//
// Only hosts whose lease ended are probed, and only until it comes back
// or they are cut, so probes cost nothing while agents are alive. What
// this agent learns first of the hosts' liveness (at its start) it takes
// as the NSDB says: a host whose lease had already ended then is cut
// without a probe (it is probed again only after it holds a lease and
// loses it). After a relist (the NSDB's watch lost and found again),
// hosts alive before and missing from it are probed like any other.
package reach

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// Datapath sends the echo probes; their replies come back through the
// datapath's ProbeHandler, to Reach.Echo.
type Datapath interface {
	SendProbe(peer netip.Addr, payload []byte) error
}

// Config wires the reachability of one host's peers.
type Config struct {
	// HostID is this host, never probed.
	HostID   string
	Datapath Datapath
	// Addresses are the underlay addresses of host's tunnel endpoints
	// (its tunnel-zone memberships), where its datapath is probed.
	Addresses func(host string) []netip.Addr
	// Revoked reports whether host was revoked (nsdb.HostRevoked): a
	// revoked host whose lease ended is cut at once, whatever its
	// datapath answers, since a revoked host is not to be trusted to
	// stop. Nil: none is.
	Revoked func(ctx context.Context, host string) (bool, error)
	// Apply takes the liveness to act on (the mirror's ApplyLiveness).
	// It is called with Reach's lock held, one call at a time, in order.
	Apply func(nsdb.Liveness) error
	// Interval between probes of a host whose lease ended (default
	// 100 ms), and the rounds in a row it may miss (default 5) before it
	// is cut.
	Interval   time.Duration
	Multiplier int
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Reach filters the NSDB's host liveness for the mirror: a host whose
// lease ended is passed on as dead only once its datapath stops
// answering probes.
type Reach struct {
	cfg Config
	met *metrics

	mu       sync.Mutex
	lease    map[string]bool     // hosts holding their lease
	known    bool                // a liveness has been applied
	suspects map[string]*suspect // lease ended, not yet cut
	round    uint32              // the last probes' identifier (rounds count from 1)
}

// suspect is a host whose lease ended and whose datapath is probed.
type suspect struct {
	since    time.Time
	checked  bool         // whether it was revoked has been asked
	addrs    []netip.Addr // probed last round
	first    uint32       // the first round that probed it; 0: none yet
	answered uint32       // the latest round it answered; 0: none
	alive    bool         // its datapath has answered since the lease ended
}

// New returns a Reach.
func New(cfg Config) (*Reach, error) {
	if cfg.Datapath == nil || cfg.Addresses == nil || cfg.Apply == nil {
		return nil, errors.New("reach: Datapath, Addresses and Apply are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Multiplier <= 0 {
		cfg.Multiplier = 5
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reach{cfg: cfg, met: met, lease: map[string]bool{}, suspects: map[string]*suspect{}}, nil
}

// Apply is the host-liveness watch's callback (nsdb.WatchHostLiveness).
func (r *Reach) Apply(l nsdb.Liveness) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	out := nsdb.Liveness{Reset: l.Reset, Alive: map[string]bool{}, Rev: l.Rev}
	if l.Reset {
		next := map[string]bool{}
		for id, up := range l.Alive {
			if up {
				next[id] = true
			}
		}
		if r.known {
			for id := range r.lease {
				if !next[id] {
					r.suspect(id, now)
				}
			}
		}
		r.lease = next
		for id := range next {
			delete(r.suspects, id)
			out.Alive[id] = true
		}
		for id := range r.suspects {
			out.Alive[id] = true // reachable until its datapath is found silent
		}
	} else {
		for id, up := range l.Alive {
			switch {
			case up:
				r.lease[id] = true
				if s := r.suspects[id]; s != nil {
					delete(r.suspects, id)
					r.cfg.Log.Info("host holds its lease again", "host", id, "after", now.Sub(s.since).Round(time.Millisecond),
						"datapath_answered", s.alive)
				}
				out.Alive[id] = true
			case !r.known || id == r.cfg.HostID:
				delete(r.lease, id)
				out.Alive[id] = false
			default:
				delete(r.lease, id)
				if r.suspects[id] == nil {
					r.suspect(id, now)
				}
			}
		}
	}
	r.known = true
	if !out.Reset && len(out.Alive) == 0 {
		return nil
	}
	return r.cfg.Apply(out)
}

// suspect starts probing host id, whose lease ended. r.mu is held.
func (r *Reach) suspect(id string, now time.Time) {
	if id == r.cfg.HostID {
		return
	}
	r.suspects[id] = &suspect{since: now}
	r.met.suspects.Inc()
	r.cfg.Log.Info("host's lease ended: probing its datapath before cutting it", "host", id)
}

// Run probes the hosts whose lease ended until ctx is done.
func (r *Reach) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.tick(ctx); err != nil {
				return err
			}
		}
	}
}

// tick cuts the revoked hosts among the new suspects, judges the last
// round of probes and sends the next.
func (r *Reach) tick(ctx context.Context) error {
	if err := r.cutRevoked(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	cut := nsdb.Liveness{Alive: map[string]bool{}}
	var to []netip.Addr
	if len(r.suspects) > 0 {
		// Cut: the last Multiplier rounds sent to it, answers to any of
		// which count whenever they come, all went unanswered. Rounds
		// this agent did not send (its own stall) count for nothing.
		sent := r.round
		r.round++
		for id, s := range r.suspects {
			if s.first == 0 {
				s.first = r.round
			}
			if sent-max(s.answered, s.first-1) >= uint32(r.cfg.Multiplier) {
				delete(r.suspects, id)
				cut.Alive[id] = false
				r.met.cut.Inc()
				r.cfg.Log.Warn("host's lease ended and its datapath does not answer: cutting it from the tunnels", "host", id,
					"lease_ended", time.Since(s.since).Round(time.Millisecond), "datapath_answered_before", s.alive)
				continue
			}
			s.addrs = r.cfg.Addresses(id)
			to = append(to, s.addrs...)
		}
	}
	round := r.round
	var err error
	if len(cut.Alive) > 0 {
		err = r.cfg.Apply(cut)
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	req := packet.AppendEchoRequest(make([]byte, 0, packet.EchoLen), round)
	for _, a := range to {
		if err := r.cfg.Datapath.SendProbe(a, req); err != nil {
			r.met.sendErrors.Inc()
		} else {
			r.met.sent.Inc()
		}
	}
	return nil
}

// cutRevoked asks whether the hosts that became suspects since the last
// round were revoked, and cuts those that were.
func (r *Reach) cutRevoked(ctx context.Context) error {
	if r.cfg.Revoked == nil {
		return nil
	}
	r.mu.Lock()
	var ask []string
	for id, s := range r.suspects {
		if !s.checked {
			s.checked = true
			ask = append(ask, id)
		}
	}
	r.mu.Unlock()
	cut := nsdb.Liveness{Alive: map[string]bool{}}
	for _, id := range ask {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		revoked, err := r.cfg.Revoked(ctx, id)
		cancel()
		if err != nil {
			// The probes decide; the NSDB that did not answer has not
			// said the lease ended for long either.
			r.cfg.Log.Warn("cannot tell whether a host whose lease ended was revoked", "host", id, "err", err)
			continue
		}
		if revoked {
			cut.Alive[id] = false
		}
	}
	if len(cut.Alive) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range cut.Alive {
		if r.suspects[id] == nil {
			delete(cut.Alive, id) // its lease came back meanwhile (not as the revoked host's)
			continue
		}
		delete(r.suspects, id)
		r.met.cut.Inc()
		r.cfg.Log.Warn("host revoked: cutting it from the tunnels", "host", id)
	}
	if len(cut.Alive) == 0 {
		return nil
	}
	return r.cfg.Apply(cut)
}

// Echo takes an echo reply (packet.EchoReplyID) from a peer's datapath,
// and reports whether payload was one.
func (r *Reach) Echo(from netip.Addr, payload []byte) bool {
	id, ok := packet.EchoReplyID(payload)
	if !ok {
		return false
	}
	r.met.replies.Inc()
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == 0 || id > r.round {
		return true // not a round this agent sent
	}
	from = from.Unmap()
	for host, s := range r.suspects {
		for _, a := range s.addrs {
			if a.Unmap() != from {
				continue
			}
			s.answered = max(s.answered, id)
			if !s.alive {
				s.alive = true
				r.met.kept.Inc()
				r.cfg.Log.Info("host's lease ended but its datapath answers: still reachable", "host", host,
					"address", from, "lease_ended", time.Since(s.since).Round(time.Millisecond))
			}
			return true
		}
	}
	return true
}

// Suspects are the hosts whose lease ended and which are not cut yet,
// and whether their datapath answered (for status and tests).
func (r *Reach) Suspects() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.suspects))
	for id, s := range r.suspects {
		out[id] = s.alive
	}
	return out
}
