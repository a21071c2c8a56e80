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

// lookup finds the route for the packet: the longest destination prefix
// that has a route whose source prefix matches, then the lowest weight
// among those; several routes of that weight are an ECMP group, of which
// one is chosen by rendezvous hashing on the flow's 5-tuple. It returns
// the chosen entry and the group [lo, hi) of entries of the chosen weight
// (those not matching the source are skipped by the caller's tagging too).
//
// Rendezvous (highest random weight) hashing rather than MidoNet's
// "hash mod N": when a route joins or leaves the group, only the flows
// that pick or picked it move, instead of nearly all of them, which
// matters when a BGP uplink flaps. The flow hash is computed only when
// there is a choice to make.
func (rt *routeTable) lookup(p *packet.Parsed) (chosen int32, grp span, ok bool) {
	src, dst := p.SrcIP, p.DstIP
	v4 := dst.Is4()
	lens := rt.lens4
	if !v4 {
		lens = rt.lens6
	}
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
		first := int32(none)
		for i := g.lo; i < g.hi; i++ {
			if rt.entries[i].srcMatches(src) {
				first = i
				break
			}
		}
		if first == none {
			continue
		}
		w := rt.entries[first].weight
		end := first + 1
		for end < g.hi && rt.entries[end].weight == w {
			end++
		}
		best := first
		if end-first > 1 {
			h := flowHash(p)
			bestScore := splitmix.Mix64(h ^ rt.entries[first].tag)
			for i := first + 1; i < end; i++ {
				e := &rt.entries[i]
				if !e.srcMatches(src) {
					continue
				}
				if s := splitmix.Mix64(h ^ e.tag); s > bestScore {
					best, bestScore = i, s
				}
			}
		}
		return best, span{first, end}, true
	}
	return none, span{}, false
}

func (e *routeEntry) srcMatches(src netip.Addr) bool {
	return !e.src.IsValid() || e.src.Contains(src)
}

// flowHash hashes the 5-tuple for ECMP. Deterministic across processes and
// restarts (no random seed), so every host and every re-simulation picks the
// same path for a flow.
func flowHash(p *packet.Parsed) uint64 {
	h := addrHash(p.SrcIP) ^ splitmix.Mix64(addrHash(p.DstIP)+1)
	var ports uint64
	if p.HasPorts() {
		ports = uint64(p.SrcPort)<<16 | uint64(p.DstPort)
	}
	return splitmix.Mix64(h ^ uint64(p.IPProto)<<32 ^ ports)
}
