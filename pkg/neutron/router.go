package neutron

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// RouterRequest is what a create or update of a router asks.
type RouterRequest struct {
	StdRequest
	AdminStateUp *bool
	// Gateway is external_gateway_info: nil when not given; one without a
	// network (null or {}) removes the gateway.
	Gateway *GatewayRequest
	// Routes are the static routes (update only); a nil slice when null.
	Routes *[]Route
}

// GatewayRequest is a requested external gateway.
type GatewayRequest struct {
	NetworkID  string
	EnableSNAT *bool
	FixedIPs   *[]FixedIPRequest // external_fixed_ips
}

const maxRoutes = 30 // Neutron's max_routes

func (r *RouterRequest) apply(x *Router) {
	r.StdRequest.apply(&x.Std)
	set(&x.AdminStateUp, r.AdminStateUp)
}

// CreateRouter creates a router, with its gateway when external_gateway_info
// names an external network.
func (s *Service) CreateRouter(ctx context.Context, c *identity.Context, req RouterRequest) (*Router, error) {
	cr, err := s.PrepareRouter(c, req)
	return created[*Router](ctx, s, cr, err)
}

// PrepareRouter checks a router's create.
func (s *Service) PrepareRouter(c *identity.Context, req RouterRequest) (*Creation, error) {
	st, err := s.creating(c, &req.StdRequest, "create_router")
	if err != nil {
		return nil, err
	}
	r := &Router{Std: st, AdminStateUp: true}
	req.apply(r)
	return creation(st.ProjectID, "router", func(tx *nsdb.Tx) (model.Object, error) {
		x := *r
		x.ID = newID()
		if _, err := tx.Create(&x); err != nil {
			return nil, err
		}
		if err := s.setGateway(tx, c, &x, req.Gateway); err != nil {
			return nil, err
		}
		if err := s.translateRouter(tx, &x); err != nil {
			return nil, err
		}
		return &x, tx.Put(&x)
	}), nil
}

// setGateway makes the router's gateway what the request says: a new
// gateway port on the external network, or none.
func (s *Service) setGateway(tx *nsdb.Tx, c *identity.Context, r *Router, g *GatewayRequest) error {
	if g == nil {
		return nil
	}
	if g.NetworkID == r.GatewayNetworkID && g.NetworkID != "" {
		// Same network: only SNAT or the addresses change.
		set(&r.EnableSNAT, g.EnableSNAT)
		if g.FixedIPs != nil && r.GatewayPortID != "" {
			o, err := tx.Get(PortKind, r.GatewayPortID)
			if err != nil {
				return err
			}
			p := o.(*Port)
			if !externalIPChange(p.FixedIPs, *g.FixedIPs) {
				return nil
			}
			if err := s.writePort(tx, c, p, PortRequest{FixedIPs: g.FixedIPs}, false); err != nil {
				return gatewayAddressError(err, g.NetworkID)
			}
		}
		return nil
	}
	var n *Network
	if g.NetworkID != "" {
		// The new network is checked before the old gateway's users, as
		// Neutron's _update_router_gw_info does.
		var err error
		if n, err = get[*Network](tx, c, g.NetworkID); err != nil {
			return err
		}
		if !n.External {
			return BadResourceRequest("router", "Network %s is not an external network", n.ID)
		}
	}
	if r.GatewayNetworkID != "" {
		fips, err := tx.List(FloatingIPKind, "router_id", r.ID)
		if err != nil {
			return err
		}
		if len(fips) > 0 {
			return inUse("RouterExternalGatewayInUseByFloatingIp", "Gateway cannot be updated for router %s, since a gateway to external network %s is required by one or more floating IPs.", r.ID, r.GatewayNetworkID)
		}
		if err := vpnRouterInUse(tx, r.ID); err != nil {
			return err
		}
		if r.GatewayPortID != "" {
			o, err := tx.Get(PortKind, r.GatewayPortID)
			if err == nil {
				if err := s.removePort(tx, o.(*Port)); err != nil {
					return err
				}
			} else if !errors.Is(err, model.ErrNotFound) {
				return err
			}
		}
		r.GatewayNetworkID, r.GatewayPortID, r.EnableSNAT = "", "", false
	}
	if n == nil {
		return s.promoteGateway(tx, c, r)
	}
	p := &Port{Std: s.newStd(""), NetworkID: n.ID, DeviceOwner: OwnerRouterGateway, DeviceID: r.ID, RouterID: r.ID,
		AdminStateUp: true, VNICType: "normal"}
	p.ID = newID()
	if err := s.writePort(tx, c, p, PortRequest{FixedIPs: g.FixedIPs}, true); err != nil {
		return gatewayAddressError(err, n.ID)
	}
	r.GatewayNetworkID, r.GatewayPortID = n.ID, p.ID
	r.EnableSNAT = g.EnableSNAT == nil || *g.EnableSNAT
	return nil
}

// externalIPChange is Neutron's _check_for_external_ip_change: requested
// external_fixed_ips change the gateway port only when they name another
// set of subnets or of addresses (entries without an address name no
// address, so asking again for a subnet the gateway is on changes
// nothing).
func externalIPChange(have []FixedIP, want []FixedIPRequest) bool {
	if len(want) == 0 {
		return false
	}
	subnets, newSubnets := map[string]bool{}, map[string]bool{}
	addrs, newAddrs := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, f := range have {
		subnets[f.SubnetID], addrs[f.IPAddress] = true, true
	}
	for _, f := range want {
		if f.SubnetID != "" {
			newSubnets[f.SubnetID] = true
		}
		if f.IPAddress.IsValid() {
			newAddrs[f.IPAddress] = true
		}
	}
	return !maps.Equal(subnets, newSubnets) || !maps.Equal(addrs, newAddrs)
}

// gatewayAddressError words an exhausted external network as Neutron does.
func gatewayAddressError(err error, netID string) error {
	var e *Error
	if errors.As(err, &e) && e.Type == "IpAddressGenerationFailure" {
		return NewError(BadRequest, "ExternalIpAddressExhausted", "Unable to find any IP address on external network %s.", netID)
	}
	return err
}

// interfaces are the subnets a router is connected to.
func interfaces(tx *nsdb.Tx, ports []*Port) ([]Interface, map[string]*Subnet, error) {
	var out []Interface
	subs := map[string]*Subnet{}
	for _, p := range ports {
		for _, f := range p.FixedIPs {
			o, err := tx.Get(SubnetKind, f.SubnetID)
			if err != nil {
				return nil, nil, err
			}
			sub := o.(*Subnet)
			subs[sub.ID] = sub
			out = append(out, Interface{RouterPortID: routerPortID(p.ID), Prefix: sub.CIDR})
		}
	}
	return out, subs, nil
}

// translateRouter rewrites a router's native form from its gateway,
// interfaces, floating IPs and port forwardings.
func (s *Service) translateRouter(tx *nsdb.Tx, r *Router) error {
	in := RouterInput{Router: r}
	ports, err := listOf[*Port](tx, "router_id", r.ID)
	if err != nil {
		return err
	}
	if in.Interfaces, _, err = interfaces(tx, ports); err != nil {
		return err
	}
	for _, p := range ports {
		if p.ID != r.GatewayPortID {
			continue
		}
		in.GatewayPortID = routerPortID(p.ID)
		for _, f := range p.FixedIPs {
			if f.IPAddress.Is4() {
				in.GatewayIP = f.IPAddress
				break
			}
		}
	}
	fips, err := tx.List(FloatingIPKind, "router_id", r.ID)
	if err != nil {
		return err
	}
	for _, o := range fips {
		f := o.(*FloatingIP)
		in.FloatingIPs = append(in.FloatingIPs, f)
		pfs, err := tx.List(PortForwardingKind, "floatingip_id", f.ID)
		if err != nil {
			return err
		}
		for _, po := range pfs {
			in.PortForwardings = append(in.PortForwardings, PortForwardingNAT{po.(*PortForwarding), f.FloatingIPAddress})
		}
	}
	if err := apply(tx, &r.Std, TranslateRouter(in)); err != nil {
		return err
	}
	// What BGP speakers announce follows the router's interfaces,
	// gateway and floating IPs.
	return s.syncSpeakers(tx)
}

// retranslateRouter re-translates a router another object changed.
func (s *Service) retranslateRouter(tx *nsdb.Tx, id string) error {
	o, err := tx.Get(RouterKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r := o.(*Router)
	if err := s.translateRouter(tx, r); err != nil {
		return err
	}
	return tx.Put(r)
}

// UpdateRouter changes a router's attributes, gateway and static routes.
func (s *Service) UpdateRouter(ctx context.Context, c *identity.Context, id string, req RouterRequest, ifRev int64) (*Router, error) {
	return modify(ctx, s, c, id, "update_router", ifRev, func(tx *nsdb.Tx, r *Router) error {
		req.apply(r)
		if err := s.setGateway(tx, c, r, req.Gateway); err != nil {
			return err
		}
		if req.Routes != nil {
			if err := s.checkRoutes(tx, r, *req.Routes); err != nil {
				return err
			}
			r.Routes = *req.Routes
		}
		s.touch(&r.Std)
		if err := s.translateRouter(tx, r); err != nil {
			return err
		}
		return tx.Put(r)
	})
}

// AddExtraRoutes adds static routes to a router's (extraroute-atomic): the
// union, each route once.
func (s *Service) AddExtraRoutes(ctx context.Context, c *identity.Context, id string, routes []Route) (*Router, error) {
	return s.changeRoutes(ctx, c, id, "add_extraroutes", func(have []Route) []Route {
		out := slices.Clone(have)
		for _, rt := range routes {
			if !slices.Contains(out, rt) {
				out = append(out, rt)
			}
		}
		return out
	})
}

// RemoveExtraRoutes removes static routes from a router's; routes it does
// not have are no error.
func (s *Service) RemoveExtraRoutes(ctx context.Context, c *identity.Context, id string, routes []Route) (*Router, error) {
	return s.changeRoutes(ctx, c, id, "remove_extraroutes", func(have []Route) []Route {
		return slices.DeleteFunc(slices.Clone(have), func(rt Route) bool { return slices.Contains(routes, rt) })
	})
}

// changeRoutes replaces a router's routes by what change makes of them,
// checked as an update of routes is.
func (s *Service) changeRoutes(ctx context.Context, c *identity.Context, id, action string, change func([]Route) []Route) (*Router, error) {
	return modify(ctx, s, c, id, action, 0, func(tx *nsdb.Tx, r *Router) error {
		next := change(r.Routes)
		if err := s.checkRoutes(tx, r, next); err != nil {
			return err
		}
		r.Routes = next
		s.touch(&r.Std)
		if err := s.translateRouter(tx, r); err != nil {
			return err
		}
		return tx.Put(r)
	})
}

// checkRoutes checks static routes as the extraroute extension does: each
// next hop on a subnet the router is connected to, and not one of the
// router's own addresses.
func (s *Service) checkRoutes(tx *nsdb.Tx, r *Router, routes []Route) error {
	if len(routes) > maxRoutes {
		return NewError(BadRequest, "RoutesExhausted", "Unable to complete operation for %s. The number of routes exceeds the maximum %d.", r.ID, maxRoutes)
	}
	ports, err := listOf[*Port](tx, "router_id", r.ID)
	if err != nil {
		return err
	}
	itfs, _, err := interfaces(tx, ports)
	if err != nil {
		return err
	}
	var own []netip.Addr
	for _, p := range ports {
		for _, f := range p.FixedIPs {
			own = append(own, f.IPAddress)
		}
	}
	for _, rt := range routes {
		text := mustJSON([]map[string]string{{"destination": rt.Destination.String(), "nexthop": rt.NextHop.String()}})
		if slices.Contains(own, rt.NextHop) {
			return NewError(BadRequest, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is used by router", text)
		}
		if !slices.ContainsFunc(itfs, func(i Interface) bool { return i.Prefix.Contains(rt.NextHop) }) {
			return NewError(BadRequest, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is not connected with router", text)
		}
	}
	return nil
}

// DeleteRouter deletes a router without interfaces, with its gateway.
func (s *Service) DeleteRouter(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_router", ifRev, func(tx *nsdb.Tx, r *Router) error {
		ports, err := listOf[*Port](tx, "router_id", id)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if p.DeviceOwner == OwnerRouterInterface {
				return inUse("RouterInUse", "Router %s still has ports", id)
			}
		}
		if err := s.updateGateways(tx, c, r, nil); err != nil {
			return err
		}
		if err := apply(tx, &r.Std, nil); err != nil {
			return err
		}
		return tx.Delete(RouterKind, id)
	})
	return err
}
