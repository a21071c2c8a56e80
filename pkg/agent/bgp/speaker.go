package bgp

import (
	"context"
	"net/netip"
	"time"

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
		ConnectRetry: time.Second, MaxPrefixes: m.MaxPrefixes}
	if m.BFDEnabled() {
		pc.BFD = &BFDConfig{Interval: time.Duration(m.BFDInterval) * time.Millisecond, Multiplier: m.BFDMultiplier}
	}
	if c.cfg.Plumbing == nil || c.cfg.NoBind {
		pc.Interface = ""
	}
	return pc
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
			delete(ps.peers, addr)
			go ps.takeBack(st.id)
		}
	}
	for addr, m := range byAddr {
		pc := peerConfig(c, want, m)
		st, ok := ps.peers[addr]
		switch {
		case !ok:
			if err := ps.speaker.AddPeer(ctx, pc); err != nil {
				c.cfg.Log.Warn("add BGP peer", "port", want.portID, "peer", addr, "err", err)
				continue
			}
			ps.peers[addr] = peerState{id: m.ID, conf: pc, status: PeerStatus{Address: addr, ASN: m.ASN, State: StateIdle}}
		case !samePeer(st.conf, pc):
			if err := ps.speaker.UpdatePeer(ctx, pc); err != nil {
				c.cfg.Log.Warn("update BGP peer", "port", want.portID, "peer", addr, "err", err)
				continue
			}
			st.conf = pc
			ps.peers[addr] = st
		}
	}
}

func samePeer(a, b PeerConfig) bool {
	bfdA, bfdB := a.BFD, b.BFD
	a.BFD, b.BFD = nil, nil
	if a != b {
		return false
	}
	if bfdA == nil || bfdB == nil {
		return bfdA == bfdB
	}
	return *bfdA == *bfdB
}

func (ps *portSpeaker) takeBack(peerID string) {
	c := ps.c
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.cfg.DB.TakeBackBGPPeerStatus(ctx, peerID, c.cfg.Lease()); err != nil {
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
	up := false
	for _, p := range ps.peers {
		up = up || p.status.State == StateEstablished
	}
	changed := up != ps.controlUp
	ps.controlUp = up
	c.mu.Unlock()
	if changed && c.cfg.ControlPlane != nil {
		c.cfg.ControlPlane(e.port, up)
	}
	c.kick()
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
