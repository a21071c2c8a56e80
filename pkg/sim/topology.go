package sim

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/internal/persist"
	"github.com/nagare/nagare/internal/splitmix"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// Topology is an immutable, indexed snapshot of the native model, built
// for the per-packet path: every object gets a dense int32 index and
// references between objects are indexes, so a walk follows slices, and
// the few maps it consults have fixed-size keys (no string hashing).
// Strings (ids, names) are kept for the actions and the trace only.
//
// A Topology is safe for concurrent use by any number of Simulators. It is
// never modified: see the package documentation for how the agent
// replaces it.
type Topology struct {
	// gen is this topology's generation: the parts of its persistent
	// containers it made itself (persist.go). Apply gives every new
	// topology a new one.
	gen uint64

	ports    vec[port]
	free     []int32   // indexes of deleted ports, for Apply to reuse
	bridges  []*bridge // pointers: Apply copies the slice and the bridges it changes
	routers  []router
	chains   []chain
	hosts    []host
	pgroups  []portGroup
	ipgroups []ipGroup
	lbs      []loadBalancer
	pools    []lbPool
	mirrors  []mirror

	portByID   hmap[string, int32]
	portByKey  hmap[uint32, int32]
	bridgeByID map[string]int32
	routerByID map[string]int32
	chainByID  map[string]int32
	hostByID   map[string]int32

	// staticMAC maps the MACs of router ports linked to a bridge to the
	// bridge port they sit behind: never learned, never flooded for, and
	// never overridden by a frame claiming one of them from elsewhere.
	staticMAC hmap[macKey, int32]
	// staticIP is what ARP suppression and static next-hop resolution
	// know: router port addresses on peer-linked bridge ports and DHCP
	// host entries.
	staticIP hmap[ipKey, staticEntry]

	dhcpSubnetBridge map[string]string
	hmPools          map[string][]uint64 // health monitor id → tags of the pools it checks
	natFloodTags     map[string][]uint64 // rule, VIP, balancer or router id → flood tags of the bridges its NAT addresses are static on
	pgByID           map[string]int32
	ipgByID          map[string]int32
}

type devKind uint8

const (
	devBridge devKind = iota
	devRouter
)

const none = -1

type port struct {
	id        string
	tag       uint64
	kind      devKind
	dev       int32 // index in bridges or routers
	up        bool
	inChain   int32
	outChain  int32
	sec       *portSec // port security's compiled filter (portsec.go); nil without
	vlan      uint16
	mac       packet.MAC
	addr      netip.Addr   // router ports; invalid when unset
	network   netip.Prefix // router ports
	linkLocal netip.Addr   // router ports: fe80::/64 EUI-64 of mac, for ND
	peer      int32
	host      int32 // index in hosts; none when unbound or the host is unknown
	hostID    string
	ifName    string
	tunnelKey uint32
	natAddrs  []natAddr // router ports: translated addresses on the port's network it answers ARP/ND for (nataddr.go)
	// Trunks, mirrors and QoS marking (portext.go).
	parent     int32 // a subport's parent, none otherwise
	parentVLAN uint16
	subs       []subport
	mirrors    []int32 // indexes in Topology.mirrors
	qosTag     uint64  // the QoS policy's tag, 0 without one
	markDSCP   bool
	dscp       uint8
}

func (p *port) exterior() bool { return p.hostID != "" }

type bridge struct {
	id, name string
	tag      uint64
	floodTag uint64
	// macBloom and ipBloom have one bit set for every static MAC and
	// static address of the bridge. A bridge has one or two router ports,
	// so most lookups (every VM's MAC) are answered "no" without touching
	// the maps.
	macBloom uint64
	ipBloom  uint64
	up       bool
	inChain  int32
	outChain int32
	ports    []int32
}

type router struct {
	id, name string
	tag      uint64
	noRoute  uint64
	// addrBloom has a bit set for each port address and link-local
	// address, so the "is it for me?" test on every routed packet is
	// usually one AND.
	addrBloom uint64
	up        bool
	inChain   int32
	outChain  int32
	ports     []int32
	routes    routeTable
	lb        int32 // index in lbs, none without a load balancer
}

type host struct {
	id    string
	tag   uint64
	zones []zoneAddr
}

// cmpZoneAddr orders a host's memberships: by zone, then (two in one
// zone) by member.
func cmpZoneAddr(a, b zoneAddr) int {
	return cmp.Or(cmpString(a.zone, b.zone), cmp.Compare(a.tag, b.tag))
}

type zoneAddr struct {
	zone    string
	typ     model.TunnelType
	addr    netip.Addr
	tag     uint64 // the tunnel-zone member
	zoneTag uint64
}

type macKey struct {
	dev  int32
	vlan uint16
	mac  packet.MAC
}

// ipKey's named pad makes it padding-free, so the map hashes it as one
// block of memory instead of field by field.
type ipKey struct {
	dev  int32
	vlan uint16
	pad  uint16
	ip   [16]byte
}

type staticEntry struct {
	mac  packet.MAC
	tag  uint64 // the router port or DHCP host that owns the address
	port int32  // the bridge port behind which it lives, none for DHCP hosts
}

// Build indexes a snapshot of the native model. Objects of kinds the
// simulation does not read (identity, Neutron's, ...) are ignored. A reference
// to a missing object is an error: a snapshot read at one etcd revision is
// consistent, so a dangling reference is a bug worth reporting rather than
// a state to simulate.
func Build(objs []model.Object) (*Topology, error) {
	t := &Topology{
		gen:              nextGen(),
		portByID:         newHmap[string, int32](hashID),
		portByKey:        newHmap[uint32, int32](hashUint32),
		bridgeByID:       map[string]int32{},
		routerByID:       map[string]int32{},
		chainByID:        map[string]int32{},
		hostByID:         map[string]int32{},
		staticMAC:        newHmap[macKey, int32](hashMACKey),
		staticIP:         newHmap[ipKey, staticEntry](hashIPKey),
		dhcpSubnetBridge: map[string]string{},
		hmPools:          map[string][]uint64{},
		natFloodTags:     map[string][]uint64{},
		pgByID:           map[string]int32{},
		ipgByID:          map[string]int32{},
	}
	var (
		ports     []*model.Port
		routes    []*model.Route
		rules     = map[string]*model.Rule{}
		chains    []*model.Chain
		members   []*model.TunnelZoneMember
		zones     = map[string]*model.TunnelZone{}
		pgMembers []*model.PortGroupMember
		ipAddrs   []*model.IPAddrGroupAddr
		subnets   = map[string]*model.DHCPSubnet{}
		dhcpHosts []*model.DHCPHost
		mirrors   []*model.Mirror
		qos       = map[string]*model.QoSPolicy{}
		pgByID    = t.pgByID
		ipgByID   = t.ipgByID
	)
	dup := func(kind, id string) error { return fmt.Errorf("%s %s appears twice in the snapshot", kind, id) }
	for _, o := range objs {
		switch x := o.(type) {
		case *model.Host:
			if _, ok := t.hostByID[x.ID]; ok {
				return nil, dup("host", x.ID)
			}
			t.hostByID[x.ID] = int32(len(t.hosts))
			t.hosts = append(t.hosts, host{id: x.ID, tag: ObjectTag(model.HostKind, x.ID)})
		case *model.TunnelZone:
			zones[x.ID] = x
		case *model.TunnelZoneMember:
			members = append(members, x)
		case *model.Bridge:
			if _, ok := t.bridgeByID[x.ID]; ok {
				return nil, dup("bridge", x.ID)
			}
			t.bridgeByID[x.ID] = int32(len(t.bridges))
			t.bridges = append(t.bridges, &bridge{id: x.ID, name: x.Name, tag: ObjectTag(model.BridgeKind, x.ID),
				floodTag: FloodTag(x.ID), up: x.State != model.StateDown})
		case *model.Router:
			if _, ok := t.routerByID[x.ID]; ok {
				return nil, dup("router", x.ID)
			}
			t.routerByID[x.ID] = int32(len(t.routers))
			t.routers = append(t.routers, router{id: x.ID, name: x.Name, tag: ObjectTag(model.RouterKind, x.ID),
				noRoute: NoRouteTag(x.ID), up: x.State != model.StateDown, lb: none})
		case *model.Port:
			ports = append(ports, x)
		case *model.Route:
			routes = append(routes, x)
		case *model.Chain:
			if _, ok := t.chainByID[x.ID]; ok {
				return nil, dup("chain", x.ID)
			}
			t.chainByID[x.ID] = int32(len(chains))
			chains = append(chains, x)
		case *model.Rule:
			if _, ok := rules[x.ID]; ok {
				return nil, dup("rule", x.ID)
			}
			rules[x.ID] = x
		case *model.PortGroup:
			pgByID[x.ID] = int32(len(t.pgroups))
			t.pgroups = append(t.pgroups, portGroup{id: x.ID, tag: ObjectTag(model.PortGroupKind, x.ID)})
		case *model.PortGroupMember:
			pgMembers = append(pgMembers, x)
		case *model.IPAddrGroup:
			ipgByID[x.ID] = int32(len(t.ipgroups))
			t.ipgroups = append(t.ipgroups, ipGroup{id: x.ID, tag: ObjectTag(model.IPAddrGroupKind, x.ID), addrs: newHmap[netip.Addr, int32](hashAddr)})
		case *model.IPAddrGroupAddr:
			ipAddrs = append(ipAddrs, x)
		case *model.DHCPSubnet:
			subnets[x.ID] = x
		case *model.DHCPHost:
			dhcpHosts = append(dhcpHosts, x)
		case *model.Mirror:
			mirrors = append(mirrors, x)
		case *model.QoSPolicy:
			qos[x.ID] = x
		}
	}

	for _, m := range members {
		hi, ok := t.hostByID[m.HostID]
		if !ok {
			return nil, fmt.Errorf("tunnel-zone member %s: host %s does not exist", m.ID, m.HostID)
		}
		z, ok := zones[m.TunnelZoneID]
		if !ok {
			return nil, fmt.Errorf("tunnel-zone member %s: tunnel zone %s does not exist", m.ID, m.TunnelZoneID)
		}
		t.hosts[hi].zones = append(t.hosts[hi].zones, zoneAddr{zone: z.ID, typ: z.Type, addr: m.Address,
			tag: ObjectTag(model.TunnelZoneMemberKind, m.ID), zoneTag: ObjectTag(model.TunnelZoneKind, z.ID)})
	}
	for i := range t.hosts {
		// Zone order decides which zone two hosts tunnel through when they
		// share several; sort so it does not depend on snapshot order.
		slices.SortFunc(t.hosts[i].zones, cmpZoneAddr)
	}

	// Ports: first index them, then resolve peers (which may come later).
	for i, mp := range ports {
		if _, ok := t.portByID.Get(mp.ID); ok {
			return nil, dup("port", mp.ID)
		}
		t.portByID.Put(mp.ID, int32(i), t.gen)
	}
	for i, mp := range ports {
		p, err := t.portSlot(mp)
		if err != nil {
			return nil, err
		}
		if mp.PeerID != "" {
			peer, ok := t.portByID.Get(mp.PeerID)
			if !ok {
				return nil, fmt.Errorf("port %s: peer port %s does not exist", mp.ID, mp.PeerID)
			}
			if ports[peer].PeerID != mp.ID {
				return nil, fmt.Errorf("port %s: peer port %s is linked to %q, not back to it", mp.ID, mp.PeerID, ports[peer].PeerID)
			}
			p.peer = peer
		}
		if mp.TunnelKey != 0 {
			if other, ok := t.portByKey.Get(mp.TunnelKey); ok {
				return nil, fmt.Errorf("port %s: tunnel key %d is also port %s's", mp.ID, mp.TunnelKey, ports[other].ID)
			}
			t.portByKey.Put(mp.TunnelKey, int32(i), t.gen)
		}
		t.ports.Push(p, t.gen)
		if p.kind == devRouter {
			r := &t.routers[p.dev]
			r.ports = append(r.ports, int32(i))
			r.addrBloom |= ipBloomBit(p.linkLocal)
			if p.addr.IsValid() {
				r.addrBloom |= ipBloomBit(p.addr)
			}
		} else {
			t.bridges[p.dev].ports = append(t.bridges[p.dev].ports, int32(i))
		}
	}
	if err := t.buildPortExtras(ports, mirrors, qos); err != nil {
		return nil, err
	}
	for i := range t.bridges {
		b := t.bridges[i]
		slices.SortFunc(b.ports, t.byPortID)
	}
	for i := range t.routers {
		slices.SortFunc(t.routers[i].ports, t.byPortID)
	}

	// Devices' filters. Bridges and routers were indexed in input order.
	for _, o := range objs {
		var err error
		switch x := o.(type) {
		case *model.Bridge:
			b := t.bridges[t.bridgeByID[x.ID]]
			if b.inChain, err = t.chainRef("bridge "+x.ID+" inbound filter", x.InboundFilterID); err == nil {
				b.outChain, err = t.chainRef("bridge "+x.ID+" outbound filter", x.OutboundFilterID)
			}
		case *model.Router:
			r := &t.routers[t.routerByID[x.ID]]
			if r.inChain, err = t.chainRef("router "+x.ID+" inbound filter", x.InboundFilterID); err == nil {
				r.outChain, err = t.chainRef("router "+x.ID+" outbound filter", x.OutboundFilterID)
			}
		}
		if err != nil {
			return nil, err
		}
	}

	for i := range t.pgroups {
		t.pgroups[i].members = make([]uint64, (t.ports.Len()+63)/64)
	}
	for _, m := range pgMembers {
		g, ok := pgByID[m.PortGroupID]
		if !ok {
			return nil, fmt.Errorf("port-group member %s: port group %s does not exist", m.ID, m.PortGroupID)
		}
		p, ok := t.portByID.Get(m.PortID)
		if !ok {
			return nil, fmt.Errorf("port-group member %s: port %s does not exist", m.ID, m.PortID)
		}
		t.pgroups[g].members[p/64] |= 1 << (p % 64)
	}
	for _, a := range ipAddrs {
		g, ok := ipgByID[a.IPAddrGroupID]
		if !ok {
			return nil, fmt.Errorf("ip-address-group address %s: group %s does not exist", a.ID, a.IPAddrGroupID)
		}
		t.ipgroups[g].add(a.Address, 1, t.gen)
	}
	for _, mp := range ports {
		if err := t.joinGroups(mp, 1); err != nil {
			return nil, err
		}
	}

	t.chains = make([]chain, len(chains))
	for i, c := range chains {
		t.chains[i] = chain{id: c.ID, name: c.Name, tag: ObjectTag(model.ChainKind, c.ID)}
		for pos, rid := range c.RuleIDs {
			r, ok := rules[rid]
			if !ok {
				return nil, fmt.Errorf("chain %s: rule %s does not exist", c.ID, rid)
			}
			if r.ChainID != c.ID {
				return nil, fmt.Errorf("chain %s lists rule %s, which belongs to chain %s", c.ID, rid, r.ChainID)
			}
			cr, err := t.compileRule(r, pos+1, pgByID, ipgByID)
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", c.ID, err)
			}
			t.chains[i].rules = append(t.chains[i].rules, cr)
		}
	}
	// Port security jumps to chains by pointer: compiled once they are.
	for i, mp := range ports {
		sec, err := t.compilePortSec(mp, t.ports.At(int32(i)).tag)
		if err != nil {
			return nil, err
		}
		t.ports.Mut(int32(i), t.gen).sec = sec
	}

	byRouter := map[int32][]*model.Route{}
	for _, r := range routes {
		ri, ok := t.routerByID[r.RouterID]
		if !ok {
			return nil, fmt.Errorf("route %s: router %s does not exist", r.ID, r.RouterID)
		}
		byRouter[ri] = append(byRouter[ri], r)
	}
	for ri, rs := range byRouter {
		tbl, err := t.buildRouteTable(ri, rs)
		if err != nil {
			return nil, err
		}
		t.routers[ri].routes = tbl
	}

	// Static L2/L3 knowledge of bridges. Bridges' ports are sorted by id,
	// so where two router ports claim one MAC or address the same one
	// wins whatever the input order (the larger id, written last).
	for bi := range t.bridges {
		for _, q := range t.bridges[bi].ports {
			bp := t.ports.At(q)
			if bp.peer == none {
				continue
			}
			rp := t.ports.At(bp.peer)
			if rp.kind != devRouter {
				continue
			}
			t.staticMAC.Put(macKey{bp.dev, bp.vlan, rp.mac}, q, t.gen)
			t.bridges[bp.dev].macBloom |= macBloomBit(rp.mac)
			t.bridges[bp.dev].ipBloom |= ipBloomBit(rp.linkLocal)
			if rp.addr.IsValid() {
				t.staticIP.Put(ipKey{dev: bp.dev, vlan: bp.vlan, ip: rp.addr.As16()}, staticEntry{mac: rp.mac, tag: rp.tag, port: q}, t.gen)
				t.bridges[bp.dev].ipBloom |= ipBloomBit(rp.addr)
			}
			// IPv6 hosts often use the router's link-local address as their
			// gateway (it is what router advertisements carry).
			t.staticIP.Put(ipKey{dev: bp.dev, vlan: bp.vlan, ip: rp.linkLocal.As16()}, staticEntry{mac: rp.mac, tag: rp.tag, port: q}, t.gen)
		}
	}
	for _, s := range subnets {
		if _, ok := t.bridgeByID[s.BridgeID]; !ok {
			return nil, fmt.Errorf("dhcp subnet %s: bridge %s does not exist", s.ID, s.BridgeID)
		}
		t.dhcpSubnetBridge[s.ID] = s.BridgeID
	}
	// Where DHCP entries claim one address, the smallest id wins.
	slices.SortFunc(dhcpHosts, func(a, b *model.DHCPHost) int { return strings.Compare(a.ID, b.ID) })
	for _, h := range dhcpHosts {
		s, ok := subnets[h.DHCPSubnetID]
		if !ok {
			return nil, fmt.Errorf("dhcp host %s: subnet %s does not exist", h.ID, h.DHCPSubnetID)
		}
		if s.Disabled || !h.Address.IsValid() {
			continue
		}
		k := ipKey{dev: t.bridgeByID[s.BridgeID], ip: h.Address.As16()}
		if _, taken := t.staticIP.Get(k); taken {
			continue // a router port's address wins over a DHCP entry claiming it
		}
		t.staticIP.Put(k, staticEntry{mac: h.MAC, tag: ObjectTag(model.DHCPHostKind, h.ID), port: none}, t.gen)
		t.bridges[k.dev].ipBloom |= ipBloomBit(h.Address)
	}
	if err := t.buildLBs(objs); err != nil {
		return nil, err
	}
	t.buildNATAddrs()
	return t, nil
}

// portSlot makes a port's slot from the model: everything but its peer,
// which Build resolves once every port is indexed.
func (t *Topology) portSlot(mp *model.Port) (port, error) {
	p := port{id: mp.ID, tag: ObjectTag(model.PortKind, mp.ID), up: mp.State != model.StateDown, vlan: mp.VLAN,
		mac: mp.MAC, addr: mp.Address, network: mp.Network, peer: none, host: none, parent: none,
		hostID: mp.HostID, ifName: mp.InterfaceName, tunnelKey: mp.TunnelKey}
	what := "port " + mp.ID
	switch {
	case mp.RouterID != "":
		r, ok := t.routerByID[mp.RouterID]
		if !ok {
			return port{}, fmt.Errorf("%s: router %s does not exist", what, mp.RouterID)
		}
		p.kind, p.dev = devRouter, r
		p.linkLocal = linkLocal(p.mac)
	case mp.BridgeID != "":
		b, ok := t.bridgeByID[mp.BridgeID]
		if !ok {
			return port{}, fmt.Errorf("%s: bridge %s does not exist", what, mp.BridgeID)
		}
		p.kind, p.dev = devBridge, b
	default:
		return port{}, fmt.Errorf("%s belongs to no bridge or router", what)
	}
	if mp.HostID != "" {
		if h, ok := t.hostByID[mp.HostID]; ok {
			p.host = h
		}
		// A binding to a host not (yet) registered is kept: the port is
		// exterior, and walks to it drop with DropNoTunnel until the
		// host appears.
	}
	var err error
	if p.inChain, err = t.chainRef(what+" inbound filter", mp.InboundFilterID); err != nil {
		return port{}, err
	}
	if p.outChain, err = t.chainRef(what+" outbound filter", mp.OutboundFilterID); err != nil {
		return port{}, err
	}
	return p, nil
}

func (t *Topology) chainRef(what, id string) (int32, error) {
	if id == "" {
		return none, nil
	}
	c, ok := t.chainByID[id]
	if !ok {
		return none, fmt.Errorf("%s: chain %s does not exist", what, id)
	}
	return c, nil
}

// nextGen is a generation no topology has had.
func nextGen() uint64 { return persist.NextGen() }

func (t *Topology) byPortID(a, b int32) int {
	return strings.Compare(t.ports.At(a).id, t.ports.At(b).id)
}

// linkLocal is the EUI-64 link-local address of a MAC (RFC 4291 App. A):
// the address a router port answers neighbor solicitations for and sources
// its own from when it has no IPv6 address.
func linkLocal(m packet.MAC) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: m[0] ^ 2, 9: m[1], 10: m[2], 11: 0xff, 12: 0xfe, 13: m[3], 14: m[4], 15: m[5]})
}

// PortIndex returns the index of a port, the form Input.InPort takes.
func (t *Topology) PortIndex(id string) (int32, bool) {
	i, ok := t.portByID.Get(id)
	return i, ok
}

// PortBridge returns the id of the bridge port id belongs to; false for
// routers' ports and unknown ones.
func (t *Topology) PortBridge(id string) (string, bool) {
	i, ok := t.portByID.Get(id)
	if !ok || t.ports.At(i).kind != devBridge {
		return "", false
	}
	return t.bridges[t.ports.At(i).dev].id, true
}

// PortByTunnelKey returns the port a tunnel key names: what the egress host
// delivers a tunnelled packet to.
func (t *Topology) PortByTunnelKey(key uint32) (int32, bool) {
	i, ok := t.portByKey.Get(key)
	return i, ok
}

// NumPorts is the number of ports; indexes run from 0 to NumPorts()-1.
func (t *Topology) NumPorts() int { return int(t.ports.Len()) }

// PortID returns the id of the port with index i.
func (t *Topology) PortID(i int32) string { return t.ports.At(i).id }

// PortBinding returns the host and interface a port is bound to; both
// empty for interior and unbound ports.
func (t *Topology) PortBinding(i int32) (hostID, iface string) {
	return t.ports.At(i).hostID, t.ports.At(i).ifName
}

// portName renders a port for traces: device name (or id) and port id.
func (t *Topology) portName(i int32) string {
	p := t.ports.At(i)
	return t.devName(p.kind, p.dev) + ":" + p.id
}

func (t *Topology) devName(k devKind, d int32) string {
	if k == devBridge {
		b := t.bridges[d]
		if b.name != "" {
			return b.name
		}
		return b.id
	}
	r := &t.routers[d]
	if r.name != "" {
		return r.name
	}
	return r.id
}

func macBloomBit(m packet.MAC) uint64 { return 1 << (splitmix.Mix64(macBits(m)) & 63) }

func ipBloomBit(a netip.Addr) uint64 {
	b := a.As16()
	return 1 << ((uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])) * 0x9e3779b97f4a7c15 >> 58)
}

// staticMACPort returns the bridge port behind which a router port with
// MAC m sits on vlan, or none.
func (t *Topology) staticMACPort(bi int32, vlan uint16, m packet.MAC) int32 {
	if t.bridges[bi].macBloom&macBloomBit(m) == 0 {
		return none
	}
	if q, ok := t.staticMAC.Get(macKey{bi, vlan, m}); ok {
		return q
	}
	return none
}

// staticIPEntry returns what the bridge knows statically about address a
// on vlan.
func (t *Topology) staticIPEntry(bi int32, vlan uint16, a netip.Addr) (staticEntry, bool) {
	if t.bridges[bi].ipBloom&ipBloomBit(a) == 0 {
		return staticEntry{}, false
	}
	e, ok := t.staticIP.Get(ipKey{dev: bi, vlan: vlan, ip: a.As16()})
	return e, ok
}
