package sim

import (
	"net/netip"

	"github.com/nagare/nagare/internal/splitmix"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// Tags name the objects a flow's decision read. They are derived from the
// objects' identities (kind and UUID), never from Topology indexes, so a
// tag computed from a rebuilt Topology, or by another process, is the same
// number: the agent's tag→flows index survives rebuilds.
//
// Kinds of tag:
//   - ObjectTag(kind, id): a device, port, route, chain, rule, port group,
//     IP address group, tunnel-zone member, DHCP host.
//   - MACEntryTag(bridge, vlan, mac): one entry of a bridge's MAC table,
//     read both when it was found and when it was missing (a flood), so
//     learning the MAC invalidates the flood.
//   - ARPEntryTag(router, ip): one entry of a router's ARP/ND cache.
//   - NoRouteTag(router): "this router had no route"; any route added to
//     the router invalidates it.
//   - PortLiveTag(port): whether an uplink (an exterior router port) is
//     live (Liveness), read by walks that chose a route through it or
//     skipped one through it while it was dead.
//   - FloodTag(bridge): the set of ports a bridge floods to; any port
//     added to, removed from or changed on the bridge invalidates it. A
//     flood carries this one tag rather than one per port, which keeps
//     large floods within MaxTags.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	saltMAC   = 0x6d61632d656e7472 // "mac-entr"
	saltARP   = 0x6172702d656e7472 // "arp-entr"
	saltNoRt  = 0x6e6f2d726f757465 // "no-route"
	saltFlood = 0x666c6f6f642d2d2d // "flood---"
	saltLive  = 0x6c6976652d2d2d2d // "live----"
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// ObjectTag is the tag of one object of the native model.
func ObjectTag(k *model.Kind, id string) uint64 {
	return objectTag(k.Name, id)
}

func objectTag(kind, id string) uint64 {
	h := hashString(fnvOffset, kind)
	h ^= 0xff // separator: "ab"+"c" and "a"+"bc" differ
	h *= fnvPrime
	return splitmix.Mix64(hashString(h, id))
}

func macBits(m packet.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

func macEntryTag(bridgeTag uint64, vlan uint16, mac packet.MAC) uint64 {
	return splitmix.Mix64(bridgeTag ^ splitmix.Mix64(saltMAC^uint64(vlan)<<48^macBits(mac)))
}

func addrHash(a netip.Addr) uint64 {
	if a.Is4() {
		v := a.As4()
		return splitmix.Mix64(uint64(v[0])<<24 | uint64(v[1])<<16 | uint64(v[2])<<8 | uint64(v[3]) | 4<<32)
	}
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	return splitmix.Mix64(hi ^ splitmix.Mix64(lo))
}

func arpEntryTag(routerTag uint64, ip netip.Addr) uint64 {
	return splitmix.Mix64(routerTag ^ saltARP ^ addrHash(ip))
}

// MACEntryTag is the tag of the entry for mac on vlan in a bridge's MAC
// table. The agent invalidates it when the entry is learned, moves or
// expires.
func MACEntryTag(bridgeID string, vlan uint16, mac packet.MAC) uint64 {
	return macEntryTag(ObjectTag(model.BridgeKind, bridgeID), vlan, mac)
}

// ARPEntryTag is the tag of the entry for ip in a router's ARP/ND cache.
func ARPEntryTag(routerID string, ip netip.Addr) uint64 {
	return arpEntryTag(ObjectTag(model.RouterKind, routerID), ip)
}

// NoRouteTag is read by every walk in which a router found no route.
func NoRouteTag(routerID string) uint64 {
	return splitmix.Mix64(ObjectTag(model.RouterKind, routerID) ^ saltNoRt)
}

// PortLiveTag is read by every walk whose route choice depended on the
// liveness of the uplink portID (see Liveness). The agent invalidates it
// when the uplink dies or comes back.
func PortLiveTag(portID string) uint64 {
	return splitmix.Mix64(ObjectTag(model.PortKind, portID) ^ saltLive)
}

// FloodTag is read by every walk in which a bridge flooded.
func FloodTag(bridgeID string) uint64 {
	return splitmix.Mix64(ObjectTag(model.BridgeKind, bridgeID) ^ saltFlood)
}

// ChangeTags returns the tags to invalidate when o is created, changed or
// deleted. For a change, call it with the old object on the old topology
// and with the new object on the new one, and invalidate both sets: a route
// whose destination moved affects the flows under both prefixes.
//
// Beyond the object's own tag:
//   - a route also invalidates, on its router, every route whose
//     destination contains the route's (flows that chose a less specific
//     or heavier route may now choose this one) and the router's NoRouteTag;
//   - a port also invalidates its device's FloodTag, the IP address
//     groups its member addresses are in and, if linked or bound, the tag
//     of its peer;
//   - a rule also invalidates its chain (a flow read the rules before the
//     one that decided, through the chain's tag);
//   - a port-group member, IP-address-group address or DHCP host also
//     invalidates its group or subnet's bridge, whose tags the rules and
//     ARP suppression read;
//   - a tunnel-zone member invalidates flows encapsulated to its host
//     through its own tag;
//   - a pool member (its health status included) also invalidates its
//     pool, a VIP its load balancer, a health monitor the pools it
//     checks (lb.go);
//   - a dnat rule, VIP, load balancer or router also invalidates the
//     floods of the bridges where the router answers ARP for its NAT
//     addresses (nataddr.go).
func (t *Topology) ChangeTags(o model.Object) []uint64 {
	k := model.KindOf(o)
	if k == nil {
		return nil
	}
	id := o.GetMeta().ID
	tags := []uint64{ObjectTag(k, id)}
	switch x := o.(type) {
	case *model.Route:
		tags = t.coveringTags(tags, x.RouterID, x.Dst)
	case *model.Port:
		// A router port decides which next hops on its subnet resolve and
		// which addresses the router answers itself: flows routed towards
		// its subnet are re-simulated.
		if x.RouterID != "" && x.Network.IsValid() {
			tags = t.coveringTags(tags, x.RouterID, x.Network)
		}
		if x.BridgeID != "" {
			tags = append(tags, FloodTag(x.BridgeID))
		}
		// Its member addresses are in its IP address groups (as an
		// address object's are).
		if len(x.MemberAddrs) > 0 {
			for _, g := range x.IPAddrGroupIDs {
				tags = append(tags, ObjectTag(model.IPAddrGroupKind, g))
			}
		}
		// A subport decides where its parent's tagged frames go.
		if x.ParentID != "" {
			tags = append(tags, ObjectTag(model.PortKind, x.ParentID))
		}
		if x.PeerID != "" {
			tags = append(tags, ObjectTag(model.PortKind, x.PeerID))
			// A router port's address is what ARP suppression on the
			// peer bridge answers; a flood of an ARP request for the new
			// address must be simulated again to be suppressed.
			if pi, ok := t.portByID.Get(x.PeerID); ok && t.ports.At(pi).kind == devBridge {
				tags = append(tags, t.bridges[t.ports.At(pi).dev].floodTag)
			}
		}
	case *model.Mirror:
		// A new mirror changes the flows of the port it mirrors.
		tags = append(tags, ObjectTag(model.PortKind, x.PortID))
	case *model.Rule:
		tags = append(tags, ObjectTag(model.ChainKind, x.ChainID))
	case *model.PortGroupMember:
		tags = append(tags, ObjectTag(model.PortGroupKind, x.PortGroupID))
	case *model.IPAddrGroupAddr:
		tags = append(tags, ObjectTag(model.IPAddrGroupKind, x.IPAddrGroupID))
	case *model.DHCPSubnet:
		tags = append(tags, FloodTag(x.BridgeID))
	case *model.DHCPHost:
		// Walks that used the entry read the host's own tag; floods of
		// ARP requests for its address read the bridge's flood tag.
		if b, ok := t.dhcpSubnetBridge[x.DHCPSubnetID]; ok {
			tags = append(tags, FloodTag(b))
		}
	}
	tags = append(tags, t.natFloodTags[id]...)
	return t.lbTags(tags, o)
}

// coveringTags appends the tags of the router's routes whose destination
// contains dst, and its NoRouteTag: the flows that may choose a route to
// dst once it exists.
func (t *Topology) coveringTags(tags []uint64, routerID string, dst netip.Prefix) []uint64 {
	tags = append(tags, NoRouteTag(routerID))
	ri, ok := t.routerByID[routerID]
	if !ok || !dst.IsValid() {
		return tags
	}
	for i := range t.routers[ri].routes.entries {
		e := &t.routers[ri].routes.entries[i]
		if e.dst.Bits() <= dst.Bits() && e.dst.Addr().Is4() == dst.Addr().Is4() && e.dst.Contains(dst.Addr()) {
			tags = append(tags, e.tag)
		}
	}
	return tags
}
