package bgp

import (
	"context"
	"net/netip"
	"time"

	"github.com/nagare/nagare/pkg/agent/bgp/bfd"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// portSpeaker is the speaker of one uplink and what it knows.
type portSpeaker struct {
	c       *Controller
	conf    *portConf
	speaker Speaker
	// failed says why the speaker does not run ("" while it does).
	failed string
	warned bool

	ifname   string // the speaker interface
	dp       int32  // its datapath index
	dpPortID string
	bfd      *bfdRunner

	peers     map[netip.Addr]peerState
	controlUp bool
	announced []netip.Prefix
	// rib is what the peers announce that the router may learn.
	rib  map[netip.Prefix]learnedPath
	damp map[netip.Prefix]*damping
}

// peerState is a configured peer and its session.
type peerState struct {
	id     string
	conf   PeerConfig
	bfd    *bfd.Config // nil: no BFD with this peer
	status PeerStatus
	// limitUntil is when a peer shut down for its prefix count is let
	// back; limitPause how long the next pause is.
	limitUntil time.Time
	limitPause time.Duration
}

// portEvents routes a speaker's events to its port.
type portEvents struct {
	c    *Controller
	port string
}

func peerConfig(c *Controller, p *portConf, m *model.BGPPeer) PeerConfig {
	pc := PeerConfig{Address: m.Address, ASN: m.ASN, Port: c.cfg.PeerPort, LocalAddress: p.addr, Interface: SpeakerInterface(p.portID),
		KeepAlive: time.Duration(m.KeepAlive) * time.Second, HoldTime: time.Duration(m.HoldTime) * time.Second,
		ConnectRetry: time.Second, MaxPrefixes: m.MaxPrefixes, Password: m.Password}
	if c.cfg.Plumbing == nil || c.cfg.NoBind {
		pc.Interface = ""
	}
	return pc
}

func bfdConfig(m *model.BGPPeer) *bfd.Config {
	if !m.BFDEnabled() {
		return nil
	}
	return &bfd.Config{Interval: time.Duration(m.BFDInterval) * time.Millisecond, Multiplier: m.BFDMultiplier}
}

// syncPeers adds, changes and removes the speaker's peers. c.mu is held.
func (ps *portSpeaker) syncPeers(ctx context.Context, want *portConf) {
	c := ps.c
	byAddr := map[netip.Addr]*model.BGPPeer{}
	for _, m := range want.peers {
		byAddr[m.Address] = m
	}
	for addr, st := range ps.peers {
		if m, ok := byAddr[addr]; !ok || m.ID != st.id {
			if err := ps.speaker.RemovePeer(ctx, addr); err != nil {
				c.cfg.Log.Warn("remove BGP peer", "port", want.portID, "peer", addr, "err", err)
			}
			if ps.bfd != nil {
				ps.bfd.remove(addr)
			}
			delete(ps.peers, addr)
			go ps.takeBack(st.id)
		}
	}
	for addr, m := range byAddr {
		pc, bc := peerConfig(c, want, m), bfdConfig(m)
		st, ok := ps.peers[addr]
		switch {
		case !ok:
			if err := ps.speaker.AddPeer(ctx, pc); err != nil {
				c.cfg.Log.Warn("add BGP peer", "port", want.portID, "peer", addr, "err", err)
				continue
			}
			st = peerState{id: m.ID, conf: pc, status: PeerStatus{Address: addr, ASN: m.ASN, State: StateIdle}}
		case st.conf.Password != pc.Password:
			// GoBGP's update leaves a session's TCP MD5 key as it was:
			// a new key is a new session.
			if err := ps.speaker.RemovePeer(ctx, addr); err != nil {
				c.cfg.Log.Warn("remove BGP peer to change its password", "port", want.portID, "peer", addr, "err", err)
				continue
			}
			if err := ps.speaker.AddPeer(ctx, pc); err != nil {
				c.cfg.Log.Warn("add BGP peer with its new password", "port", want.portID, "peer", addr, "err", err)
				delete(ps.peers, addr)
				continue
			}
			c.cfg.Log.Info("BGP peer's password changed: session restarted", "port", want.portID, "peer", addr)
			st.conf = pc
		case st.conf != pc:
			if err := ps.speaker.UpdatePeer(ctx, pc); err != nil {
				c.cfg.Log.Warn("update BGP peer", "port", want.portID, "peer", addr, "err", err)
				continue
			}
			st.conf = pc
		}
		switch {
		case bc != nil && ps.bfd != nil:
			if err := ps.bfd.set(addr, *bc); err != nil {
				c.cfg.Log.Warn("start BFD with a BGP peer", "port", want.portID, "peer", addr, "err", err)
			}
		case bc == nil && st.bfd != nil && ps.bfd != nil:
			ps.bfd.remove(addr)
		}
		st.bfd = bc
		ps.peers[addr] = st
	}
}

func (ps *portSpeaker) takeBack(peerID string) {
	c := ps.c
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.cfg.DB.TakeBackBGPPeerStatus(ctx, c.cfg.HostID, peerID); err != nil {
		c.cfg.Log.Warn("take back a BGP session's state", "peer", peerID, "err", err)
	}
	c.mu.Lock()
	delete(c.statuses, peerID)
	c.mu.Unlock()
}

// PeerChanged implements Events.
func (e portEvents) PeerChanged(st PeerStatus) {
	c := e.c
	c.mu.Lock()
	ps := c.ports[e.port]
	if ps == nil {
		c.mu.Unlock()
		return
	}
	old, ok := ps.peers[st.Address]
	if !ok {
		c.mu.Unlock()
		return
	}
	if old.status.State == StateEstablished && st.State != StateEstablished {
		c.met.flaps.Inc()
		c.cfg.Log.Warn("BGP session down", "port", e.port, "peer", st.Address, "state", st.State, "reason", st.Reason)
	} else if st.State == StateEstablished && old.status.State != StateEstablished {
		c.cfg.Log.Info("BGP session established", "port", e.port, "peer", st.Address)
	}
	if st.PrefixLimit && !old.status.PrefixLimit {
		c.met.prefixLimit.Inc()
		old.limitPause = min(max(old.limitPause*2, 30*time.Second), 10*time.Minute)
		old.limitUntil = time.Now().Add(old.limitPause)
		c.cfg.Log.Warn("BGP peer announced more prefixes than allowed: session shut down", "port", e.port,
			"peer", st.Address, "max_prefixes", old.conf.MaxPrefixes, "retry_in", old.limitPause)
	}
	// Counters come with Peers; an event has none.
	st.Received, st.Accepted, st.Sent = old.status.Received, old.status.Accepted, old.status.Sent
	old.status = st
	ps.peers[st.Address] = old
	changed, up := ps.updateControl()
	c.mu.Unlock()
	if changed && c.cfg.ControlPlane != nil {
		c.cfg.ControlPlane(e.port, up)
	}
	c.kick()
}

// updateControl recomputes whether the uplink's control plane is up: a
// session established, with BFD up where BFD runs. c.mu is held.
func (ps *portSpeaker) updateControl() (changed, up bool) {
	for addr, p := range ps.peers {
		if p.status.State != StateEstablished {
			continue
		}
		if p.bfd != nil && (ps.bfd == nil || ps.bfd.state(addr) != bfd.Up) {
			continue
		}
		up = true
	}
	changed = up != ps.controlUp
	ps.controlUp = up
	return changed, up
}

// bfdEvent is a BFD session's change, applied on the controller's loop.
type bfdEvent struct {
	port     string
	peer     netip.Addr
	old, cur bfd.State
}

// bfdChanged queues a BFD session's change (runner goroutines must not
// wait for the controller, which stops runners under its lock).
func (c *Controller) bfdChanged(ev bfdEvent) {
	c.bfdMu.Lock()
	c.bfdEvents = append(c.bfdEvents, ev)
	c.bfdMu.Unlock()
	c.kick()
}

// applyBFD applies the queued BFD changes: a session that was Up going
// down resets its BGP session at once (its routes go with it), and the
// uplink's control plane follows.
func (c *Controller) applyBFD(ctx context.Context) {
	c.bfdMu.Lock()
	evs := c.bfdEvents
	c.bfdEvents = nil
	c.bfdMu.Unlock()
	for _, ev := range evs {
		c.mu.Lock()
		ps := c.ports[ev.port]
		if ps == nil || ps.speaker == nil {
			c.mu.Unlock()
			continue
		}
		if ev.old == bfd.Up && ev.cur != bfd.Up {
			c.met.bfdDown.Inc()
			c.cfg.Log.Warn("BFD down: resetting the BGP session", "port", ev.port, "peer", ev.peer, "state", ev.cur)
			if err := ps.speaker.ResetPeer(ctx, ev.peer); err != nil {
				c.cfg.Log.Warn("reset a BGP session after BFD", "port", ev.port, "peer", ev.peer, "err", err)
			}
		} else if ev.cur == bfd.Up {
			c.cfg.Log.Info("BFD up", "port", ev.port, "peer", ev.peer)
		}
		changed, up := ps.updateControl()
		c.mu.Unlock()
		if changed && c.cfg.ControlPlane != nil {
			c.cfg.ControlPlane(ev.port, up)
		}
	}
}

// reenable lets peers shut down for their prefix count back after their
// pause.
func (c *Controller) reenable(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, ps := range c.ports {
		for addr, p := range ps.peers {
			if !p.status.PrefixLimit || ps.speaker == nil || now.Before(p.limitUntil) {
				continue
			}
			if err := ps.speaker.EnablePeer(ctx, addr); err != nil {
				c.cfg.Log.Warn("enable a BGP peer after its prefix limit", "peer", addr, "err", err)
				continue
			}
			p.status.PrefixLimit = false
			ps.peers[addr] = p
			c.cfg.Log.Info("BGP peer let back after its prefix limit", "port", ps.conf.portID, "peer", addr)
		}
	}
}

// publishStatus writes the sessions' state where the API reads it, when
// it changed.
func (c *Controller) publishStatus(ctx context.Context) {
	type write struct {
		id string
		st nsdb.BGPPeerStatus
	}
	var writes []write
	c.mu.Lock()
	established := 0
	for _, ps := range c.ports {
		if ps.speaker != nil {
			if list, err := ps.speaker.Peers(ctx); err == nil {
				for _, s := range list {
					if p, ok := ps.peers[s.Address]; ok {
						p.status.Received, p.status.Accepted, p.status.Sent = s.Received, s.Accepted, s.Sent
						p.status.State, p.status.PrefixLimit = s.State, s.PrefixLimit
						if s.State == StateEstablished && !s.Since.IsZero() {
							p.status.Since = s.Since
						}
						ps.peers[s.Address] = p
					}
				}
			}
		}
		for _, m := range ps.conf.peers {
			st := nsdb.BGPPeerStatus{HostID: c.cfg.HostID, State: "error: " + ps.failed}
			if p, ok := ps.peers[m.Address]; ok && ps.failed == "" {
				st = nsdb.BGPPeerStatus{HostID: c.cfg.HostID, State: string(p.status.State), Received: p.status.Accepted,
					Sent: p.status.Sent}
				if p.status.State == StateEstablished {
					st.Since = p.status.Since.UTC().Truncate(time.Second)
					established++
				}
				if p.status.PrefixLimit {
					st.State = "idle: shut down for announcing more than max-prefixes"
				}
			}
			if c.statuses[m.ID] != st {
				writes = append(writes, write{m.ID, st})
			}
		}
	}
	c.met.established.Set(float64(established))
	c.mu.Unlock()
	for _, w := range writes {
		if err := c.cfg.DB.PutBGPPeerStatus(ctx, w.id, w.st, c.cfg.Lease()); err != nil {
			if ctx.Err() == nil {
				c.cfg.Log.Debug("publish a BGP session's state", "peer", w.id, "err", err)
			}
			continue
		}
		c.mu.Lock()
		c.statuses[w.id] = w.st
		c.mu.Unlock()
	}
}
