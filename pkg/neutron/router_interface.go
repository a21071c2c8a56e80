package neutron

import (
	"context"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Router interfaces: add_router_interface and remove_router_interface.

// InterfaceRequest names the subnet or the port of a router interface.
type InterfaceRequest struct {
	SubnetID string
	PortID   string
}

// InterfaceInfo is the answer to add/remove_router_interface: the router
// and the interface port.
type InterfaceInfo struct {
	Router *Router
	Port   *Port
}

// AddInterface connects a router to a subnet (through a new port holding
// the subnet's gateway address) or through an existing port.
func (s *Service) AddInterface(ctx context.Context, c *identity.Context, id string, req InterfaceRequest) (*InterfaceInfo, error) {
	subnetID, portID := req.SubnetID, req.PortID
	switch {
	case subnetID != "" && portID != "":
		return nil, BadResourceRequest("router", "Cannot specify both subnet-id and port-id")
	case subnetID == "" && portID == "":
		return nil, BadResourceRequest("router", "Either subnet_id or port_id must be specified")
	}
	var out *InterfaceInfo
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r, ports, err := routerAndPorts(tx, c, id, "add_router_interface")
		if err != nil {
			return err
		}
		var p *Port
		var subs []*Subnet
		if portID != "" {
			if p, err = get[*Port](tx, c, portID); err != nil {
				return err
			}
			if p.DeviceID != "" || p.DeviceOwner != "" {
				return inUse("PortInUse", "Unable to complete operation on port %s for network %s. Port already has an attached device %s.", p.ID, p.NetworkID, p.DeviceID)
			}
			if len(p.FixedIPs) == 0 {
				return BadResourceRequest("router", "Router port must have at least one fixed IP")
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
				return BadResourceRequest("router", "Cannot have multiple IPv4 subnets on router port")
			}
		} else {
			sub, err := get[*Subnet](tx, c, subnetID)
			if err != nil {
				return err
			}
			if !sub.GatewayIP.IsValid() {
				return BadResourceRequest("router", "Subnet for router interface must have a gateway IP")
			}
			if !sub.CIDR.Contains(sub.GatewayIP) {
				return BadResourceRequest("router", "Subnet %s's gateway IP %s is outside the subnet: a router interface cannot hold it", sub.ID, sub.GatewayIP)
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
			if err := s.writePort(tx, c, p, PortRequest{}, false); err != nil {
				return err
			}
		} else {
			sub := subs[0]
			p = &Port{Std: s.newStd(sub.ProjectID), NetworkID: sub.NetworkID, DeviceOwner: OwnerRouterInterface, DeviceID: r.ID,
				RouterID: r.ID, AdminStateUp: true, VNICType: "normal", PortSecurityEnabled: false}
			p.ID = newID()
			fixed := []FixedIPRequest{{SubnetID: sub.ID, IPAddress: sub.GatewayIP}}
			if err := s.writePort(tx, c, p, PortRequest{FixedIPs: &fixed}, true); err != nil {
				return err
			}
		}
		s.touch(&r.Std)
		if err := s.translateRouter(tx, r); err != nil {
			return err
		}
		out = &InterfaceInfo{Router: r, Port: p}
		return tx.Put(r)
	})
	return out, err
}

// routerAndPorts reads the router an interface operation names, under the
// operation's policy, and the router's ports.
func routerAndPorts(tx *nsdb.Tx, c *identity.Context, id, action string) (*Router, []*Port, error) {
	r, err := changing[*Router](tx, c, id, action, 0)
	if err != nil {
		return nil, nil, err
	}
	ports, err := listOf[*Port](tx, "router_id", id)
	return r, ports, err
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
					return BadResourceRequest("router", "Router already has a port on subnet %s", sub.ID)
				}
			}
			o, err := tx.Get(SubnetKind, f.SubnetID)
			if err != nil {
				return err
			}
			have := o.(*Subnet)
			for _, sub := range subs {
				if have.CIDR.Overlaps(sub.CIDR) {
					return BadResourceRequest("router", "Cidr %s of subnet %s overlaps with cidr %s of subnet %s", sub.CIDR, sub.ID, have.CIDR, have.ID)
				}
			}
		}
	}
	return nil
}

// RemoveInterface disconnects a router from a subnet or an interface port,
// deleting the port.
func (s *Service) RemoveInterface(ctx context.Context, c *identity.Context, id string, req InterfaceRequest) (*InterfaceInfo, error) {
	subnetID, portID := req.SubnetID, req.PortID
	if subnetID == "" && portID == "" {
		return nil, BadResourceRequest("router", "Either subnet_id or port_id must be specified")
	}
	var out *InterfaceInfo
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r, ports, err := routerAndPorts(tx, c, id, "remove_router_interface")
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
			return NewError(NotFound, "RouterInterfaceNotFound", "Router %s does not have an interface with id %s", id, portID)
		case p == nil:
			return NewError(NotFound, "RouterInterfaceNotFoundForSubnet", "Router %s has no interface on subnet %s", id, subnetID)
		case portID != "" && subnetID != "" && !slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == subnetID }):
			return NewError(BadRequest, "SubnetMismatchForPort", "Subnet on port %s does not match the requested subnet %s.", portID, subnetID)
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
		for _, f := range p.FixedIPs {
			if err := vpnSubnetInUse(tx, f.SubnetID, id); err != nil {
				return err
			}
		}
		out = &InterfaceInfo{Router: r, Port: p}
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
