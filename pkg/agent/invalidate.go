package agent

import (
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// InvalidationTags returns the tags whose flows a topology event makes stale.
// Every flow carries the tags of the objects its simulation read, so the
// object's own tag covers most changes; the extra tags cover decisions that
// depended on an object's absence:
//   - a port added to or removed from a bridge changes its flood set;
//   - a new or changed route may now match packets that had no route, or
//     take packets from a shorter prefix — so every flow through the router
//     is re-simulated (coarse, like MidoNet; a trie of seen destinations
//     would narrow it);
//   - a member added to a group changes rule matches of that group;
//   - a new rule is seen through its chain, whose rule list changes with it.
func InvalidationTags(ev nsdb.Event) []uint64 {
	tags := []uint64{sim.ObjectTag(ev.Kind, ev.ID)}
	for _, o := range []model.Object{ev.Object, ev.Prev} {
		switch x := o.(type) {
		case *model.Port:
			if x.BridgeID != "" {
				tags = append(tags, sim.FloodTag(x.BridgeID), sim.ObjectTag(model.BridgeKind, x.BridgeID))
			}
			if x.RouterID != "" {
				tags = append(tags, sim.ObjectTag(model.RouterKind, x.RouterID), sim.NoRouteTag(x.RouterID))
			}
			if x.PeerID != "" {
				tags = append(tags, sim.ObjectTag(model.PortKind, x.PeerID))
			}
		case *model.Route:
			tags = append(tags, sim.NoRouteTag(x.RouterID), sim.ObjectTag(model.RouterKind, x.RouterID))
		case *model.Rule:
			tags = append(tags, sim.ObjectTag(model.ChainKind, x.ChainID))
		case *model.PortGroupMember:
			tags = append(tags, sim.ObjectTag(model.PortGroupKind, x.PortGroupID), sim.ObjectTag(model.PortKind, x.PortID))
		case *model.IPAddrGroupAddr:
			tags = append(tags, sim.ObjectTag(model.IPAddrGroupKind, x.IPAddrGroupID))
		case *model.TunnelZoneMember:
			tags = append(tags, sim.ObjectTag(model.HostKind, x.HostID), sim.ObjectTag(model.TunnelZoneKind, x.TunnelZoneID))
		case *model.DHCPHost:
			tags = append(tags, sim.ObjectTag(model.DHCPSubnetKind, x.DHCPSubnetID))
		}
	}
	return tags
}
