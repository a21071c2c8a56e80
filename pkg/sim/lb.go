package sim

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/nagare/nagare/internal/splitmix"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// L4 load balancing, MidoNet's way: a router with a load balancer (state
// up) balances the TCP or UDP packets whose destination is one of its
// VIPs' address:port, in its pre-routing, before the inbound filter.
//
//   - A connection's first packet picks a member and records a DNAT
//     binding in the router's zone (flowstate.NewDNAT, the same binding a
//     dnat rule makes); later packets, on any host, find the binding and
//     go to the same member. A connection is never moved: the binding is
//     reused for as long as it lives, even when its member has since gone
//     down, been disabled (state down: drained, no new connections) or
//     been removed. A connection to a dead backend fails by itself (the
//     backend resets it or it times out); cutting live ones because a
//     monitor flapped would be worse, and haproxy (Octavia) also lets
//     established connections finish on a removed server.
//   - Members are picked by weighted rendezvous hashing: each usable
//     member scores weight / -ln(u), u a uniform hash of the connection
//     and the member, and the best score wins. New connections spread by
//     weight, and a member going down or up moves only its own share.
//     round_robin pools are weighted the same way (the simulation sees
//     one packet, it has no turn to keep).
//   - Source-IP persistence hashes (VIP, client address) instead of the
//     5-tuple: stateless, so every host agrees, and a client keeps its
//     member for as long as that member is usable.
//   - A member is usable when its state is up, its weight is not 0 and,
//     if its pool has a health monitor whose state is up, its health
//     status is not down ("", up and no_monitor count as up).
//   - No usable member (or the pool down): the packet is dropped
//     (DropNoLBMember) and the client told at once, a TCP reset for TCP
//     and ICMP port unreachable for UDP, as OVN does with its load
//     balancers' reject option, rather than leaving it to time out.
//
// Replies from a member are translated back (source to VIP:port) when
// they leave the router, before its outbound filter (MidoNet's
// post-routing processOutbound), by the binding's reverse key. Only
// packets whose source is one of the balancer's members (address, port,
// protocol) pay for that lookup.
//
// ICMP errors about balanced connections are not translated.

// loadBalancer is a compiled model.LoadBalancer.
type loadBalancer struct {
	id   string
	tag  uint64
	up   bool
	vips []lbVIP
	// backends holds every member endpoint of the VIPs' pools: replies
	// from one of them are looked up for reverse translation. bloom has a
	// bit per member address, so other packets skip the map.
	backends map[lbEndpoint]struct{}
	bloom    uint64
}

type lbVIP struct {
	id     string
	tag    uint64
	addr   netip.Addr
	port   uint16
	proto  uint8
	pool   int32 // index in Topology.pools
	sticky bool  // source-IP persistence
}

type lbPool struct {
	id      string
	tag     uint64
	up      bool
	proto   uint8
	members []lbMember
}

type lbMember struct {
	id     string
	tag    uint64
	hash   uint64
	addr   netip.Addr
	port   uint16
	weight float64
	usable bool
	why    string // why it is not usable, for traces
}

// lbEndpoint's named pad makes it padding-free (hashed as one block).
type lbEndpoint struct {
	ip    [16]byte
	port  uint16
	proto uint8
	pad   uint8
}

func protoNumber(p string) uint8 {
	if p == "udp" {
		return packet.IPProtoUDP
	}
	return packet.IPProtoTCP
}

// buildLBs compiles the load balancers, pools, members and VIPs of a
// snapshot and attaches the balancers to their routers.
func (t *Topology) buildLBs(objs []model.Object) error {
	var (
		lbByID   = map[string]int32{}
		poolByID = map[string]int32{}
		monitors = map[string]*model.HealthMonitor{}
		pools    []*model.Pool
		members  []*model.PoolMember
		vips     []*model.VIP
	)
	for _, o := range objs {
		switch x := o.(type) {
		case *model.LoadBalancer:
			lbByID[x.ID] = int32(len(t.lbs))
			t.lbs = append(t.lbs, loadBalancer{id: x.ID, tag: ObjectTag(model.LoadBalancerKind, x.ID),
				up: x.State != model.StateDown, backends: map[lbEndpoint]struct{}{}})
		case *model.HealthMonitor:
			monitors[x.ID] = x
		case *model.Pool:
			pools = append(pools, x)
		case *model.PoolMember:
			members = append(members, x)
		case *model.VIP:
			vips = append(vips, x)
		}
	}
	monitored := make([]bool, len(pools))
	for i, p := range pools {
		if _, ok := lbByID[p.LoadBalancerID]; !ok {
			return fmt.Errorf("pool %s: load balancer %s does not exist", p.ID, p.LoadBalancerID)
		}
		poolByID[p.ID] = int32(i)
		t.pools = append(t.pools, lbPool{id: p.ID, tag: ObjectTag(model.PoolKind, p.ID), up: p.State != model.StateDown,
			proto: protoNumber(p.Protocol)})
		if p.HealthMonitorID != "" {
			t.hmPools[p.HealthMonitorID] = append(t.hmPools[p.HealthMonitorID], t.pools[i].tag)
			if hm, ok := monitors[p.HealthMonitorID]; ok && hm.State != model.StateDown {
				monitored[i] = true
			}
		}
	}
	for _, m := range members {
		pi, ok := poolByID[m.PoolID]
		if !ok {
			return fmt.Errorf("pool member %s: pool %s does not exist", m.ID, m.PoolID)
		}
		lm := lbMember{id: m.ID, tag: ObjectTag(model.PoolMemberKind, m.ID), addr: m.Address.Unmap(), port: m.ProtocolPort,
			weight: float64(m.Weight), usable: true}
		lm.hash = splitmix.Mix64(lm.tag ^ 0x6c622d6d656d6272) // "lb-membr"
		switch {
		case m.State == model.StateDown:
			lm.usable, lm.why = false, "state down"
		case m.Weight == 0:
			lm.usable, lm.why = false, "weight 0"
		case monitored[pi] && m.Status == model.MemberDown:
			lm.usable, lm.why = false, "health down"
		}
		t.pools[pi].members = append(t.pools[pi].members, lm)
	}
	for i := range t.pools {
		// Snapshot order must not decide anything: ties and traces.
		p := &t.pools[i]
		for a := 1; a < len(p.members); a++ {
			for b := a; b > 0 && p.members[b].id < p.members[b-1].id; b-- {
				p.members[b], p.members[b-1] = p.members[b-1], p.members[b]
			}
		}
	}
	for _, v := range vips {
		li, ok := lbByID[v.LoadBalancerID]
		if !ok {
			return fmt.Errorf("vip %s: load balancer %s does not exist", v.ID, v.LoadBalancerID)
		}
		pi, ok := poolByID[v.PoolID]
		if !ok {
			return fmt.Errorf("vip %s: pool %s does not exist", v.ID, v.PoolID)
		}
		p := &t.pools[pi]
		lb := &t.lbs[li]
		lb.vips = append(lb.vips, lbVIP{id: v.ID, tag: ObjectTag(model.VIPKind, v.ID), addr: v.Address.Unmap(),
			port: v.ProtocolPort, proto: p.proto, pool: pi, sticky: v.SessionPersistence == "source_ip"})
		for _, m := range p.members {
			lb.backends[lbEndpoint{ip: m.addr.As16(), port: m.port, proto: p.proto}] = struct{}{}
			lb.bloom |= ipBloomBit(m.addr)
		}
	}
	for _, o := range objs {
		if r, ok := o.(*model.Router); ok && r.LoadBalancerID != "" {
			li, ok := lbByID[r.LoadBalancerID]
			if !ok {
				return fmt.Errorf("router %s: load balancer %s does not exist", r.ID, r.LoadBalancerID)
			}
			t.routers[t.routerByID[r.ID]].lb = li
		}
	}
	return nil
}

func (r *router) label() string {
	if r.name != "" {
		return r.name
	}
	return r.id
}

// lbTags is ChangeTags for the load-balancing kinds: the decisions a
// change may alter beyond the object's own flows.
func (t *Topology) lbTags(tags []uint64, o model.Object) []uint64 {
	switch x := o.(type) {
	case *model.PoolMember:
		// The set of usable members decided every pick of the pool, and
		// its drops when there was none.
		tags = append(tags, ObjectTag(model.PoolKind, x.PoolID))
	case *model.VIP:
		// Flows through the router read the balancer's tag while no VIP
		// matched them.
		tags = append(tags, ObjectTag(model.LoadBalancerKind, x.LoadBalancerID))
	case *model.HealthMonitor:
		tags = append(tags, t.hmPools[x.ID]...)
	}
	return tags
}

// lbInbound balances the packet if it is for one of the router's VIPs. It
// returns false when the walk ended (a drop).
func (w *walk) lbInbound(r *router) bool {
	lb := &w.t.lbs[r.lb]
	w.res.addTag(lb.tag)
	p := w.pkt
	if !lb.up || !p.HasPorts() {
		return true
	}
	var v *lbVIP
	for i := range lb.vips {
		x := &lb.vips[i]
		if x.addr == p.DstIP && x.port == p.DstPort && x.proto == p.IPProto {
			v = x
			break
		}
	}
	if v == nil {
		return true
	}
	w.res.addTag(v.tag)
	pool := &w.t.pools[v.pool]
	w.res.addTag(pool.tag)
	name := r.label()
	fs := w.s.cfg.FlowState
	switch {
	case fs == nil:
		w.traceLB(name, v, "no flow state configured: not balanced")
		return true
	case w.flooding > 0 || w.isGen:
		w.traceLB(name, v, "in a flood or a generated packet: not balanced")
		return true
	}
	k := &w.st.key
	*k, _ = flowstate.KeyOf(p) // TCP and UDP always have a key
	k.Zone, k.Type = r.tag, flowstate.KeyFwdDNAT
	flags := w.origPkt().TCPFlags
	m := fs.Lookup(k, flags, w.now)
	w.readKey(k)
	if m.Found {
		to, port := m.Translated()
		w.setDst(to, port)
		if w.tr != nil {
			w.traceLB(name, v, fmt.Sprintf("existing connection: member %s (binding kept)", describeMember(pool, to, port)))
		}
		return true
	}
	var h uint64
	if v.sticky {
		h = splitmix.Mix64(v.tag ^ addrHash(p.SrcIP))
	} else {
		h = splitmix.Mix64(v.tag ^ k.Tag())
	}
	best, usable := pickMember(pool, h, p.L3 == packet.L3IPv6)
	if best == nil {
		if w.tr != nil {
			w.traceLB(name, v, "no usable member: "+describeUnusable(pool))
		}
		w.lbRefuse()
		w.drop(DropNoLBMember, name, "no usable member in pool "+pool.id)
		return false
	}
	w.res.addTag(best.tag)
	if !w.res.st.tx.Add(flowstate.NewDNAT(*k, best.addr, best.port, flags)) {
		w.drop(DropFlowStateFull, name, "too many state entries in one walk: not balanced")
		return false
	}
	w.setDst(best.addr, best.port)
	if w.tr != nil {
		how := "5-tuple hash"
		if v.sticky {
			how = "source-ip persistence, hash of " + p.SrcIP.String()
		}
		w.traceLB(name, v, fmt.Sprintf("new connection: member %s %s (weight %g, %d usable, %s)",
			best.id, netip.AddrPortFrom(best.addr, best.port), best.weight, usable, how))
	}
	return true
}

// pickMember is weighted rendezvous hashing over the pool's usable
// members of the packet's family; it also returns how many there were.
func pickMember(pool *lbPool, h uint64, v6 bool) (*lbMember, int) {
	if !pool.up {
		return nil, 0
	}
	var best *lbMember
	bestScore, n := -1.0, 0
	for i := range pool.members {
		m := &pool.members[i]
		if !m.usable || m.addr.Is6() != v6 {
			continue
		}
		n++
		// u uniform in (0,1): 53 random bits, offset by half a step.
		u := (float64(splitmix.Mix64(h^m.hash)>>11) + 0.5) / (1 << 53)
		if s := m.weight / -math.Log(u); s > bestScore {
			best, bestScore = m, s
		}
	}
	return best, n
}

// lbOutbound translates a reply from a member back to the VIP it was
// balanced from, if the router has a binding for it.
func (w *walk) lbOutbound(r *router) {
	lb := &w.t.lbs[r.lb]
	p := w.pkt
	if lb.bloom&ipBloomBit(p.SrcIP) == 0 || !p.HasPorts() || w.flooding > 0 || w.isGen {
		return
	}
	if _, ok := lb.backends[lbEndpoint{ip: p.SrcIP.As16(), port: p.SrcPort, proto: p.IPProto}]; !ok {
		return
	}
	fs := w.s.cfg.FlowState
	if fs == nil {
		return
	}
	k := &w.st.key
	*k, _ = flowstate.KeyOf(p)
	k.Zone, k.Type = r.tag, flowstate.KeyRevDNAT
	m := fs.Lookup(k, w.origPkt().TCPFlags, w.now)
	w.readKey(k)
	if !m.Found {
		if w.tr != nil {
			w.tr.add(StepLB, r.label(), fmt.Sprintf("from member %s: no binding, not translated", netip.AddrPortFrom(p.SrcIP, p.SrcPort)))
		}
		return
	}
	old := headerOf(p)
	w.setSrc(m.Original())
	if w.tr != nil {
		w.tr.add(StepLB, r.label(), fmt.Sprintf("reply from a member: %s -> %s", fmtEnds(old), fmtEnds(headerOf(w.pkt))))
	}
}

// lbRefuse tells the client there is no member: a TCP reset or ICMP port
// unreachable, from the VIP.
func (w *walk) lbRefuse() { w.refuse(packet.ICMPv4PortUnreachable, packet.ICMPv6PortUnreachable) }

func (w *walk) traceLB(object string, v *lbVIP, msg string) {
	if w.tr != nil {
		w.tr.add(StepLB, object, fmt.Sprintf("vip %s %s: %s", v.id, netip.AddrPortFrom(v.addr, v.port), msg))
	}
}

func describeMember(pool *lbPool, a netip.Addr, port uint16) string {
	for i := range pool.members {
		if m := &pool.members[i]; m.addr == a && m.port == port {
			s := m.id + " " + netip.AddrPortFrom(a, port).String()
			if !m.usable {
				s += ", now " + m.why
			}
			return s
		}
	}
	return netip.AddrPortFrom(a, port).String() + ", no longer in the pool"
}

func describeUnusable(pool *lbPool) string {
	if !pool.up {
		return "pool " + pool.id + " is down"
	}
	if len(pool.members) == 0 {
		return "pool " + pool.id + " has no members"
	}
	s := ""
	for i := range pool.members {
		m := &pool.members[i]
		if i > 0 {
			s += ", "
		}
		why := m.why
		if why == "" {
			why = "other address family"
		}
		s += m.id + " " + why
	}
	return s
}
