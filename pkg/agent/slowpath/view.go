package slowpath

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/nagare/nagare/pkg/agent/dhcp"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/sim"
)

// view is an immutable snapshot of what the miss path reads: the
// topology, the bindings, the DHCP servers and where flow state goes.
type view struct {
	version  uint64
	topo     *sim.Topology
	portToDP map[string]int32 // port id → datapath index (attached here)
	dhcp     map[string]*dhcp.Server
	// statefulPeers maps a port of a stateful port group to the tunnel
	// endpoints of the other hosts binding ports of its groups: where the
	// state of connections through it is pushed.
	statefulPeers map[string][]netip.Addr
}

// viewBuilder keeps the latest topology and bindings and makes views of
// them; the DHCP servers (and their leases) outlive the views.
type viewBuilder struct {
	cfg Config

	mu       sync.Mutex
	snap     *mirror.Snapshot
	bindings map[string]int32 // port id → datapath index, of the ports attached here
	version  uint64
	// Derived from snap alone, rebuilt when what they read changes.
	statefulPeers map[string][]netip.Addr
	dhcp          map[string]*dhcp.Server // bridge id → server
}

func (b *viewBuilder) init(cfg Config) {
	b.cfg = cfg
	empty, err := mirror.NewSnapshot(0)
	if err != nil {
		panic("slowpath: the empty topology does not build: " + err.Error())
	}
	b.snap = empty
	b.bindings = map[string]int32{}
	b.dhcp = map[string]*dhcp.Server{}
}

// build makes a view of the latest topology and bindings. b.mu is held,
// or b is not shared yet.
func (b *viewBuilder) build() *view {
	b.version++
	v := &view{version: b.version, topo: b.snap.Topo, portToDP: b.bindings, statefulPeers: b.statefulPeers, dhcp: make(map[string]*dhcp.Server, len(b.dhcp))}
	for k, s := range b.dhcp {
		v.dhcp[k] = s
	}
	return v
}

// SetTopology makes the misses that follow read snapshot s.
func (h *Handler) SetTopology(s *mirror.Snapshot) {
	b := &h.views
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := b.snap
	b.snap = s
	// Only what a change touched is derived again: every host sees every
	// change, and most are other hosts' ports.
	full := s.Reset || s.Version != prev.Version+1
	if full || s.ChangedSince(prev.Version, model.DHCPSubnetKind.Name, model.DHCPHostKind.Name) {
		b.rebuildDHCP(s)
	}
	if full || s.ChangedSince(prev.Version, model.PortGroupKind.Name, model.PortGroupMemberKind.Name, model.TunnelZoneMemberKind.Name) ||
		(b.statefulPeers != nil && s.ChangedSince(prev.Version, model.PortKind.Name)) {
		b.statefulPeers = StatefulPeers(s, b.cfg.HostID)
	}
	h.view.Store(b.build())
}

// SetBindings makes the misses that follow output to the ports attached
// here at these datapath indexes (port id → index; read-only).
func (h *Handler) SetBindings(bindings map[string]int32) {
	b := &h.views
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bindings = bindings
	h.view.Store(b.build())
}

// rebuildDHCP gives every bridge with DHCP subnets a server, keeping the
// existing servers (and their leases). b.mu is held.
func (b *viewBuilder) rebuildDHCP(s *mirror.Snapshot) {
	subnets := map[string][]*model.DHCPSubnet{}
	hosts := map[string][]model.DHCPHost{}
	s.Each(model.DHCPSubnetKind, func(o model.Object) bool {
		x := o.(*model.DHCPSubnet)
		subnets[x.BridgeID] = append(subnets[x.BridgeID], x)
		return true
	})
	s.Each(model.DHCPHostKind, func(o model.Object) bool {
		x := o.(*model.DHCPHost)
		hosts[x.DHCPSubnetID] = append(hosts[x.DHCPSubnetID], *x)
		return true
	})
	// In a fixed order, whatever the snapshot's.
	for _, ds := range subnets {
		slices.SortFunc(ds, func(a, b *model.DHCPSubnet) int { return strings.Compare(a.ID, b.ID) })
	}
	for _, hs := range hosts {
		slices.SortFunc(hs, func(a, b model.DHCPHost) int { return strings.Compare(a.ID, b.ID) })
	}
	overlayMTU := uint16(b.cfg.UnderlayMTU - 50) // VXLAN over IPv4: the smallest MTU a VM may meet
	for bridge, ds := range subnets {
		var subs []*dhcp.Subnet
		for _, d := range ds {
			sub, err := dhcp.NewSubnet(*d, hosts[d.ID], overlayMTU)
			if err != nil {
				b.cfg.Log.Warn("DHCP subnet skipped", "subnet", d.Subnet, "bridge", bridge, "err", err)
				continue
			}
			subs = append(subs, sub)
		}
		if srv := b.dhcp[bridge]; srv != nil {
			srv.SetSubnets(subs...)
		} else {
			b.dhcp[bridge] = dhcp.NewServer(dhcp.Config{}, subs...)
		}
	}
	for bridge := range b.dhcp {
		if _, ok := subnets[bridge]; !ok {
			delete(b.dhcp, bridge)
		}
	}
}

// StatefulPeers returns, for each port of a stateful port group, the
// tunnel endpoints of the hosts (other than host) that bind a port of any
// stateful group it belongs to, sorted.
func StatefulPeers(s *mirror.Snapshot, host string) map[string][]netip.Addr {
	stateful := map[string]bool{}
	var zones []string
	s.Each(model.PortGroupKind, func(o model.Object) bool {
		if x := o.(*model.PortGroup); x.Stateful {
			stateful[x.ID] = true
		}
		return true
	})
	if len(stateful) == 0 {
		return nil
	}
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		if x := o.(*model.TunnelZoneMember); x.HostID == host {
			zones = append(zones, x.TunnelZoneID)
		}
		return true
	})
	hostAddr := map[string]netip.Addr{}
	groupPorts := map[string][]string{}
	portGroups := map[string][]string{}
	portHost := map[string]string{}
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		if x := o.(*model.TunnelZoneMember); x.HostID != host && slices.Contains(zones, x.TunnelZoneID) {
			hostAddr[x.HostID] = x.Address
		}
		return true
	})
	s.Each(model.PortGroupMemberKind, func(o model.Object) bool {
		if x := o.(*model.PortGroupMember); stateful[x.PortGroupID] {
			groupPorts[x.PortGroupID] = append(groupPorts[x.PortGroupID], x.PortID)
			portGroups[x.PortID] = append(portGroups[x.PortID], x.PortGroupID)
		}
		return true
	})
	for q := range portGroups {
		if o, ok := s.Get(model.PortKind, q); ok {
			portHost[q] = o.(*model.Port).HostID
		}
	}
	for _, ps := range groupPorts {
		for _, q := range ps {
			if o, ok := s.Get(model.PortKind, q); ok {
				portHost[q] = o.(*model.Port).HostID
			}
		}
	}
	out := make(map[string][]netip.Addr, len(portGroups))
	for port, groups := range portGroups {
		var addrs []netip.Addr
		for _, g := range groups {
			for _, q := range groupPorts[g] {
				if ad, ok := hostAddr[portHost[q]]; ok && !slices.Contains(addrs, ad) {
					addrs = append(addrs, ad)
				}
			}
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		out[port] = addrs
	}
	return out
}
