package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/nagare/nagare/pkg/agent/dhcp"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// view is an immutable snapshot of what the miss path needs. The control
// loop builds a new one on every topology change and swaps it in; readers
// never lock.
type view struct {
	version    uint64
	topo       *sim.Topology
	dpToPort   map[int32]string  // datapath port index → port id
	portToDP   map[string]int32  // port id → datapath port index (bound and attached here)
	portBridge map[string]string // port id → bridge id, for DHCP
	// statefulPeers maps a port of a stateful port group to the tunnel
	// endpoints of the other hosts binding ports of its groups: where the
	// state of connections through it is pushed (flowstate.go).
	statefulPeers map[string][]netip.Addr
	dhcp          map[string]*dhcpServer
	underMTU      int
}

// boundPort is a local interface attached to the datapath. Its index is the
// agent's own, stable for as long as the binding lasts: topology indexes
// shift whenever ports are added, datapath indexes must not.
type boundPort struct {
	index    int32
	iface    string
	key      uint32
	attached bool
	warned   bool
}

type dhcpServer struct {
	*dhcp.Server
}

func objKey(k *model.Kind, id string) string { return k.Name + "/" + id }

// apply is the topology watch callback: it updates the mirror, rebuilds the
// view, reconciles the datapath and invalidates the flows the change made
// stale — after the new view is in place, so that re-simulation sees it.
func (a *Agent) apply(b nsdb.Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var events []nsdb.Event
	if b.Reset {
		a.objs = make(map[string]model.Object, len(b.Objects))
		for _, o := range b.Objects {
			a.withStatus(o)
			a.objs[objKey(model.KindOf(o), o.GetMeta().ID)] = o
		}
	} else {
		for _, ev := range b.Events {
			key := objKey(ev.Kind, ev.ID)
			if ev.Type == nsdb.Delete {
				if ev.Prev == nil {
					ev.Prev = a.objs[key]
				}
				delete(a.objs, key)
			} else {
				if ev.Prev == nil {
					ev.Prev = a.objs[key]
				}
				a.withStatus(ev.Object)
				a.objs[key] = ev.Object
			}
			events = append(events, ev)
		}
	}
	a.commit(events, b.Reset)
	return nil
}

// withStatus fills a pool member's derived status from the health
// monitors' state (the object is the watch's fresh copy, ours to change).
func (a *Agent) withStatus(o model.Object) {
	if m, ok := o.(*model.PoolMember); ok {
		m.Status = a.memberStatus[m.ID]
	}
}

// applyMemberStatus is the member-status watch callback: a member whose
// health changed is replaced in the mirror by a copy with the new status,
// as if the member itself had changed, so the rebuilt topology excludes
// a down member and the member's flows (and its pool's) are invalidated.
func (a *Agent) applyMemberStatus(b nsdb.MemberStatusBatch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := map[string]string{}
	if b.Reset {
		for id, s := range a.memberStatus {
			if b.Status[id] != s {
				changed[id] = b.Status[id]
			}
		}
		for id, s := range b.Status {
			if a.memberStatus[id] != s {
				changed[id] = s
			}
		}
		a.memberStatus = b.Status
	} else {
		for id, s := range b.Status {
			if a.memberStatus[id] != s {
				changed[id] = s
			}
			if s == "" {
				delete(a.memberStatus, id)
			} else {
				a.memberStatus[id] = s
			}
		}
	}
	var events []nsdb.Event
	for id, s := range changed {
		key := objKey(model.PoolMemberKind, id)
		prev, ok := a.objs[key].(*model.PoolMember)
		if !ok {
			continue // a member not (yet) mirrored takes its status when it comes
		}
		cur := model.Clone(prev).(*model.PoolMember)
		cur.Status = s
		a.objs[key] = cur
		events = append(events, nsdb.Event{Type: nsdb.Put, Kind: model.PoolMemberKind, ID: id, Object: cur, Prev: prev})
	}
	if len(events) > 0 {
		a.log.Info("pool member health changed", "members", changed)
		a.commit(events, false)
	}
	return nil
}

// commit rebuilds the view after the mirror changed and invalidates the
// flows the events made stale (all of them after a reset). Called with
// a.mu held.
func (a *Agent) commit(events []nsdb.Event, reset bool) {
	old := a.view.Load().topo
	if err := a.rebuild(); err != nil {
		a.log.Error("topology rebuild failed; keeping the previous one", "err", err)
		return
	}
	cur := a.view.Load().topo
	var tags []uint64
	for _, ev := range events {
		tags = append(tags, InvalidationTags(old, cur, ev)...)
	}
	if reset {
		a.met.flowsInvalidated.Add(float64(a.dp.Flush()))
	} else if len(tags) > 0 {
		a.met.flowsInvalidated.Add(float64(a.dp.Invalidate(tags...)))
	}
}

// rebuild makes a new view from the mirror. Called with a.mu held.
func (a *Agent) rebuild() error {
	objs := make([]model.Object, 0, len(a.objs))
	for _, o := range a.objs {
		objs = append(objs, o)
	}
	topo, err := sim.Build(objs)
	if err != nil {
		return err
	}
	old := a.view.Load()
	v := &view{version: old.version + 1, topo: topo, portBridge: map[string]string{},
		dhcp: map[string]*dhcpServer{}, underMTU: a.cfg.UnderlayMTU}
	a.reconcilePorts()
	v.dpToPort = make(map[int32]string, len(a.bound))
	v.portToDP = make(map[string]int32, len(a.bound))
	for id, bp := range a.bound {
		if bp.attached {
			v.dpToPort[bp.index] = id
			v.portToDP[id] = bp.index
		}
	}
	for _, o := range a.objs {
		if p, ok := o.(*model.Port); ok && p.BridgeID != "" {
			v.portBridge[p.ID] = p.BridgeID
		}
	}
	a.rebuildDHCP(v)
	v.statefulPeers = a.statefulPeers()
	a.view.Store(v)
	a.reconcileTunnels()
	return nil
}

// reconcilePorts attaches the ports bound to this host whose interfaces
// exist and detaches the ones no longer bound. An interface that does not
// exist yet (the VM is still booting) is retried by reconcileLoop.
func (a *Agent) reconcilePorts() {
	want := map[string]*model.Port{}
	for _, o := range a.objs {
		if p, ok := o.(*model.Port); ok && p.HostID == a.hostID && p.InterfaceName != "" {
			want[p.ID] = p
		}
	}
	for id, bp := range a.bound {
		p, ok := want[id]
		if ok && p.InterfaceName == bp.iface && p.TunnelKey == bp.key {
			continue
		}
		if bp.attached {
			if err := a.dp.RemovePort(id); err != nil && !errors.Is(err, datapath.ErrUnknownPort) {
				a.log.Warn("detach port", "port", id, "interface", bp.iface, "err", err)
			}
			a.log.Info("port unbound", "port", id, "interface", bp.iface)
		}
		delete(a.bound, id)
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p := want[id]
		bp, ok := a.bound[id]
		if !ok {
			bp = boundPort{index: a.nextDP, iface: p.InterfaceName, key: p.TunnelKey}
			a.nextDP++
		}
		if !bp.attached {
			// The interface may not exist yet (the VM is booting): the
			// attach is retried by reconcileLoop, and logged once.
			err := a.dp.AddPort(datapath.PortConfig{PortID: id, Index: bp.index, Interface: p.InterfaceName,
				TunnelKey: p.TunnelKey, MTU: a.cfg.UnderlayMTU})
			if err != nil {
				if !bp.warned {
					a.log.Warn("cannot attach bound port yet; retrying", "port", id, "interface", p.InterfaceName, "err", err)
					bp.warned = true
				}
			} else {
				bp.attached = true
				a.log.Info("port bound", "port", id, "interface", p.InterfaceName, "tunnel_key", p.TunnelKey)
			}
		}
		a.bound[id] = bp
	}
}

// reconcileLoop retries attaching bound ports whose interfaces appeared.
func (a *Agent) reconcileLoop(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		a.mu.Lock()
		pending := false
		for _, bp := range a.bound {
			pending = pending || !bp.attached
		}
		if pending {
			if err := a.rebuild(); err != nil {
				a.log.Error("topology rebuild failed", "err", err)
			}
		}
		a.mu.Unlock()
	}
}

// reconcileTunnels points the datapath at the other members of this host's
// tunnel zones. Called with a.mu held.
func (a *Agent) reconcileTunnels() {
	var zones []string
	local := a.cfg.TunnelIP
	for _, o := range a.objs {
		if m, ok := o.(*model.TunnelZoneMember); ok && m.HostID == a.hostID {
			zones = append(zones, m.TunnelZoneID)
			if !local.IsValid() {
				local = m.Address
			}
		}
	}
	cfg := datapath.TunnelConfig{LocalIP: local, VXLANPort: a.cfg.VXLANPort}
	for _, o := range a.objs {
		switch x := o.(type) {
		case *model.TunnelZone:
			if slices.Contains(zones, x.ID) {
				cfg.VXLAN = cfg.VXLAN || x.Type == model.TunnelVXLAN
				cfg.GRE = cfg.GRE || x.Type == model.TunnelGRE
			}
		case *model.TunnelZoneMember:
			if x.HostID != a.hostID && slices.Contains(zones, x.TunnelZoneID) && !slices.Contains(cfg.Peers, x.Address) {
				cfg.Peers = append(cfg.Peers, x.Address)
			}
		}
	}
	slices.SortFunc(cfg.Peers, netip.Addr.Compare)
	if !local.IsValid() || tunnelConfigEqual(cfg, a.tun) {
		return
	}
	if err := a.dp.SetTunnels(cfg); err != nil {
		a.log.Error("configure tunnels", "local", local, "err", err)
		return
	}
	a.tun = cfg
	a.log.Info("tunnels configured", "local", local, "vxlan", cfg.VXLAN, "gre", cfg.GRE, "peers", cfg.Peers)
}

func tunnelConfigEqual(a, b datapath.TunnelConfig) bool {
	return a.LocalIP == b.LocalIP && a.VXLAN == b.VXLAN && a.GRE == b.GRE && a.VXLANPort == b.VXLANPort &&
		slices.Equal(a.Peers, b.Peers)
}

// rebuildDHCP gives every bridge with DHCP subnets a server, keeping the
// existing servers (and their leases). Called with a.mu held.
func (a *Agent) rebuildDHCP(v *view) {
	subnets := map[string][]*model.DHCPSubnet{}
	hosts := map[string][]model.DHCPHost{}
	for _, o := range a.objs {
		switch x := o.(type) {
		case *model.DHCPSubnet:
			subnets[x.BridgeID] = append(subnets[x.BridgeID], x)
		case *model.DHCPHost:
			hosts[x.DHCPSubnetID] = append(hosts[x.DHCPSubnetID], *x)
		}
	}
	overlayMTU := uint16(a.cfg.UnderlayMTU - 50) // VXLAN over IPv4: the smallest MTU a VM may meet
	for bridge, ds := range subnets {
		var subs []*dhcp.Subnet
		for _, d := range ds {
			s, err := dhcp.NewSubnet(*d, hosts[d.ID], overlayMTU)
			if err != nil {
				a.log.Warn("DHCP subnet skipped", "subnet", d.Subnet, "bridge", bridge, "err", err)
				continue
			}
			subs = append(subs, s)
		}
		srv := a.dhcp[bridge]
		if srv == nil {
			srv = &dhcpServer{dhcp.NewServer(dhcp.Config{}, subs...)}
			a.dhcp[bridge] = srv
		} else {
			srv.SetSubnets(subs...)
		}
		v.dhcp[bridge] = srv
	}
	for bridge := range a.dhcp {
		if _, ok := subnets[bridge]; !ok {
			delete(a.dhcp, bridge)
		}
	}
}

// statefulPeers computes view.statefulPeers: for each port of a stateful
// port group, the tunnel endpoints of the hosts (other than this one) that
// bind a port of any stateful group it belongs to. Called with a.mu held.
func (a *Agent) statefulPeers() map[string][]netip.Addr {
	stateful := map[string]bool{}
	var zones []string
	for _, o := range a.objs {
		switch x := o.(type) {
		case *model.PortGroup:
			if x.Stateful {
				stateful[x.ID] = true
			}
		case *model.TunnelZoneMember:
			if x.HostID == a.hostID {
				zones = append(zones, x.TunnelZoneID)
			}
		}
	}
	if len(stateful) == 0 {
		return nil
	}
	hostAddr := map[string]netip.Addr{}
	groupPorts := map[string][]string{}
	portGroups := map[string][]string{}
	portHost := map[string]string{}
	for _, o := range a.objs {
		switch x := o.(type) {
		case *model.TunnelZoneMember:
			if x.HostID != a.hostID && slices.Contains(zones, x.TunnelZoneID) {
				hostAddr[x.HostID] = x.Address
			}
		case *model.PortGroupMember:
			if stateful[x.PortGroupID] {
				groupPorts[x.PortGroupID] = append(groupPorts[x.PortGroupID], x.PortID)
				portGroups[x.PortID] = append(portGroups[x.PortID], x.PortGroupID)
			}
		case *model.Port:
			portHost[x.ID] = x.HostID
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
