package neutron

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
)

// External gateway multihoming (external-gateway-multihoming): a router
// may have several gateway ports. The first is the compatibility gateway
// that external_gateway_info shows and SNAT and floating IPs use; the
// others ("extra" gateways, Port.ExtraGateway) connect the router to more
// external networks, with the routes to their subnets but no default
// route (Neutron's enable_default_route_ecmp is off by default). Matching
// follows Neutron's l3_extra_gws_db: a gateway is named by its network
// and, where several are on one network, by its addresses.

// GatewayPorts are a router's gateway ports, the compatibility one first.
func (r *Reader) GatewayPorts(rt *Router) []*Port {
	ports, err := gatewayPorts(r.tx, rt)
	r.failed(err)
	return ports
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func gatewayPorts(tx *nsdb.Tx, r *Router) ([]*Port, error) {
	ports, err := listOf[*Port](tx, "router_id", r.ID)
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(ports, func(p *Port) bool { return p.DeviceOwner != OwnerRouterGateway })
	slices.SortStableFunc(out, func(a, b *Port) int { return boolRank(a.ID != r.GatewayPortID) - boolRank(b.ID != r.GatewayPortID) })
	return out, nil
}

func unableTo(typ, what, routerID, reason string) *Error {
	return NewError(BadRequest, typ, "Unable to %s a router %s: %s", what, routerID, reason)
}

// AddExternalGateways adds gateways: the first becomes the compatibility
// gateway if the router has none.
func (s *Service) AddExternalGateways(ctx context.Context, c *identity.Context, id string, gws []GatewayRequest) (*Router, error) {
	return modify(ctx, s, c, id, "add_external_gateways", 0, func(tx *nsdb.Tx, r *Router) error {
		have, err := gatewayPorts(tx, r)
		if err != nil {
			return err
		}
		rest := gws
		if len(have) == 0 && len(gws) > 0 {
			if err := s.setGateway(tx, c, r, &gws[0]); err != nil {
				return err
			}
			rest = gws[1:]
		}
		for _, g := range rest {
			if err := s.addExtraGateway(tx, c, r, g); err != nil {
				return err
			}
		}
		return s.rewriteRouter(tx, r)
	})
}

func (s *Service) rewriteRouter(tx *nsdb.Tx, r *Router) error {
	s.touch(&r.Std)
	if err := s.translateRouter(tx, r); err != nil {
		return err
	}
	return tx.Put(r)
}

// addExtraGateway creates an extra gateway port on an external network.
func (s *Service) addExtraGateway(tx *nsdb.Tx, c *identity.Context, r *Router, g GatewayRequest) error {
	if r.GatewayPortID == "" {
		return unableTo("UnableToAddExtraGateways", "add extra gateways to", r.ID, "router does not have a compatibility gateway port")
	}
	n, err := get[*Network](tx, c, g.NetworkID)
	if err != nil {
		return err
	}
	if !n.External {
		return BadResourceRequest("router", "Network %s is not an external network", n.ID)
	}
	p := &Port{Std: s.newStd(""), NetworkID: n.ID, DeviceOwner: OwnerRouterGateway, DeviceID: r.ID, RouterID: r.ID,
		AdminStateUp: true, VNICType: "normal", ExtraGateway: true}
	p.ID = newID()
	if err := s.writePort(tx, c, p, PortRequest{FixedIPs: g.FixedIPs}, true); err != nil {
		return gatewayAddressError(err, n.ID)
	}
	return nil
}

// matchGateways is _match_requested_gateway_ports: the ports the
// requests name fully (all addresses) and partly (some address, or the
// only port on the network), and the requests naming no port.
func matchGateways(routerID string, ports []*Port, gws []GatewayRequest, fatal bool) (full, part map[string]GatewayRequest, none []GatewayRequest, err error) {
	full, part = map[string]GatewayRequest{}, map[string]GatewayRequest{}
	for _, g := range gws {
		var on []*Port
		for _, p := range ports {
			if p.NetworkID == g.NetworkID {
				on = append(on, p)
			}
		}
		if len(on) == 0 {
			none = append(none, g)
			continue
		}
		if g.FixedIPs == nil || len(*g.FixedIPs) == 0 {
			if len(on) == 1 {
				part[on[0].ID] = g
				continue
			}
			return nil, nil, nil, unableTo("UnableToMatchGateways", "match a requested gateway port to", routerID,
				fmt.Sprintf("multiple gateway ports are attached to the same network %s but external_fixed_ips parameter is not specified in the request", g.NetworkID))
		}
		want := map[netip.Addr]bool{}
		for _, f := range *g.FixedIPs {
			want[f.IPAddress] = true
		}
		matched := false
		for _, p := range on {
			have, common := 0, 0
			for _, f := range p.FixedIPs {
				have++
				if want[f.IPAddress] {
					common++
				}
			}
			if common > 0 {
				part[p.ID] = g
				if common == have && have == len(want) {
					full[p.ID] = g
				}
				matched = true
				break
			}
		}
		if !matched {
			if fatal {
				var ips []string
				for a := range want {
					ips = append(ips, a.String())
				}
				slices.Sort(ips)
				return nil, nil, nil, unableTo("UnableToMatchGateways", "match a requested gateway port to", routerID,
					fmt.Sprintf("could not match a gateway port attached to network %s based on the specified fixed IPs [%s]", g.NetworkID, strings.Join(ips, ", ")))
			}
			none = append(none, g)
		}
	}
	return full, part, none, nil
}

// RemoveExternalGateways removes the gateways the requests name; without
// the compatibility gateway the next one becomes it.
func (s *Service) RemoveExternalGateways(ctx context.Context, c *identity.Context, id string, gws []GatewayRequest) (*Router, error) {
	return modify(ctx, s, c, id, "remove_external_gateways", 0, func(tx *nsdb.Tx, r *Router) error {
		if len(gws) == 0 {
			return nil
		}
		if err := s.removeGateways(tx, c, r, gws); err != nil {
			return err
		}
		return s.rewriteRouter(tx, r)
	})
}

func (s *Service) removeGateways(tx *nsdb.Tx, c *identity.Context, r *Router, gws []GatewayRequest) error {
	ports, err := gatewayPorts(tx, r)
	if err != nil {
		return err
	}
	if len(ports) == 0 {
		return unableTo("UnableToRemoveGateways", "remove extra gateways from", r.ID, "the router does not have any external gateways")
	}
	_, part, none, err := matchGateways(r.ID, ports, gws, true)
	if err != nil {
		return err
	}
	if len(none) > 0 {
		var nets []string
		for _, g := range none {
			nets = append(nets, g.NetworkID)
		}
		return unableTo("UnableToMatchGateways", "match a requested gateway port to", r.ID,
			"could not match gateway port IDs for gateway info with networks "+strings.Join(nets, ", "))
	}
	_, compat := part[r.GatewayPortID]
	for _, p := range ports {
		if _, ok := part[p.ID]; ok && p.ID != r.GatewayPortID {
			if err := s.removeExtraGateway(tx, r, p, ports); err != nil {
				return err
			}
		}
	}
	if compat {
		return s.setGateway(tx, c, r, &GatewayRequest{})
	}
	return nil
}

// removeExtraGateway deletes an extra gateway port, unless floating IPs
// need the last gateway to its network.
func (s *Service) removeExtraGateway(tx *nsdb.Tx, r *Router, p *Port, ports []*Port) error {
	same := 0
	for _, q := range ports {
		if q.NetworkID == p.NetworkID {
			same++
		}
	}
	fips, err := listOf[*FloatingIP](tx, "router_id", r.ID)
	if err != nil {
		return err
	}
	if same < 2 && slices.ContainsFunc(fips, func(f *FloatingIP) bool { return f.FloatingNetworkID == p.NetworkID }) {
		return inUse("RouterExternalGatewayInUseByFloatingIp", "Gateway cannot be updated for router %s, since a gateway to external network %s is required by one or more floating IPs.", r.ID, p.NetworkID)
	}
	return s.removePort(tx, p)
}

// promoteGateway makes the first remaining gateway port the
// compatibility gateway of a router that lost it.
func (s *Service) promoteGateway(tx *nsdb.Tx, c *identity.Context, r *Router) error {
	if r.GatewayPortID != "" {
		return nil
	}
	ports, err := gatewayPorts(tx, r)
	if err != nil || len(ports) == 0 {
		return err
	}
	p := ports[0]
	r.GatewayPortID, r.GatewayNetworkID, r.EnableSNAT = p.ID, p.NetworkID, true
	p.ExtraGateway = false
	return s.writePort(tx, c, p, PortRequest{}, false)
}

// UpdateExternalGateways makes the router's gateways the requested ones:
// the first is the compatibility gateway (an extra gateway it names
// becomes it), extra gateways named keep their ports (with new
// addresses), the others go, and new ones are added.
func (s *Service) UpdateExternalGateways(ctx context.Context, c *identity.Context, id string, gws []GatewayRequest) (*Router, error) {
	return modify(ctx, s, c, id, "update_external_gateways", 0, func(tx *nsdb.Tx, r *Router) error {
		if err := s.updateGateways(tx, c, r, gws); err != nil {
			return err
		}
		return s.rewriteRouter(tx, r)
	})
}

func (s *Service) updateGateways(tx *nsdb.Tx, c *identity.Context, r *Router, gws []GatewayRequest) error {
	ports, err := gatewayPorts(tx, r)
	if err != nil {
		return err
	}
	if len(gws) == 0 {
		for _, p := range ports[min(1, len(ports)):] {
			if err := s.removeExtraGateway(tx, r, p, ports); err != nil {
				return err
			}
		}
		return s.setGateway(tx, c, r, &GatewayRequest{})
	}
	for _, g := range gws {
		if _, err := get[*Network](tx, c, g.NetworkID); err != nil {
			return err
		}
	}
	_, part, _, err := matchGateways(r.ID, ports, gws[:1], false)
	if err != nil {
		return err
	}
	for pid := range part {
		if pid != r.GatewayPortID {
			// An extra gateway becomes the compatibility one.
			if err := s.swapCompat(tx, c, r, ports, pid); err != nil {
				return err
			}
		}
	}
	if err := s.setGateway(tx, c, r, &gws[0]); err != nil {
		return err
	}
	if ports, err = gatewayPorts(tx, r); err != nil {
		return err
	}
	full, part, none, err := matchGateways(r.ID, ports, gws[1:], false)
	if err != nil {
		return err
	}
	for _, p := range ports {
		g, ok := part[p.ID]
		if ok && g.FixedIPs != nil && len(*g.FixedIPs) > 0 && p.ID != r.GatewayPortID {
			if err := s.writePort(tx, c, p, PortRequest{FixedIPs: g.FixedIPs}, false); err != nil {
				return gatewayAddressError(err, p.NetworkID)
			}
		}
	}
	for _, p := range ports {
		_, f := full[p.ID]
		_, pm := part[p.ID]
		if !f && !pm && p.ID != r.GatewayPortID {
			if err := s.removeExtraGateway(tx, r, p, ports); err != nil {
				return err
			}
		}
	}
	for _, g := range none {
		if err := s.addExtraGateway(tx, c, r, g); err != nil {
			return err
		}
	}
	return nil
}

// swapCompat makes port id the compatibility gateway and the old one an
// extra gateway.
func (s *Service) swapCompat(tx *nsdb.Tx, c *identity.Context, r *Router, ports []*Port, id string) error {
	old := r.GatewayPortID
	for _, p := range ports {
		switch p.ID {
		case old:
			p.ExtraGateway = true
		case id:
			p.ExtraGateway = false
			r.GatewayPortID, r.GatewayNetworkID = p.ID, p.NetworkID
		default:
			continue
		}
		if err := s.writePort(tx, c, p, PortRequest{}, false); err != nil {
			return err
		}
	}
	return nil
}
