package neutron

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

var routerSpec = std.with(spec{
	"name":                    {post: true, put: true},
	"admin_state_up":          {post: true, put: true},
	"status":                  {},
	"external_gateway_info":   {post: true, put: true},
	"routes":                  {put: true},
	"distributed":             {post: true, put: true, adminSet: true, adminView: true},
	"ha":                      {post: true, put: true, adminSet: true, adminView: true},
	"flavor_id":               {post: true},
	"availability_zone_hints": {post: true},
	"availability_zones":      {},
})

const maxRoutes = 30 // Neutron's max_routes

// gatewayReq is a parsed external_gateway_info.
type gatewayReq struct {
	set       bool // the attribute was given
	networkID string
	snat      *bool
	fixed     []fixedReq
	hasFixed  bool
}

func parseGateway(b Body, c *identity.Context, post bool) (gatewayReq, error) {
	g := gatewayReq{set: b.has("external_gateway_info")}
	if !g.set || b.isNull("external_gateway_info") || string(b["external_gateway_info"]) == "{}" {
		return g, nil
	}
	var m map[string]json.RawMessage
	if _, err := b.raw("external_gateway_info", &m, "not a dictionary"); err != nil {
		return g, err
	}
	gb := Body(m)
	verb := "update"
	if post {
		verb = "create"
	}
	for _, k := range sortedKeys(gb) {
		switch k {
		case "network_id":
		case "enable_snat", "external_fixed_ips":
			if !c.IsAdmin() {
				return g, policyNotAuthorized(verb + "_router:external_gateway_info:" + k)
			}
		default:
			return g, invalid("external_gateway_info", "Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided keys: {'%s'}", k)
		}
	}
	var err error
	if g.networkID, _, err = gb.uuid("network_id"); err != nil {
		return g, err
	}
	if g.networkID == "" {
		return g, invalid("external_gateway_info", "Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided keys: %s", pyList(sortedKeys(gb)))
	}
	if v, ok, err := gb.boolean("enable_snat"); err != nil {
		return g, err
	} else if ok {
		g.snat = &v
	}
	if gb.has("external_fixed_ips") {
		fb := Body{"fixed_ips": gb["external_fixed_ips"]}
		if g.fixed, g.hasFixed, err = parseFixedIPs(fb); err != nil {
			return g, err
		}
	}
	return g, nil
}

func (r *Router) decode(b Body) error {
	if err := decodeStd(b, &r.Std); err != nil {
		return err
	}
	if v, ok, err := b.str("name", 255); err != nil {
		return err
	} else if ok {
		r.Name = v
	}
	if v, ok, err := b.boolean("admin_state_up"); err != nil {
		return err
	} else if ok {
		r.AdminStateUp = v
	}
	for _, a := range []string{"distributed", "ha"} {
		if v, _, err := b.boolean(a); err != nil {
			return err
		} else if v {
			return invalidInput("%s routers are not implemented: Nagare's routers are distributed by design (every agent simulates them)", a)
		}
	}
	if b.has("flavor_id") && !b.isNull("flavor_id") {
		return invalidInput("router flavors are not implemented")
	}
	if hints, ok := b["availability_zone_hints"]; ok && string(hints) != "[]" && string(hints) != "null" {
		return invalidInput("availability zones are not implemented: availability_zone_hints must be empty")
	}
	return nil
}

// CreateRouter creates a router, with its gateway when external_gateway_info
// names an external network.
func (s *Service) CreateRouter(ctx context.Context, c *identity.Context, b Body) (*Router, error) {
	if err := routerSpec.check(b, true, c, "router"); err != nil {
		return nil, err
	}
	if err := may(c, "create_router"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	r := &Router{Std: s.newStd(project), AdminStateUp: true}
	if err := r.decode(b); err != nil {
		return nil, err
	}
	gw, err := parseGateway(b, c, true)
	if err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, project, "router", 1); err != nil {
		return nil, err
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	var out *Router
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		x := *r
		x.ID = newID()
		if _, err := tx.Create(&x); err != nil {
			return err
		}
		if err := s.setGateway(tx, c, &x, gw); err != nil {
			return err
		}
		if err := s.translateRouter(tx, &x); err != nil {
			return err
		}
		out = &x
		return tx.Put(&x)
	})
	return out, err
}

// setGateway makes the router's gateway what the request says: a new
// gateway port on the external network, or none.
func (s *Service) setGateway(tx *nsdb.Tx, c *identity.Context, r *Router, g gatewayReq) error {
	if !g.set {
		return nil
	}
	if g.networkID == r.GatewayNetworkID && g.networkID != "" {
		// Same network: only SNAT or the addresses change.
		if g.snat != nil {
			r.EnableSNAT = *g.snat
		}
		if g.hasFixed && r.GatewayPortID != "" {
			o, err := tx.Get(PortKind, r.GatewayPortID)
			if err != nil {
				return err
			}
			p := o.(*Port)
			if err := s.writePort(tx, c, p, portReq{fixed: g.fixed, hasFixed: true}, false); err != nil {
				return gatewayAddressError(err, g.networkID)
			}
		}
		return nil
	}
	var n *Network
	if g.networkID != "" {
		// The new network is checked before the old gateway's users, as
		// Neutron's _update_router_gw_info does.
		var err error
		if n, err = s.getNetwork(tx, c, g.networkID); err != nil {
			return err
		}
		if !n.External {
			return badRequest("router", "Network %s is not an external network", n.ID)
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
		return nil
	}
	p := &Port{Std: s.newStd(""), NetworkID: n.ID, DeviceOwner: OwnerRouterGateway, DeviceID: r.ID, RouterID: r.ID,
		AdminStateUp: true, VNICType: "normal"}
	p.ID = newID()
	if err := s.writePort(tx, c, p, portReq{fixed: g.fixed, hasFixed: g.hasFixed}, true); err != nil {
		return gatewayAddressError(err, n.ID)
	}
	r.GatewayNetworkID, r.GatewayPortID = n.ID, p.ID
	r.EnableSNAT = g.snat == nil || *g.snat
	return nil
}

// gatewayAddressError words an exhausted external network as Neutron does.
func gatewayAddressError(err error, netID string) error {
	var e *Error
	if errors.As(err, &e) && e.Type == "IpAddressGenerationFailure" {
		return newErr(400, "ExternalIpAddressExhausted", "Unable to find any IP address on external network %s.", netID)
	}
	return err
}

func (s *Service) getRouter(tx *nsdb.Tx, c *identity.Context, id string) (*Router, error) {
	o, err := tx.Get(RouterKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, routerNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	r := o.(*Router)
	if !owns(c, &r.Std) {
		return nil, routerNotFound(id)
	}
	return r, nil
}

// routerPorts are a router's interface ports and its gateway port.
func routerPorts(tx *nsdb.Tx, routerID string) ([]*Port, error) {
	objs, err := tx.List(PortKind, "router_id", routerID)
	if err != nil {
		return nil, err
	}
	out := make([]*Port, len(objs))
	for i, o := range objs {
		out[i] = o.(*Port)
	}
	return out, nil
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
	ports, err := routerPorts(tx, r.ID)
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
	return apply(tx, &r.Std, TranslateRouter(in))
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
func (s *Service) UpdateRouter(ctx context.Context, c *identity.Context, id string, b Body, ifRev int64) (*Router, error) {
	if err := routerSpec.check(b, false, c, "router"); err != nil {
		return nil, err
	}
	gw, err := parseGateway(b, c, false)
	if err != nil {
		return nil, err
	}
	var out *Router
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r, err := s.getRouter(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "update_router"); err != nil {
			return err
		}
		if err := checkRevision(&r.Std, ifRev); err != nil {
			return err
		}
		if err := r.decode(b); err != nil {
			return err
		}
		if err := s.setGateway(tx, c, r, gw); err != nil {
			return err
		}
		if b.has("routes") {
			routes, err := s.parseRoutes(tx, r, b)
			if err != nil {
				return err
			}
			r.Routes = routes
		}
		s.touch(&r.Std)
		if err := s.translateRouter(tx, r); err != nil {
			return err
		}
		out = r
		return tx.Put(r)
	})
	return out, err
}

// parseRoutes reads and checks static routes as the extraroute extension
// does: each next hop on a subnet the router is connected to, and not one
// of the router's own addresses.
func (s *Service) parseRoutes(tx *nsdb.Tx, r *Router, b Body) ([]Route, error) {
	var raw []map[string]json.RawMessage
	if b.isNull("routes") {
		return nil, nil
	}
	if _, err := b.raw("routes", &raw, "Invalid data format for hostroute"); err != nil {
		return nil, err
	}
	if len(raw) > maxRoutes {
		return nil, newErr(400, "RoutesExhausted", "Unable to complete operation for %s. The number of routes exceeds the maximum %d.", r.ID, maxRoutes)
	}
	ports, err := routerPorts(tx, r.ID)
	if err != nil {
		return nil, err
	}
	itfs, _, err := interfaces(tx, ports)
	if err != nil {
		return nil, err
	}
	var own []netip.Addr
	for _, p := range ports {
		for _, f := range p.FixedIPs {
			own = append(own, f.IPAddress)
		}
	}
	var out []Route
	for _, m := range raw {
		rt, err := parseRoute(Body(m), "routes", "hostroute")
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, rt) {
			return nil, invalid("routes", "Duplicate hostroute '%s'", mustJSON(map[string]string{"destination": rt.Destination.String(), "nexthop": rt.NextHop.String()}))
		}
		text := mustJSON([]map[string]string{{"destination": rt.Destination.String(), "nexthop": rt.NextHop.String()}})
		if slices.Contains(own, rt.NextHop) {
			return nil, newErr(400, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is used by router", text)
		}
		if !slices.ContainsFunc(itfs, func(i Interface) bool { return i.Prefix.Contains(rt.NextHop) }) {
			return nil, newErr(400, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is not connected with router", text)
		}
		out = append(out, rt)
	}
	return out, nil
}

// DeleteRouter deletes a router without interfaces, with its gateway.
func (s *Service) DeleteRouter(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r, err := s.getRouter(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "delete_router"); err != nil {
			return err
		}
		if err := checkRevision(&r.Std, ifRev); err != nil {
			return err
		}
		ports, err := routerPorts(tx, id)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if p.DeviceOwner == OwnerRouterInterface {
				return inUse("RouterInUse", "Router %s still has ports", id)
			}
		}
		if err := s.setGateway(tx, c, r, gatewayReq{set: true}); err != nil {
			return err
		}
		if err := apply(tx, &r.Std, nil); err != nil {
			return err
		}
		return tx.Delete(RouterKind, id)
	})
	return err
}

// InterfaceInfo is the answer to add/remove_router_interface.
type InterfaceInfo struct {
	RouterID  string   `json:"id"`
	TenantID  string   `json:"tenant_id"`
	ProjectID string   `json:"project_id"`
	PortID    string   `json:"port_id"`
	SubnetID  string   `json:"subnet_id"`
	SubnetIDs []string `json:"subnet_ids"`
	NetworkID string   `json:"network_id"`
}

func interfaceInfo(r *Router, p *Port) *InterfaceInfo {
	info := &InterfaceInfo{RouterID: r.ID, TenantID: r.ProjectID, ProjectID: r.ProjectID, PortID: p.ID, NetworkID: p.NetworkID, SubnetIDs: []string{}}
	for _, f := range p.FixedIPs {
		info.SubnetIDs = append(info.SubnetIDs, f.SubnetID)
	}
	if len(info.SubnetIDs) > 0 {
		info.SubnetID = info.SubnetIDs[0]
	}
	return info
}

func interfaceArgs(b Body) (subnetID, portID string, err error) {
	for k := range b {
		if k != "subnet_id" && k != "port_id" {
			return "", "", httpBadRequest("Unrecognized attribute(s) '%s'", k)
		}
	}
	if subnetID, _, err = b.uuid("subnet_id"); err != nil {
		return
	}
	if portID, _, err = b.uuid("port_id"); err != nil {
		return
	}
	return
}

// AddInterface connects a router to a subnet (through a new port holding
// the subnet's gateway address) or through an existing port.
func (s *Service) AddInterface(ctx context.Context, c *identity.Context, id string, b Body) (*InterfaceInfo, error) {
	subnetID, portID, err := interfaceArgs(b)
	if err != nil {
		return nil, err
	}
	switch {
	case subnetID != "" && portID != "":
		return nil, badRequest("router", "Cannot specify both subnet-id and port-id")
	case subnetID == "" && portID == "":
		return nil, badRequest("router", "Either subnet_id or port_id must be specified")
	}
	var out *InterfaceInfo
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r, err := s.getRouter(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "add_router_interface"); err != nil {
			return err
		}
		ports, err := routerPorts(tx, id)
		if err != nil {
			return err
		}
		var p *Port
		var subs []*Subnet
		if portID != "" {
			if p, _, err = s.getPort(tx, c, portID); err != nil {
				return err
			}
			if p.DeviceID != "" || p.DeviceOwner != "" {
				return inUse("PortInUse", "Unable to complete operation on port %s for network %s. Port already has an attached device %s.", p.ID, p.NetworkID, p.DeviceID)
			}
			if len(p.FixedIPs) == 0 {
				return badRequest("router", "Router port must have at least one fixed IP")
			}
			v4 := 0
			for _, f := range p.FixedIPs {
				o, err := tx.Get(SubnetKind, f.SubnetID)
				if err != nil {
					return err
				}
				subs = append(subs, o.(*Subnet))
				if f.IPAddress.Is4() {
					v4++
				}
			}
			if v4 > 1 {
				return badRequest("router", "Cannot have multiple IPv4 subnets on router port")
			}
		} else {
			sub, _, err := s.getSubnet(tx, c, subnetID)
			if err != nil {
				return err
			}
			if !sub.GatewayIP.IsValid() {
				return badRequest("router", "Subnet for router interface must have a gateway IP")
			}
			if !sub.CIDR.Contains(sub.GatewayIP) {
				return badRequest("router", "Subnet %s's gateway IP %s is outside the subnet: a router interface cannot hold it", sub.ID, sub.GatewayIP)
			}
			subs = []*Subnet{sub}
		}
		if err := checkDupSubnets(tx, r, ports, subs); err != nil {
			return err
		}
		if p != nil {
			p.DeviceOwner, p.DeviceID, p.RouterID = OwnerRouterInterface, r.ID, r.ID
			p.SecurityGroups = nil
			s.touch(&p.Std)
			if err := s.writePort(tx, c, p, portReq{}, false); err != nil {
				return err
			}
		} else {
			sub := subs[0]
			p = &Port{Std: s.newStd(sub.ProjectID), NetworkID: sub.NetworkID, DeviceOwner: OwnerRouterInterface, DeviceID: r.ID,
				RouterID: r.ID, AdminStateUp: true, VNICType: "normal", PortSecurityEnabled: false}
			p.ID = newID()
			req := portReq{fixed: []fixedReq{{subnetID: sub.ID, ip: sub.GatewayIP}}, hasFixed: true}
			if err := s.writePort(tx, c, p, req, true); err != nil {
				return err
			}
		}
		s.touch(&r.Std)
		if err := s.translateRouter(tx, r); err != nil {
			return err
		}
		out = interfaceInfo(r, p)
		return tx.Put(r)
	})
	return out, err
}

// checkDupSubnets is Neutron's _check_for_dup_router_subnets: one port per
// subnet, and no two interface subnets overlapping.
func checkDupSubnets(tx *nsdb.Tx, r *Router, ports []*Port, subs []*Subnet) error {
	for _, p := range ports {
		if p.DeviceOwner != OwnerRouterInterface {
			continue
		}
		for _, f := range p.FixedIPs {
			for _, sub := range subs {
				if f.SubnetID == sub.ID {
					return badRequest("router", "Router already has a port on subnet %s", sub.ID)
				}
			}
			o, err := tx.Get(SubnetKind, f.SubnetID)
			if err != nil {
				return err
			}
			have := o.(*Subnet)
			for _, sub := range subs {
				if have.CIDR.Overlaps(sub.CIDR) {
					return badRequest("router", "Cidr %s of subnet %s overlaps with cidr %s of subnet %s", sub.CIDR, sub.ID, have.CIDR, have.ID)
				}
			}
		}
	}
	return nil
}

// RemoveInterface disconnects a router from a subnet or an interface port,
// deleting the port.
func (s *Service) RemoveInterface(ctx context.Context, c *identity.Context, id string, b Body) (*InterfaceInfo, error) {
	subnetID, portID, err := interfaceArgs(b)
	if err != nil {
		return nil, err
	}
	if subnetID == "" && portID == "" {
		return nil, badRequest("router", "Either subnet_id or port_id must be specified")
	}
	var out *InterfaceInfo
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r, err := s.getRouter(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "remove_router_interface"); err != nil {
			return err
		}
		ports, err := routerPorts(tx, id)
		if err != nil {
			return err
		}
		var p *Port
		for _, x := range ports {
			if x.DeviceOwner != OwnerRouterInterface {
				continue
			}
			onSubnet := slices.ContainsFunc(x.FixedIPs, func(f FixedIP) bool { return f.SubnetID == subnetID })
			if (portID != "" && x.ID == portID) || (portID == "" && onSubnet) {
				p = x
				break
			}
		}
		switch {
		case p == nil && portID != "":
			return newErr(404, "RouterInterfaceNotFound", "Router %s does not have an interface with id %s", id, portID)
		case p == nil:
			return newErr(404, "RouterInterfaceNotFoundForSubnet", "Router %s has no interface on subnet %s", id, subnetID)
		case portID != "" && subnetID != "" && !slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == subnetID }):
			return newErr(400, "SubnetMismatchForPort", "Subnet on port %s does not match the requested subnet %s.", portID, subnetID)
		}
		itfs, _, err := interfaces(tx, []*Port{p})
		if err != nil {
			return err
		}
		fips, err := tx.List(FloatingIPKind, "router_id", id)
		if err != nil {
			return err
		}
		for _, itf := range itfs {
			for _, o := range fips {
				f := o.(*FloatingIP)
				if f.FixedIPAddress.IsValid() && itf.Prefix.Contains(f.FixedIPAddress) {
					return inUse("RouterInterfaceInUseByFloatingIP", "Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more floating IPs.", p.FixedIPs[0].SubnetID, id)
				}
			}
			for _, rt := range r.Routes {
				if itf.Prefix.Contains(rt.NextHop) {
					return inUse("RouterInterfaceInUseByRoute", "Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more routes.", p.FixedIPs[0].SubnetID, id)
				}
			}
		}
		out = interfaceInfo(r, p)
		if err := s.removePort(tx, p); err != nil {
			return err
		}
		s.touch(&r.Std)
		if err := s.translateRouter(tx, r); err != nil {
			return err
		}
		return tx.Put(r)
	})
	return out, err
}
