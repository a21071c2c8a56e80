package ports

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/model"
)

// syncTunnels points the datapath at the other members of this host's
// tunnel zones. Every host's registration, death and return changes every
// other host's peers, so with N hosts a full scan of the memberships on
// each was O(N) in each of N agents for each of N hosts: after the first
// snapshot, only the memberships a snapshot changed are looked at. p.mu is
// held.
func (p *Ports) syncTunnels(s *mirror.Snapshot, full bool) {
	if full || p.peers == nil || !p.peers.apply(s) {
		p.peers = newPeerSet(s, p.cfg.HostID, p.cfg.TunnelIP, p.cfg.VXLANPort)
	}
	cfg := p.peers.config()
	if !cfg.LocalIP.IsValid() || tunnelConfigEqual(cfg, p.tun) {
		return
	}
	if err := p.cfg.Datapath.SetTunnels(cfg); err != nil {
		p.cfg.Log.Error("configure tunnels", "local", cfg.LocalIP, "err", err)
		return
	}
	p.tun = cfg
	p.cfg.Log.Info("tunnels configured", "local", cfg.LocalIP, "vxlan", cfg.VXLAN, "gre", cfg.GRE, "peers", len(cfg.Peers))
	p.cfg.Log.Debug("tunnel peers", "peers", cfg.Peers)
}

// TunnelConfig is host's tunnel endpoint in a topology: local (or, if
// invalid, its tunnel-zone member address), the encapsulations of its
// zones, and the other members of those zones that are reachable, sorted.
func TunnelConfig(s *mirror.Snapshot, host string, local netip.Addr, vxlanPort uint16) datapath.TunnelConfig {
	return newPeerSet(s, host, local, vxlanPort).config()
}

// peerSet is a host's tunnel endpoint and its peers, kept up to date
// membership by membership.
type peerSet struct {
	host        string
	base        datapath.TunnelConfig // without Peers
	zones       []string              // this host's tunnel zones
	unreachable map[string]bool       // the snapshot's, replaced and never changed in place
	hostOf      map[string]string     // other hosts' memberships of this host's zones: id → host
	byHost      map[string][]string   // the same: host → ids
	of          map[string]netip.Addr // membership id → the peer address it gives (its host reachable)
	refs        map[netip.Addr]int    // peer address → memberships giving it
	sorted      []netip.Addr          // refs' keys, sorted
}

// newPeerSet scans the snapshot's memberships and zones.
func newPeerSet(s *mirror.Snapshot, host string, local netip.Addr, vxlanPort uint16) *peerSet {
	ps := &peerSet{host: host, unreachable: s.Unreachable, hostOf: map[string]string{}, byHost: map[string][]string{},
		of: map[string]netip.Addr{}, refs: map[netip.Addr]int{}}
	var mine []*model.TunnelZoneMember // this host's memberships, by id: the first one's address is the default
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		if m := o.(*model.TunnelZoneMember); m.HostID == host {
			ps.zones = append(ps.zones, m.TunnelZoneID)
			mine = append(mine, m)
		}
		return true
	})
	if !local.IsValid() && len(mine) > 0 {
		local = slices.MinFunc(mine, func(a, b *model.TunnelZoneMember) int { return strings.Compare(a.ID, b.ID) }).Address
	}
	ps.base = datapath.TunnelConfig{LocalIP: local, VXLANPort: vxlanPort}
	s.Each(model.TunnelZoneKind, func(o model.Object) bool {
		if x := o.(*model.TunnelZone); slices.Contains(ps.zones, x.ID) {
			ps.base.VXLAN = ps.base.VXLAN || x.Type == model.TunnelVXLAN
			ps.base.GRE = ps.base.GRE || x.Type == model.TunnelGRE
		}
		return true
	})
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		ps.add(o.(*model.TunnelZoneMember))
		return true
	})
	return ps
}

// apply follows the memberships the snapshot changed, and those of the
// hosts that died or came back. It reports false, changing nothing, when
// the snapshot changed this host's own memberships or a zone: the caller
// scans again.
func (ps *peerSet) apply(s *mirror.Snapshot) bool {
	var ids []string
	for _, ev := range s.Changes {
		switch ev.Kind {
		case model.TunnelZoneKind:
			return false
		case model.TunnelZoneMemberKind:
			for _, o := range []model.Object{ev.Object, ev.Prev} {
				if m, ok := o.(*model.TunnelZoneMember); ok && m != nil && m.HostID == ps.host {
					return false
				}
			}
			ids = append(ids, ev.ID)
		}
	}
	// A host's death or return comes with its memberships among the
	// changes (mirror.ApplyLiveness), but a host created or deleted
	// changes Unreachable alone: look at its memberships too.
	if !maps.Equal(ps.unreachable, s.Unreachable) {
		for _, m := range []map[string]bool{ps.unreachable, s.Unreachable} {
			for h := range m {
				if ps.unreachable[h] != s.Unreachable[h] {
					ids = append(ids, ps.byHost[h]...)
				}
			}
		}
		ps.unreachable = s.Unreachable
	}
	for _, id := range ids {
		ps.remove(id)
		if o, ok := s.Get(model.TunnelZoneMemberKind, id); ok {
			ps.add(o.(*model.TunnelZoneMember))
		}
	}
	return true
}

// add follows m if it is another host's membership of one of this host's
// zones, and counts its address as a peer if that host is reachable.
func (ps *peerSet) add(m *model.TunnelZoneMember) {
	if m.HostID == ps.host || !slices.Contains(ps.zones, m.TunnelZoneID) {
		return
	}
	ps.remove(m.ID)
	ps.hostOf[m.ID] = m.HostID
	ps.byHost[m.HostID] = append(ps.byHost[m.HostID], m.ID)
	// A dead (or revoked) host is no peer: nothing is sent to it, nothing
	// it sends is accepted.
	if ps.unreachable[m.HostID] {
		return
	}
	ps.of[m.ID] = m.Address
	if ps.refs[m.Address]++; ps.refs[m.Address] == 1 {
		i, _ := slices.BinarySearchFunc(ps.sorted, m.Address, netip.Addr.Compare)
		ps.sorted = slices.Insert(ps.sorted, i, m.Address)
	}
}

// remove forgets membership id and the peer address it gave, if any.
func (ps *peerSet) remove(id string) {
	if h, ok := ps.hostOf[id]; ok {
		delete(ps.hostOf, id)
		if rest := slices.DeleteFunc(ps.byHost[h], func(x string) bool { return x == id }); len(rest) > 0 {
			ps.byHost[h] = rest
		} else {
			delete(ps.byHost, h)
		}
	}
	a, ok := ps.of[id]
	if !ok {
		return
	}
	delete(ps.of, id)
	if ps.refs[a]--; ps.refs[a] == 0 {
		delete(ps.refs, a)
		if i, found := slices.BinarySearchFunc(ps.sorted, a, netip.Addr.Compare); found {
			ps.sorted = slices.Delete(ps.sorted, i, i+1)
		}
	}
}

// config is the endpoint with a copy of the peers.
func (ps *peerSet) config() datapath.TunnelConfig {
	cfg := ps.base
	if len(ps.sorted) > 0 {
		cfg.Peers = slices.Clone(ps.sorted)
	}
	return cfg
}

func tunnelConfigEqual(a, b datapath.TunnelConfig) bool {
	return a.LocalIP == b.LocalIP && a.VXLAN == b.VXLAN && a.GRE == b.GRE && a.VXLANPort == b.VXLANPort &&
		slices.Equal(a.Peers, b.Peers)
}
