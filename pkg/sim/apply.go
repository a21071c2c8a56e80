package sim

import (
	"maps"
	"slices"

	"github.com/nagare/nagare/pkg/model"
)

// Change is one object's change: Old is nil for a creation, New for a
// deletion.
type Change struct{ Old, New model.Object }

// Objects is the whole model after the changes: what Apply reads beyond
// them, and what it builds from when it falls back to Build.
type Objects interface {
	// Each calls fn with every object of kind k until fn returns false.
	Each(k *model.Kind, fn func(model.Object) bool)
}

// Apply returns the topology of objs, which is t's model with changes
// applied, reusing t: the kinds that grow with hosts and VMs — ports of
// bridges, port-group members, IP-address-group addresses, DHCP host
// entries, hosts registering and their tunnel-zone memberships (a host
// coming alive or dying is its memberships appearing or going) — are
// applied in time proportional to the change (their device's port list,
// one page of ports, a few shards of the maps, the host list), and kinds
// the simulation does not read are skipped. Any other change (devices,
// router ports and links, routes, chains and rules, tunnel zones, hosts
// deleted, load balancers) rebuilds the topology with Build. The
// result is the topology Build(objs) would return, up to port indexes
// and the bloom filters' spare bits (TestApplyEqualsBuild); t is not
// changed.
func (t *Topology) Apply(changes []Change, objs Objects) (*Topology, error) {
	n := t.clone()
	// One transaction's events come in key order, which puts a port's
	// group membership before the port: ports are created (and changed)
	// first and deleted last, so that references resolve.
	for pass := range 3 {
		for _, c := range changes {
			if changePass(c) != pass {
				continue
			}
			ok, err := n.apply(c, objs)
			if err != nil || !ok {
				return BuildFrom(objs)
			}
		}
	}
	return n, nil
}

// changePass orders a transaction's changes: 0 ports created or changed,
// 1 everything else, 2 ports deleted.
func changePass(c Change) int {
	switch {
	case c.New != nil && model.KindOf(c.New) == model.PortKind:
		return 0
	case c.New == nil && model.KindOf(c.Old) == model.PortKind:
		return 2
	}
	return 1
}

// BuildFrom builds the topology of every object objs holds.
func BuildFrom(objs Objects) (*Topology, error) {
	var all []model.Object
	for _, k := range model.Kinds() {
		if !simKinds[k] {
			continue
		}
		objs.Each(k, func(o model.Object) bool {
			all = append(all, o)
			return true
		})
	}
	return Build(all)
}

// simKinds are the kinds Build reads; changes to others do not touch the
// topology.
var simKinds = map[*model.Kind]bool{
	model.HostKind: true, model.TunnelZoneKind: true, model.TunnelZoneMemberKind: true, model.BridgeKind: true,
	model.RouterKind: true, model.PortKind: true, model.RouteKind: true, model.ChainKind: true, model.RuleKind: true,
	model.PortGroupKind: true, model.PortGroupMemberKind: true, model.IPAddrGroupKind: true,
	model.IPAddrGroupAddrKind: true, model.DHCPSubnetKind: true, model.DHCPHostKind: true,
	model.LoadBalancerKind: true, model.PoolKind: true, model.PoolMemberKind: true, model.VIPKind: true,
	model.HealthMonitorKind: true, model.MirrorKind: true, model.QoSPolicyKind: true,
}

// clone is a new generation of t sharing everything with it.
func (t *Topology) clone() *Topology {
	n := *t
	n.gen = nextGen()
	return &n
}

// apply applies one change in place (n is unpublished); ok is false when
// the change needs a full build.
func (n *Topology) apply(c Change, objs Objects) (ok bool, err error) {
	o := c.New
	if o == nil {
		o = c.Old
	}
	k := model.KindOf(o)
	switch {
	case !simKinds[k]:
		return true, nil
	case k == model.HostKind && c.Old != nil && c.New != nil:
		return true, nil // the simulation reads a host's id only
	case k == model.HostKind && c.Old == nil:
		return n.addHost(c.New.(*model.Host)), nil
	case k == model.TunnelZoneMemberKind:
		return n.applyZoneMember(c, objs), nil
	case k == model.PortKind:
		return n.applyPort(c, objs)
	case k == model.PortGroupMemberKind:
		return n.applyGroupMember(c, objs)
	case k == model.IPAddrGroupAddrKind:
		return n.applyGroupAddr(c, objs)
	case k == model.DHCPHostKind:
		return n.applyDHCPHost(c, objs)
	}
	return false, nil
}

// plainBridgePort: a bridge port without a link, the kind of port VMs
// have. Ports of routers and linked ports decide routes, static MACs and
// addresses, NAT addresses: changing them is a full build.
func plainBridgePort(o model.Object) (*model.Port, bool) {
	p, ok := o.(*model.Port)
	return p, ok && p != nil && p.BridgeID != "" && p.RouterID == "" && p.PeerID == "" && p.ParentID == "" && p.QoSPolicyID == ""
}

// extras reports a port of the topology that is a trunk's parent or
// subport, mirrored or marked (portext.go): changing it is a full build.
func (n *Topology) extras(id string) bool {
	i, ok := n.portByID.Get(id)
	if !ok {
		return false
	}
	p := n.ports.At(i)
	return p.parent != none || len(p.subs) > 0 || len(p.mirrors) > 0 || p.qosTag != 0
}

func (n *Topology) applyPort(c Change, objs Objects) (bool, error) {
	var oldP, newP *model.Port
	if c.Old != nil {
		var ok bool
		if oldP, ok = plainBridgePort(c.Old); !ok {
			return false, nil
		}
	}
	if c.New != nil {
		var ok bool
		if newP, ok = plainBridgePort(c.New); !ok {
			return false, nil
		}
	}
	if oldP != nil && n.extras(oldP.ID) {
		return false, nil
	}
	if !n.groupsKnown(oldP) || !n.groupsKnown(newP) {
		return false, nil // Build reports the dangling reference
	}
	switch {
	case oldP != nil && newP != nil:
		i, ok := n.portByID.Get(oldP.ID)
		if !ok || oldP.BridgeID != newP.BridgeID {
			return false, nil
		}
		p, err := n.securedSlot(newP)
		if err != nil {
			return false, err
		}
		if !n.setTunnelKey(i, oldP.TunnelKey, newP.TunnelKey) {
			return false, nil
		}
		*n.ports.Mut(i, n.gen) = p
		return true, n.moveMembership(oldP, newP)
	case newP != nil:
		if _, dup := n.portByID.Get(newP.ID); dup {
			return false, nil
		}
		p, err := n.securedSlot(newP)
		if err != nil {
			return false, err
		}
		if err := n.moveMembership(nil, newP); err != nil {
			return false, err
		}
		var i int32
		if len(n.free) > 0 {
			i = n.free[len(n.free)-1]
			n.free = n.free[: len(n.free)-1 : len(n.free)-1] // a later append must not write into the old topology's array
			*n.ports.Mut(i, n.gen) = p
		} else {
			i = n.ports.Push(p, n.gen)
		}
		if !n.setTunnelKey(i, 0, newP.TunnelKey) {
			return false, nil
		}
		n.portByID.Put(newP.ID, i, n.gen)
		n.editBridgePorts(p.dev, func(ps []int32) []int32 {
			at, _ := slices.BinarySearchFunc(ps, newP.ID, func(q int32, id string) int { return cmpString(n.ports.At(q).id, id) })
			return slices.Insert(ps, at, i)
		})
		return true, nil
	default:
		i, ok := n.portByID.Get(oldP.ID)
		if !ok || n.portReferenced(i) {
			return false, nil
		}
		dev := n.ports.At(i).dev
		n.setTunnelKey(i, oldP.TunnelKey, 0)
		n.portByID.Del(oldP.ID, n.gen)
		n.editBridgePorts(dev, func(ps []int32) []int32 {
			return slices.DeleteFunc(ps, func(q int32) bool { return q == i })
		})
		for g := range n.pgroups {
			if n.inGroup(int32(g), i) {
				n.setMember(int32(g), i, false)
			}
		}
		if err := n.moveMembership(oldP, nil); err != nil {
			return false, err
		}
		*n.ports.Mut(i, n.gen) = port{peer: none, host: none, inChain: none, outChain: none, parent: none}
		n.free = append(slices.Clip(n.free), i)
		return true, nil
	}
}

// securedSlot is portSlot with the port's security compiled.
func (n *Topology) securedSlot(mp *model.Port) (port, error) {
	p, err := n.portSlot(mp)
	if err != nil {
		return p, err
	}
	p.sec, err = n.compilePortSec(mp, p.tag)
	return p, err
}

// groupsKnown reports whether every IP address group port mp joins exists
// (true for no port).
func (n *Topology) groupsKnown(mp *model.Port) bool {
	if mp == nil {
		return true
	}
	for _, id := range mp.IPAddrGroupIDs {
		if _, ok := n.ipgByID[id]; !ok {
			return false
		}
	}
	return true
}

// moveMembership takes a port's member addresses out of the groups its
// old version joined and into those its new one joins (either may be
// nil), copying the group list first.
func (n *Topology) moveMembership(old, cur *model.Port) error {
	if (old == nil || len(old.IPAddrGroupIDs) == 0) && (cur == nil || len(cur.IPAddrGroupIDs) == 0) {
		return nil
	}
	n.ipgroups = slices.Clone(n.ipgroups)
	if old != nil {
		if err := n.joinGroups(old, -1); err != nil {
			return err
		}
	}
	if cur != nil {
		return n.joinGroups(cur, 1)
	}
	return nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// setTunnelKey moves port i's entry in the tunnel-key index; false on a
// key another port holds (Build fails on it).
func (n *Topology) setTunnelKey(i int32, old, cur uint32) bool {
	if old == cur {
		return true
	}
	if cur != 0 {
		if other, ok := n.portByKey.Get(cur); ok && other != i {
			return false
		}
	}
	if old != 0 {
		if q, ok := n.portByKey.Get(old); ok && q == i {
			n.portByKey.Del(old, n.gen)
		}
	}
	if cur != 0 {
		n.portByKey.Put(cur, i, n.gen)
	}
	return true
}

// editBridgePorts replaces bridge b's port list with edit's copy of it.
func (n *Topology) editBridgePorts(b int32, edit func([]int32) []int32) {
	nb := n.editBridge(b)
	nb.ports = edit(slices.Clone(nb.ports))
}

// editBridge returns bridge b for writing: a copy, in a copy of the list.
func (n *Topology) editBridge(b int32) *bridge {
	n.bridges = slices.Clone(n.bridges)
	c := *n.bridges[b]
	n.bridges[b] = &c
	return &c
}

// portReferenced reports whether a rule names port i (a rule naming a
// deleted port fails Build).
func (n *Topology) portReferenced(i int32) bool {
	for m := range n.mirrors {
		if n.mirrors[m].dest == i {
			return true
		}
	}
	for c := range n.chains {
		for r := range n.chains[c].rules {
			cr := &n.chains[c].rules[r]
			if slices.Contains(cr.inPorts, i) || slices.Contains(cr.outPorts, i) {
				return true
			}
		}
	}
	return false
}

func (n *Topology) inGroup(g, p int32) bool {
	m := n.pgroups[g].members
	return int(p/64) < len(m) && m[p/64]&(1<<(p%64)) != 0
}

// setMember sets or clears port p's bit in group g, copying what it
// changes.
func (n *Topology) setMember(g, p int32, in bool) {
	n.pgroups = slices.Clone(n.pgroups)
	m := n.pgroups[g].members
	need := max(len(m), int(p/64)+1)
	c := make([]uint64, need, max(need, (int(n.ports.Len())+63)/64))
	copy(c, m)
	if in {
		c[p/64] |= 1 << (p % 64)
	} else {
		c[p/64] &^= 1 << (p % 64)
	}
	n.pgroups[g].members = c
}

func (n *Topology) applyGroupMember(c Change, objs Objects) (bool, error) {
	if c.Old != nil {
		m := c.Old.(*model.PortGroupMember)
		g, gok := n.pgByID[m.PortGroupID]
		p, pok := n.portByID.Get(m.PortID)
		if gok && pok && !memberStill(objs, m) {
			n.setMember(g, p, false)
		}
	}
	if c.New != nil {
		m := c.New.(*model.PortGroupMember)
		g, gok := n.pgByID[m.PortGroupID]
		p, pok := n.portByID.Get(m.PortID)
		if !gok || !pok {
			return false, nil // Build reports the dangling reference
		}
		n.setMember(g, p, true)
	}
	return true, nil
}

// memberStill reports whether another member object puts m's port in m's
// group.
func memberStill(objs Objects, m *model.PortGroupMember) bool {
	still := false
	objs.Each(model.PortGroupMemberKind, func(o model.Object) bool {
		x := o.(*model.PortGroupMember)
		still = x.ID != m.ID && x.PortGroupID == m.PortGroupID && x.PortID == m.PortID
		return !still
	})
	return still
}

func (n *Topology) applyGroupAddr(c Change, _ Objects) (bool, error) {
	edit := func(groupID string) (*ipGroup, bool) {
		g, ok := n.ipgByID[groupID]
		if !ok {
			return nil, false
		}
		n.ipgroups = slices.Clone(n.ipgroups)
		return &n.ipgroups[g], true
	}
	if c.Old != nil {
		a := c.Old.(*model.IPAddrGroupAddr)
		if g, ok := edit(a.IPAddrGroupID); ok {
			g.add(a.Address, -1, n.gen)
		}
	}
	if c.New != nil {
		a := c.New.(*model.IPAddrGroupAddr)
		g, ok := edit(a.IPAddrGroupID)
		if !ok {
			return false, nil
		}
		g.add(a.Address, 1, n.gen)
	}
	return true, nil
}

func (n *Topology) applyDHCPHost(c Change, objs Objects) (bool, error) {
	// key is where a DHCP host's entry goes, if it has one.
	key := func(h *model.DHCPHost) (ipKey, bool, bool) {
		b, ok := n.dhcpSubnetBridge[h.DHCPSubnetID]
		if !ok {
			return ipKey{}, false, false // Build reports the dangling reference
		}
		if !h.Address.IsValid() || subnetDisabled(objs, h.DHCPSubnetID) {
			return ipKey{}, false, true
		}
		return ipKey{dev: n.bridgeByID[b], ip: h.Address.As16()}, true, true
	}
	if c.Old != nil {
		h := c.Old.(*model.DHCPHost)
		k, has, ok := key(h)
		if !ok {
			return false, nil
		}
		if e, found := n.staticIP.Get(k); has && found && e.tag == ObjectTag(model.DHCPHostKind, h.ID) {
			if dhcpRival(objs, n, h, k) {
				return false, nil // another entry claims the address: Build decides who wins
			}
			n.staticIP.Del(k, n.gen)
		}
	}
	if c.New != nil {
		h := c.New.(*model.DHCPHost)
		k, has, ok := key(h)
		if !ok {
			return false, nil
		}
		if !has {
			return true, nil
		}
		if e, taken := n.staticIP.Get(k); taken {
			if e.port == none {
				return false, nil // two DHCP entries claim the address
			}
			return true, nil // a router port's or NAT address wins
		}
		n.staticIP.Put(k, staticEntry{mac: h.MAC, tag: ObjectTag(model.DHCPHostKind, h.ID), port: none}, n.gen)
		n.editBridge(k.dev).ipBloom |= ipBloomBit(h.Address)
	}
	return true, nil
}

func subnetDisabled(objs Objects, id string) bool {
	disabled := false
	objs.Each(model.DHCPSubnetKind, func(o model.Object) bool {
		if s := o.(*model.DHCPSubnet); s.ID == id {
			disabled = s.Disabled
			return false
		}
		return true
	})
	return disabled
}

// dhcpRival reports whether a DHCP host other than h has an entry for k.
func dhcpRival(objs Objects, n *Topology, h *model.DHCPHost, k ipKey) bool {
	rival := false
	objs.Each(model.DHCPHostKind, func(o model.Object) bool {
		x := o.(*model.DHCPHost)
		if x.ID == h.ID || x.Address != h.Address {
			return true
		}
		if b, ok := n.dhcpSubnetBridge[x.DHCPSubnetID]; ok && n.bridgeByID[b] == k.dev {
			rival = true
		}
		return !rival
	})
	return rival
}

// addHost appends a registering host; ports bound to it before it came
// take it as their host.
func (n *Topology) addHost(h *model.Host) bool {
	if _, dup := n.hostByID[h.ID]; dup {
		return false
	}
	hi := int32(len(n.hosts))
	n.hosts = append(slices.Clip(n.hosts), host{id: h.ID, tag: ObjectTag(model.HostKind, h.ID)})
	n.hostByID = maps.Clone(n.hostByID)
	n.hostByID[h.ID] = hi
	for i := range n.ports.Len() {
		if p := n.ports.At(i); p.id != "" && p.hostID == h.ID {
			n.ports.Mut(i, n.gen).host = hi
		}
	}
	return true
}

// applyZoneMember moves a tunnel-zone membership in its host's zone list,
// which stays in Build's order (cmpZoneAddr).
func (n *Topology) applyZoneMember(c Change, objs Objects) bool {
	cloned := false
	edit := func(hostID string) (*host, bool) {
		hi, ok := n.hostByID[hostID]
		if !ok {
			return nil, false // Build reports the dangling reference
		}
		if !cloned {
			n.hosts, cloned = slices.Clone(n.hosts), true
		}
		return &n.hosts[hi], true
	}
	if c.Old != nil {
		m := c.Old.(*model.TunnelZoneMember)
		h, ok := edit(m.HostID)
		if !ok {
			return false
		}
		tag := ObjectTag(model.TunnelZoneMemberKind, m.ID)
		i := slices.IndexFunc(h.zones, func(z zoneAddr) bool { return z.tag == tag })
		if i < 0 {
			return false
		}
		h.zones = slices.Delete(slices.Clone(h.zones), i, i+1)
	}
	if c.New != nil {
		m := c.New.(*model.TunnelZoneMember)
		h, ok := edit(m.HostID)
		if !ok {
			return false
		}
		var zone *model.TunnelZone
		objs.Each(model.TunnelZoneKind, func(o model.Object) bool {
			if z := o.(*model.TunnelZone); z.ID == m.TunnelZoneID {
				zone = z
			}
			return zone == nil
		})
		if zone == nil {
			return false
		}
		za := zoneAddr{zone: zone.ID, typ: zone.Type, addr: m.Address,
			tag: ObjectTag(model.TunnelZoneMemberKind, m.ID), zoneTag: ObjectTag(model.TunnelZoneKind, zone.ID)}
		at, found := slices.BinarySearchFunc(h.zones, za, cmpZoneAddr)
		if found {
			return false // the member twice: Build decides
		}
		h.zones = slices.Insert(slices.Clone(h.zones), at, za)
	}
	return true
}
