package ports

import (
	"net/netip"
	"slices"

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
	for _, o := range s.Objects {
		if m, ok := o.(*model.TunnelZoneMember); ok && m.HostID == host {
			zones = append(zones, m.TunnelZoneID)
			if !local.IsValid() {
				local = m.Address
			}
		}
	}
	cfg := datapath.TunnelConfig{LocalIP: local, VXLANPort: vxlanPort}
	for _, o := range s.Objects {
		switch x := o.(type) {
		case *model.TunnelZone:
			if slices.Contains(zones, x.ID) {
				cfg.VXLAN = cfg.VXLAN || x.Type == model.TunnelVXLAN
				cfg.GRE = cfg.GRE || x.Type == model.TunnelGRE
			}
		case *model.TunnelZoneMember:
			// A dead (or revoked) host is no peer: nothing is sent to it,
			// nothing it sends is accepted.
			if x.HostID != host && !s.Unreachable[x.HostID] && slices.Contains(zones, x.TunnelZoneID) && !slices.Contains(cfg.Peers, x.Address) {
				cfg.Peers = append(cfg.Peers, x.Address)
			}
		}
	}
	slices.SortFunc(cfg.Peers, netip.Addr.Compare)
	return cfg
}

func tunnelConfigEqual(a, b datapath.TunnelConfig) bool {
	return a.LocalIP == b.LocalIP && a.VXLAN == b.VXLAN && a.GRE == b.GRE && a.VXLANPort == b.VXLANPort &&
		slices.Equal(a.Peers, b.Peers)
}
