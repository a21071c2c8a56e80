package bgp

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// The speakers' packets never enter the simulation (MidoNet did the same
// for its bgpd): the slow path shows every miss to Punt first, which
// takes the sessions' packets between an uplink and its speaker
// interface and installs a flow for them, so that the rest of a session
// stays in the datapath. From the uplink: TCP to or from port 179 and
// BFD (UDP 3784, 3785, 4784) addressed to the port, and a copy of every
// ARP reply or neighbour advertisement to the port's address (the router
// learns from it too). From the speaker: everything, out of the uplink.

// BGP's and BFD's ports (RFC 4271, RFC 5881, RFC 5883).
const (
	portBGP        = 179
	portBFD        = 3784
	portBFDEcho    = 3785
	portBFDMultihp = 4784
)

// steerTable is the speakers by datapath port, read on the miss path.
type steerTable struct {
	byUplink  map[int32]*steer
	bySpeaker map[int32]*steer
	byPort    map[string]*steer
}

type steer struct {
	addr       netip.Addr
	mac        packet.MAC
	toSpeaker  []flow.Action
	toUplink   []flow.Action
	tags       []uint64
	uplink, sp int32
}

// rebuildSteer makes the table of the running speakers whose uplink is
// attached. c.mu is held.
func (c *Controller) rebuildSteer() {
	t := &steerTable{byUplink: map[int32]*steer{}, bySpeaker: map[int32]*steer{}, byPort: map[string]*steer{}}
	for id, ps := range c.ports {
		up, ok := c.bindings[id]
		if ps.speaker == nil || !ok {
			continue
		}
		s := &steer{addr: ps.conf.addr, mac: ps.conf.mac, uplink: up, sp: ps.dp, tags: []uint64{steerTag(id)},
			toSpeaker: []flow.Action{{Type: flow.ActOutput, Port: ps.dp}}, toUplink: []flow.Action{{Type: flow.ActOutput, Port: up}}}
		t.byUplink[up], t.bySpeaker[ps.dp], t.byPort[id] = s, s, s
	}
	old := c.steer.Swap(t)
	// The flows of a speaker that is gone or moved go too.
	var tags []uint64
	var changed []string
	for id, o := range old.byPort {
		if !o.same(t.byPort[id]) {
			tags = append(tags, steerTag(id))
			changed = append(changed, id)
		}
	}
	// So do the flows the simulation decided for the uplink's packets
	// while no speaker took its sessions (a session packet to the port's
	// own address is a router-local drop; all of them carry the port's
	// tag): a peer's BFD keeps its addresses and ports across our restart
	// and sends every second, so a drop flow caught in the gap between
	// the port's binding and its speaker would live on, and BFD would
	// never come up again, while BGP, on new connections, does.
	for id, n := range t.byPort {
		if !n.same(old.byPort[id]) {
			tags = append(tags, sim.ObjectTag(model.PortKind, id))
			changed = append(changed, id)
		}
	}
	if len(tags) > 0 {
		n := c.cfg.Datapath.Invalidate(tags...)
		c.cfg.Log.Info("BGP speakers' steering changed", "ports", changed, "flows_invalidated", n)
	}
}

// same reports whether two steering entries steer alike (nil is none).
func (s *steer) same(o *steer) bool {
	return s != nil && o != nil && s.uplink == o.uplink && s.sp == o.sp && s.addr == o.addr && s.mac == o.mac
}

// steerTag is carried by the flows of one uplink's sessions.
func steerTag(portID string) uint64 { return sim.ObjectTag(model.BGPPeerKind, portID) }

// Punt implements the slow path's hook: it reports whether it took the
// packet. It allocates nothing.
func (c *Controller) Punt(u *datapath.Upcall) bool {
	t := c.steer.Load()
	if len(t.byUplink) == 0 {
		return false
	}
	if s, ok := t.bySpeaker[u.InPort]; ok {
		c.forward(u, s, s.toUplink, !isNeighborDiscovery(u.Pkt))
		return true
	}
	s, ok := t.byUplink[u.InPort]
	if !ok {
		return false
	}
	p := u.Pkt
	switch {
	case p.L3 == packet.L3ARP:
		if p.ARPOp == packet.ARPReply && p.ARPTargetIP == s.addr {
			_ = c.cfg.Datapath.Execute(u.InPort, u.Frame, s.toSpeaker)
		}
		return false
	case p.DstIP != s.addr || p.EthDst != s.mac:
		return false
	case p.L4 == packet.L4TCP && (p.SrcPort == portBGP || p.DstPort == portBGP):
	case p.L4 == packet.L4UDP && (p.DstPort == portBFD || p.DstPort == portBFDEcho || p.DstPort == portBFDMultihp):
	case p.L4 == packet.L4ICMPv6 && p.ICMPType == packet.ICMPv6NeighborAdvert:
		_ = c.cfg.Datapath.Execute(u.InPort, u.Frame, s.toSpeaker)
		return false
	default:
		return false
	}
	c.forward(u, s, s.toSpeaker, true)
	return true
}

// forward sends a session's packet on, with a flow for the ones after it.
func (c *Controller) forward(u *datapath.Upcall, s *steer, acts []flow.Action, install bool) {
	if install && u.Pkt.L3 != packet.L3ARP {
		_ = c.cfg.Datapath.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, Tags: s.tags, Class: datapath.ClassNormal})
	}
	_ = c.cfg.Datapath.Execute(u.InPort, u.Frame, acts)
	c.met.punted.Inc()
}

func isNeighborDiscovery(p *packet.Parsed) bool {
	return p.L4 == packet.L4ICMPv6 && (p.ICMPType == packet.ICMPv6NeighborSolicit || p.ICMPType == packet.ICMPv6NeighborAdvert)
}
