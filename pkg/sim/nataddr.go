package sim

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/model"
)

// NAT addresses: a router port answers ARP requests and IPv6 neighbor
// solicitations, with its own MAC, not only for its address but for the
// addresses on its network that the router translates, since nothing else
// on the link owns them: the destinations of its pre-routing dnat rules
// with a single-host destination (floating IPs, port forwardings) and
// its load balancer's VIPs. OVN answers for its NAT external addresses
// the same way; without it the upstream router cannot resolve a floating
// IP and the rule is never reached.
//
// The peer bridge learns them as static entries too, like the router
// port's own address: its ARP suppression answers them without a flood,
// and other routers on the bridge resolve them without asking. A NAT
// address never displaces a router port's own address; it wins over a
// DHCP host entry claiming the same address (the router is where packets
// to it are translated).

// natAddr is an address a router port answers for; tag is the rule or
// VIP that put it there, read by the walks that answered.
type natAddr struct {
	addr netip.Addr
	tag  uint64
}

// buildNATAddrs gives router ports their NAT addresses and the peer
// bridges their static entries, and records which flood tags each rule,
// VIP, balancer and router decided (natFloodTags), for ChangeTags.
func (t *Topology) buildNATAddrs() {
	for ri := range t.routers {
		r := &t.routers[ri]
		type src struct {
			addr netip.Addr
			tag  uint64
			id   string // the rule or VIP
			in   []int32
		}
		var found []src
		if r.inChain != none {
			seen := map[int32]bool{}
			var visit func(ci int32, depth int)
			visit = func(ci int32, depth int) {
				if seen[ci] || depth > maxJumpDepth {
					return
				}
				seen[ci] = true
				for i := range t.chains[ci].rules {
					cr := &t.chains[ci].rules[i]
					switch {
					case cr.action == raJump && cr.jump != none:
						visit(cr.jump, depth+1)
					case cr.typ == model.RuleDNAT && cr.dst.IsValid() && !cr.invDst && cr.dst.IsSingleIP():
						var in []int32
						if !cr.invIn {
							in = cr.inPorts
						}
						found = append(found, src{addr: cr.dst.Addr().Unmap(), tag: cr.tag, id: cr.id, in: in})
					}
				}
			}
			visit(r.inChain, 0)
		}
		if r.lb != none && t.lbs[r.lb].up {
			lb := &t.lbs[r.lb]
			for _, v := range lb.vips {
				found = append(found, src{addr: v.addr, tag: v.tag, id: v.id})
				// The balancer's state decides too.
				found = append(found, src{addr: v.addr, tag: lb.tag, id: lb.id})
			}
		}
		for _, f := range found {
			for _, pi := range r.ports {
				p := t.ports.Mut(pi, t.gen)
				if !p.network.IsValid() || !p.network.Contains(f.addr) || p.addr == f.addr || p.linkLocal == f.addr {
					continue
				}
				if len(f.in) > 0 && !containsPort(f.in, pi) {
					continue
				}
				if !p.hasNATAddr(f.addr) {
					p.natAddrs = append(p.natAddrs, natAddr{addr: f.addr, tag: f.tag})
				}
				if p.peer == none || t.ports.At(p.peer).kind != devBridge {
					continue
				}
				bp := t.ports.At(p.peer)
				b := t.bridges[bp.dev]
				t.natFloodTags[f.id] = append(t.natFloodTags[f.id], b.floodTag)
				t.natFloodTags[r.id] = append(t.natFloodTags[r.id], b.floodTag)
				k := ipKey{dev: bp.dev, vlan: bp.vlan, ip: f.addr.As16()}
				if e, ok := t.staticIP.Get(k); ok && e.port != none {
					continue // a router port's own address, or an earlier NAT address
				}
				t.staticIP.Put(k, staticEntry{mac: p.mac, tag: f.tag, port: p.peer}, t.gen)
				b.ipBloom |= ipBloomBit(f.addr)
			}
		}
	}
}

func (p *port) hasNATAddr(a netip.Addr) bool {
	_, ok := p.natAddrTag(a)
	return ok
}

// natAddrTag returns the tag of the rule or VIP that makes port p answer
// for a, and whether one does.
func (p *port) natAddrTag(a netip.Addr) (uint64, bool) {
	for _, n := range p.natAddrs {
		if n.addr == a {
			return n.tag, true
		}
	}
	return 0, false
}
