package ports

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/model"
)

// syncTunnels points the datapath at the other members of this host's
// tunnel zones. p.mu is held.
func (p *Ports) syncTunnels(s *mirror.Snapshot) {
	cfg := TunnelConfig(s, p.cfg.HostID, p.cfg.TunnelIP, p.cfg.VXLANPort)
	if !cfg.LocalIP.IsValid() || tunnelConfigEqual(cfg, p.tun) {
		return
	}
	if err := p.cfg.Datapath.SetTunnels(cfg); err != nil {
		p.cfg.Log.Error("configure tunnels", "local", cfg.LocalIP, "err", err)
		return
	}
	p.tun = cfg
	p.cfg.Log.Info("tunnels configured", "local", cfg.LocalIP, "vxlan", cfg.VXLAN, "gre", cfg.GRE, "peers", cfg.Peers)
}

// TunnelConfig is host's tunnel endpoint in a topology: local (or, if
// invalid, its tunnel-zone member address), the encapsulations of its
// zones, and the other members of those zones that are reachable, sorted.
func TunnelConfig(s *mirror.Snapshot, host string, local netip.Addr, vxlanPort uint16) datapath.TunnelConfig {
	var zones []string
	var mine []*model.TunnelZoneMember // this host's memberships, by id: the first one's address is the default
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		if m := o.(*model.TunnelZoneMember); m.HostID == host {
			zones = append(zones, m.TunnelZoneID)
			mine = append(mine, m)
		}
		return true
	})
	if !local.IsValid() && len(mine) > 0 {
		local = slices.MinFunc(mine, func(a, b *model.TunnelZoneMember) int { return strings.Compare(a.ID, b.ID) }).Address
	}
	cfg := datapath.TunnelConfig{LocalIP: local, VXLANPort: vxlanPort}
	s.Each(model.TunnelZoneKind, func(o model.Object) bool {
		if x := o.(*model.TunnelZone); slices.Contains(zones, x.ID) {
			cfg.VXLAN = cfg.VXLAN || x.Type == model.TunnelVXLAN
			cfg.GRE = cfg.GRE || x.Type == model.TunnelGRE
		}
		return true
	})
	peers := map[netip.Addr]bool{}
	s.Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
		// A dead (or revoked) host is no peer: nothing is sent to it,
		// nothing it sends is accepted.
		if x := o.(*model.TunnelZoneMember); x.HostID != host && !s.Unreachable[x.HostID] && slices.Contains(zones, x.TunnelZoneID) {
			peers[x.Address] = true
		}
		return true
	})
	for a := range peers {
		cfg.Peers = append(cfg.Peers, a)
	}
	slices.SortFunc(cfg.Peers, netip.Addr.Compare)
	return cfg
}

func tunnelConfigEqual(a, b datapath.TunnelConfig) bool {
	return a.LocalIP == b.LocalIP && a.VXLAN == b.VXLAN && a.GRE == b.GRE && a.VXLANPort == b.VXLANPort &&
		slices.Equal(a.Peers, b.Peers)
}
