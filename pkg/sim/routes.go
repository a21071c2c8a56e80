package sim

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/internal/splitmix"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

type routeType uint8

const (
	routeNormal routeType = iota
	routeBlackhole
	routeReject
)

type routeEntry struct {
	id     string // the route's id
	tag    uint64
	typ    routeType
	src    netip.Prefix // invalid = any source
	dst    netip.Prefix
	gw     netip.Addr // invalid = on-link: the next hop is the destination
	port   int32
	weight uint32
	// gated routes leave by an exterior router port (an uplink): they
	// are used only while Config.Liveness says the port is live.
	gated   bool
	portID  string
	liveTag uint64 // PortLiveTag(portID)
}

// routeTable does longest-prefix match with one hash lookup per distinct
// prefix length present, longest first. A router's table typically has
// three or four distinct lengths (/32 host routes, the port subnets, a
// default), so a lookup is that many probes of a map with a fixed-size,
// pointer-free key: no allocation and no string hashing. Entries sharing a
// destination are contiguous and sorted by weight, so the lowest weight
// (and its ECMP group) is found by a short forward scan.
type routeTable struct {
	entries []routeEntry
	lens4   []uint8
	lens6   []uint8
	// groups4 is keyed by masked address<<8 | prefix length, so IPv4
	// lookups take the runtime's fast path for 64-bit keys.
	groups4 map[uint64]span
	groups6 map[routeKey]span
}

// routeKey is an IPv6 (or, in build-time sorting, any) masked prefix. Its
// fields fill it without padding, so the map hashes it as one block.
type routeKey struct {
	hi, lo uint64
	bits   uint64 // prefix length, | 1<<8 for IPv6
}

func (k routeKey) v6() bool { return k.bits&(1<<8) != 0 }

type span struct{ lo, hi int32 }

func v4Key(a netip.Addr, bits uint8) uint64 {
	v := a.As4()
	x := uint64(v[0])<<24 | uint64(v[1])<<16 | uint64(v[2])<<8 | uint64(v[3])
	if bits < 32 {
		x &^= 1<<(32-bits) - 1
	}
	return x<<8 | uint64(bits)
}

func routeKeyOf(a netip.Addr, bits uint8) routeKey {
	if a.Is4() {
		return routeKey{lo: v4Key(a, bits), bits: uint64(bits)}
	}
	b := a.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	switch {
	case bits == 0:
		hi, lo = 0, 0
	case bits < 64:
		hi &^= 1<<(64-bits) - 1
		lo = 0
	case bits < 128:
		lo &^= 1<<(128-bits) - 1
	}
	return routeKey{hi: hi, lo: lo, bits: uint64(bits) | 1<<8}
}

// buildRouteTable compiles a router's routes. Routes are explicit, as in
// MidoNet's native model: a port's subnet is reachable only through a route
// that names it (the CLI's `router router0 add route dst 10.0.0.0/24 port
// router0:port0`; the Neutron translation writes one per interface), so an
// operator who deletes that route really cuts the subnet off. A router
// still answers ARP, ND and pings for its own addresses without routes.
func (t *Topology) buildRouteTable(ri int32, rs []*model.Route) (routeTable, error) {
	var es []routeEntry
	for _, r := range rs {
		e := routeEntry{id: r.ID, tag: ObjectTag(model.RouteKind, r.ID), dst: r.Dst.Masked(), gw: r.Gateway,
			weight: r.Weight, port: none}
		if !r.Dst.IsValid() {
			return routeTable{}, fmt.Errorf("route %s: no destination", r.ID)
		}
		if r.Src.IsValid() && r.Src.Bits() > 0 {
			if r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
				return routeTable{}, fmt.Errorf("route %s: source %s and destination %s are of different families", r.ID, r.Src, r.Dst)
			}
			e.src = r.Src.Masked()
		}
		switch r.Type {
		case model.RouteBlackhole:
			e.typ = routeBlackhole
		case model.RouteReject:
			e.typ = routeReject
		default:
			e.typ = routeNormal
			pi, ok := t.portByID.Get(r.PortID)
			if !ok {
				return routeTable{}, fmt.Errorf("route %s: egress port %q does not exist", r.ID, r.PortID)
			}
			if t.ports.At(pi).kind != devRouter || t.ports.At(pi).dev != ri {
				return routeTable{}, fmt.Errorf("route %s: port %s is not a port of router %s", r.ID, r.PortID, r.RouterID)
			}
			e.port = pi
			if t.ports.At(pi).exterior() {
				e.gated, e.portID, e.liveTag = true, r.PortID, PortLiveTag(r.PortID)
			}
		}
		es = append(es, e)
	}
	// Group by destination, then weight; ties broken by id so the order,
	// and therefore the trace, does not depend on snapshot order.
	slices.SortFunc(es, func(a, b routeEntry) int {
		ka, kb := routeKeyOf(a.dst.Addr(), uint8(a.dst.Bits())), routeKeyOf(b.dst.Addr(), uint8(b.dst.Bits()))
		switch {
		case ka.v6() != kb.v6():
			if ka.v6() {
				return 1
			}
			return -1
		case ka.bits != kb.bits:
			return int(kb.bits&0xff) - int(ka.bits&0xff)
		case ka.hi != kb.hi:
			if ka.hi < kb.hi {
				return -1
			}
			return 1
		case ka.lo != kb.lo:
			if ka.lo < kb.lo {
				return -1
			}
			return 1
		case a.weight != b.weight:
			if a.weight < b.weight {
				return -1
			}
			return 1
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	tbl := routeTable{entries: es, groups4: map[uint64]span{}, groups6: map[routeKey]span{}}
	for i := 0; i < len(es); {
		k := routeKeyOf(es[i].dst.Addr(), uint8(es[i].dst.Bits()))
		j := i + 1
		for j < len(es) && routeKeyOf(es[j].dst.Addr(), uint8(es[j].dst.Bits())) == k {
			j++
		}
		if k.v6() {
			tbl.groups6[k] = span{int32(i), int32(j)}
			tbl.lens6 = appendLen(tbl.lens6, uint8(k.bits))
		} else {
			tbl.groups4[k.lo] = span{int32(i), int32(j)}
			tbl.lens4 = appendLen(tbl.lens4, uint8(k.bits))
		}
		i = j
	}
	return tbl, nil
}

// appendLen adds a prefix length to a list kept longest first (entries are
// visited longest first, so it only ever appends or repeats the last).
func appendLen(l []uint8, b uint8) []uint8 {
	if len(l) > 0 && l[len(l)-1] == b {
		return l
	}
	return append(l, b)
}

// Liveness says which uplinks can carry traffic now. An uplink is an
// exterior router port: a port bound to an interface of a gateway host,
// whose routes (learned from its BGP peers, or static) are usable only
// while the gateway is reachable, its link is up and its peers or next
// hops answer. The agent implements it from its probes of the gateways
// over the tunnels, the gateways' own reports and the NSDB's leases.
// Liveness is an input, like the MAC and ARP tables: the simulation
// stays clock-free, and a walk that skipped or chose an uplink carries
// its PortLiveTag, which the agent invalidates when the port's liveness
// changes.
type Liveness interface {
	// PortLive reports whether the exterior router port portID can carry
	// traffic. It is on the per-packet path and must not allocate.
	PortLive(portID string) bool
}

// lookupResult is a route lookup's outcome: the chosen entry, how many
// usable routes it was chosen among (its ECMP group), and how many routes
// through dead uplinks were skipped on the way.
type lookupResult struct {
	chosen int32
	group  int
	dead   int
}

// lookup finds the route for the packet: the longest destination prefix
// that has a usable route whose source prefix matches, then the lowest
// weight among those; several routes of that weight are an ECMP group, of
// which one is chosen by rendezvous hashing on the flow's 5-tuple.
//
// A route through a dead uplink (lv says its port is not live) is not
// usable: it is skipped as if it did not exist, so its weight group, or
// its prefix, falls to the next. The walk reads exactly the liveness its
// choice depends on (tags, when res is not nil): the chosen uplink's, and
// that of every skipped uplink that would have been chosen had it been
// live (a dead member of a group ranked before the choice, or scoring
// above it in the chosen group). A dead uplink's flows therefore move
// when it dies, and only the flows that would pick it move back when it
// returns.
//
// Rendezvous (highest random weight) hashing rather than MidoNet's
// "hash mod N": when a route joins or leaves the group, only the flows
// that pick or picked it move, instead of nearly all of them, which
// matters when a BGP uplink flaps. The flow hash is computed only when
// there is a choice to make.
func (rt *routeTable) lookup(p *packet.Parsed, lv Liveness, res *Result) (lookupResult, bool) {
	src, dst := p.SrcIP, p.DstIP
	v4 := dst.Is4()
	lens := rt.lens4
	if !v4 {
		lens = rt.lens6
	}
	out := lookupResult{chosen: none}
	var h uint64
	hashed := false
	for _, bits := range lens {
		var g span
		var found bool
		if v4 {
			g, found = rt.groups4[v4Key(dst, bits)]
		} else {
			g, found = rt.groups6[routeKeyOf(dst, bits)]
		}
		if !found {
			continue
		}
		for i := g.lo; i < g.hi; {
			end := i + 1
			for end < g.hi && rt.entries[end].weight == rt.entries[i].weight {
				end++
			}
			if end-i > 1 && !hashed {
				h, hashed = flowHash(p), true
			}
			score := func(e *routeEntry) uint64 {
				if end-i > 1 {
					return splitmix.Mix64(h ^ e.tag)
				}
				return 0
			}
			best, bestScore, group := int32(none), uint64(0), 0
			for j := i; j < end; j++ {
				e := &rt.entries[j]
				if !e.srcMatches(src) || !e.usable(lv) {
					continue
				}
				group++
				if s := score(e); best == none || s > bestScore {
					best, bestScore = j, s
				}
			}
			// The dead routes that would have been chosen instead.
			for j := i; j < end; j++ {
				e := &rt.entries[j]
				if e.srcMatches(src) && !e.usable(lv) {
					out.dead++
					if best == none || score(e) > bestScore {
						res.addTagIf(e.liveTag)
					}
				}
			}
			if best != none {
				if e := &rt.entries[best]; e.gated {
					res.addTagIf(e.liveTag)
				}
				out.chosen, out.group = best, group
				return out, true
			}
			i = end
		}
	}
	return out, false
}

// usable reports whether a route may be chosen: not through an uplink
// that lv says is dead.
func (e *routeEntry) usable(lv Liveness) bool {
	return !e.gated || lv == nil || lv.PortLive(e.portID)
}

func (e *routeEntry) srcMatches(src netip.Addr) bool {
	return !e.src.IsValid() || e.src.Contains(src)
}

// flowHash hashes the 5-tuple for ECMP. Deterministic across processes and
// restarts (no random seed), so every host and every re-simulation picks the
// same path for a flow. An ICMP echo's identifier stands in for the ports,
// as in Linux's multipath hash: it is part of the flow key, and without it
// every ping between two addresses takes one path.
func flowHash(p *packet.Parsed) uint64 {
	h := addrHash(p.SrcIP) ^ splitmix.Mix64(addrHash(p.DstIP)+1)
	var ports uint64
	switch {
	case p.HasPorts():
		ports = uint64(p.SrcPort)<<16 | uint64(p.DstPort)
	case p.HasEchoID():
		ports = uint64(p.ICMPEchoID)
	}
	return splitmix.Mix64(h ^ uint64(p.IPProto)<<32 ^ ports)
}
