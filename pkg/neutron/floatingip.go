package neutron

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

var fipSpec = std.with(spec{
	"floating_network_id": {post: true, required: true},
	"floating_ip_address": {post: true, adminSet: true},
	"subnet_id":           {post: true},
	"port_id":             {post: true, put: true},
	"fixed_ip_address":    {post: true, put: true},
	"router_id":           {},
	"status":              {},
	"port_details":        {},
	"port_forwardings":    {},
})

// assocReq is a requested association: a port and optionally its address.
type assocReq struct {
	set     bool
	portID  string
	fixedIP netip.Addr
}

func parseAssoc(b Body) (assocReq, error) {
	var a assocReq
	var err error
	a.set = b.has("port_id")
	if a.portID, _, err = b.uuid("port_id"); err != nil && !b.isNull("port_id") {
		return a, err
	}
	if a.fixedIP, _, err = b.ip("fixed_ip_address"); err != nil {
		return a, err
	}
	if a.fixedIP.IsValid() && !a.set {
		a.set = true // fixed_ip_address alone re-targets the current port
	}
	return a, nil
}

// CreateFloatingIP allocates an address on an external network (held by a
// port of owner network:floatingip) and associates it when port_id is
// given.
func (s *Service) CreateFloatingIP(ctx context.Context, c *identity.Context, b Body) (*FloatingIP, error) {
	if err := fipSpec.check(b, true, c, "floatingip"); err != nil {
		return nil, err
	}
	if err := may(c, "create_floatingip"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	f := &FloatingIP{Std: s.newStd(project)}
	if err := decodeStd(b, &f.Std); err != nil {
		return nil, err
	}
	if f.FloatingNetworkID, _, err = b.uuid("floating_network_id"); err != nil {
		return nil, err
	}
	want, _, err := b.ip("floating_ip_address")
	if err != nil {
		return nil, err
	}
	subnetID, _, err := b.uuid("subnet_id")
	if err != nil {
		return nil, err
	}
	assoc, err := parseAssoc(b)
	if err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, project, "floatingip", 1); err != nil {
		return nil, err
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	var out *FloatingIP
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		x := *f
		x.ID = newID()
		n, err := s.getNetwork(tx, c, x.FloatingNetworkID)
		if err != nil {
			return err
		}
		if !n.External {
			return badRequest("floatingip", "Network %s is not a valid external network", n.ID)
		}
		subs, err := networkSubnets(tx, n.ID)
		if err != nil {
			return err
		}
		var sub *Subnet
		switch {
		case subnetID != "":
			if sub = subs[subnetID]; sub == nil {
				return badRequest("floatingip", "Subnet %s does not belong to network %s", subnetID, n.ID)
			}
		case want.IsValid():
			for _, x := range sortedSubnets(subs) {
				if x.CIDR.Contains(want) {
					sub = x
					break
				}
			}
			if sub == nil {
				return newErr(400, "InvalidIpForNetwork", "IP address %s is not a valid IP for any of the subnets on the specified network.", want)
			}
		default:
			for _, x := range sortedSubnets(subs) {
				if x.IPVersion == 4 {
					sub = x
					break
				}
			}
		}
		if sub == nil || sub.IPVersion != 4 {
			return newErr(400, "ExternalIpAddressExhausted", "Unable to find any IP address on external network %s.", n.ID)
		}
		p := &Port{Std: s.newStd(""), NetworkID: n.ID, DeviceOwner: OwnerFloatingIP, DeviceID: x.ID, AdminStateUp: true, VNICType: "normal"}
		p.ID = newID()
		if err := s.writePort(tx, c, p, portReq{fixed: []fixedReq{{subnetID: sub.ID, ip: want}}, hasFixed: true}, true); err != nil {
			return gatewayAddressError(err, n.ID)
		}
		x.FloatingPortID, x.FloatingSubnetID, x.FloatingIPAddress = p.ID, sub.ID, p.FixedIPs[0].IPAddress
		if _, err := tx.Create(&x); err != nil {
			return err
		}
		if assoc.set && assoc.portID != "" {
			if err := s.associate(tx, c, &x, assoc); err != nil {
				return err
			}
		}
		setFIPStatus(&x)
		if err := tx.Put(&x); err != nil {
			return err
		}
		out = &x
		if x.RouterID != "" {
			return s.retranslateRouter(tx, x.RouterID)
		}
		return nil
	})
	return out, err
}

func setFIPStatus(f *FloatingIP) {
	// Neutron's L3 agents report ACTIVE once a floating IP is set up on a
	// router; Nagare's NAT rules are in place when the write commits.
	f.Status = "DOWN"
	if f.RouterID != "" {
		f.Status = "ACTIVE"
	}
}

// associate points a floating IP at a port's fixed address through the
// router that connects the port's subnet to the floating IP's network.
func (s *Service) associate(tx *nsdb.Tx, c *identity.Context, f *FloatingIP, a assocReq) error {
	p, _, err := s.getPort(tx, c, a.portID)
	if err != nil {
		return err
	}
	if !owns(c, &p.Std) {
		return badRequest("floatingip", "Cannot create floating IP and bind it to Port %s, since that port is owned by a different tenant", p.ID)
	}
	pfs, err := tx.List(PortForwardingKind, "floatingip_id", f.ID)
	if err != nil {
		return err
	}
	if len(pfs) > 0 {
		return inUse("FipInUseByPortForwarding", "Floating IP %s in use by Port Forwarding resources.", f.ID)
	}
	if other, err := tx.List(PortForwardingKind, "internal_port_id", p.ID); err != nil {
		return err
	} else if len(other) > 0 {
		return badRequest("floatingip", "Cannot associate floating IP to port %s because it already has a Port Forwarding binding", p.ID)
	}
	var fixed *FixedIP
	if a.fixedIP.IsValid() {
		i := slices.IndexFunc(p.FixedIPs, func(x FixedIP) bool { return x.IPAddress == a.fixedIP })
		if i < 0 {
			return badRequest("floatingip", "Port %s does not have fixed ip %s", p.ID, a.fixedIP)
		}
		fixed = &p.FixedIPs[i]
	} else {
		for i := range p.FixedIPs {
			if !p.FixedIPs[i].IPAddress.Is4() {
				continue
			}
			if fixed != nil {
				return badRequest("floatingip", "Port %s has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP", p.ID)
			}
			fixed = &p.FixedIPs[i]
		}
		if fixed == nil {
			return badRequest("floatingip", "Port %s does not have any IPv4 address", p.ID)
		}
	}
	if !fixed.IPAddress.Is4() {
		return badRequest("floatingip", "Cannot process floating IP association with %s, since that is not an IPv4 address", fixed.IPAddress)
	}
	routerID, err := s.routerFor(tx, f.FloatingNetworkID, fixed.SubnetID)
	if err != nil {
		return err
	}
	if routerID == "" {
		return newErr(404, "ExternalGatewayForFloatingIPNotFound", "External network %s is not reachable from subnet %s.  Therefore, cannot associate Port %s with a Floating IP.", f.FloatingNetworkID, fixed.SubnetID, p.ID)
	}
	others, err := tx.List(FloatingIPKind, "port_id", p.ID)
	if err != nil {
		return err
	}
	for _, o := range others {
		g := o.(*FloatingIP)
		if g.ID != f.ID && g.FixedIPAddress == fixed.IPAddress && g.FloatingNetworkID == f.FloatingNetworkID {
			return inUse("FloatingIPPortAlreadyAssociated", "Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.",
				f.FloatingIPAddress, f.ID, p.ID, fixed.IPAddress, f.FloatingNetworkID)
		}
	}
	f.PortID, f.FixedIPAddress, f.RouterID = p.ID, fixed.IPAddress, routerID
	return nil
}

// routerFor finds the router with a gateway on an external network and an
// interface on a subnet (Neutron's _get_router_for_floatingip).
func (s *Service) routerFor(tx *nsdb.Tx, extNetID, subnetID string) (string, error) {
	routers, err := tx.List(RouterKind, "gw_network_id", extNetID)
	if err != nil {
		return "", err
	}
	for _, o := range routers {
		ports, err := routerPorts(tx, o.GetMeta().ID)
		if err != nil {
			return "", err
		}
		for _, p := range ports {
			if p.DeviceOwner == OwnerRouterInterface && slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == subnetID }) {
				return o.GetMeta().ID, nil
			}
		}
	}
	return "", nil
}

func (s *Service) getFloatingIP(tx *nsdb.Tx, c *identity.Context, id string) (*FloatingIP, error) {
	o, err := tx.Get(FloatingIPKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, floatingIPNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	f := o.(*FloatingIP)
	if !owns(c, &f.Std) {
		return nil, floatingIPNotFound(id)
	}
	return f, nil
}

// UpdateFloatingIP associates, re-targets or disassociates a floating IP.
func (s *Service) UpdateFloatingIP(ctx context.Context, c *identity.Context, id string, b Body, ifRev int64) (*FloatingIP, error) {
	if err := fipSpec.check(b, false, c, "floatingip"); err != nil {
		return nil, err
	}
	assoc, err := parseAssoc(b)
	if err != nil {
		return nil, err
	}
	var out *FloatingIP
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, err := s.getFloatingIP(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "update_floatingip"); err != nil {
			return err
		}
		if err := checkRevision(&f.Std, ifRev); err != nil {
			return err
		}
		if err := decodeStd(b, &f.Std); err != nil {
			return err
		}
		oldRouter := f.RouterID
		if assoc.set {
			if assoc.portID == "" && !b.has("port_id") {
				assoc.portID = f.PortID // fixed_ip_address alone
			}
			f.PortID, f.FixedIPAddress, f.RouterID = "", netip.Addr{}, ""
			if assoc.portID != "" {
				if err := s.associate(tx, c, f, assoc); err != nil {
					return err
				}
			}
		}
		setFIPStatus(f)
		s.touch(&f.Std)
		if err := tx.Put(f); err != nil {
			return err
		}
		out = f
		for _, r := range uniq(oldRouter, f.RouterID) {
			if err := s.retranslateRouter(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func uniq(ids ...string) []string {
	var out []string
	for _, id := range ids {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// DeleteFloatingIP releases a floating IP with its port forwardings.
func (s *Service) DeleteFloatingIP(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, err := s.getFloatingIP(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "delete_floatingip"); err != nil {
			return err
		}
		if err := checkRevision(&f.Std, ifRev); err != nil {
			return err
		}
		if err := tx.Delete(FloatingIPKind, id); err != nil {
			return err
		}
		if f.FloatingPortID != "" {
			if o, err := tx.Get(PortKind, f.FloatingPortID); err == nil {
				if err := s.removePort(tx, o.(*Port)); err != nil {
					return err
				}
			}
		}
		if f.RouterID != "" {
			return s.retranslateRouter(tx, f.RouterID)
		}
		return nil
	})
	return err
}

var pfSpec = spec{
	"id":                  {},
	"internal_port_id":    {post: true, put: true, required: true},
	"internal_ip_address": {post: true, put: true, required: true},
	"internal_port":       {post: true, put: true},
	"external_port":       {post: true, put: true},
	"protocol":            {post: true, put: true, required: true},
	"description":         {post: true, put: true},
	"internal_port_range": {post: true, put: true},
	"external_port_range": {post: true, put: true},
}

func (pf *PortForwarding) decode(b Body, post bool) error {
	var err error
	if v, ok, err := b.str("description", 255); err != nil {
		return err
	} else if ok {
		pf.Description = v
	}
	if v, ok, err := b.uuid("internal_port_id"); err != nil {
		return err
	} else if ok {
		pf.InternalPortID = v
	}
	if v, ok, err := b.ip("internal_ip_address"); err != nil {
		return err
	} else if ok {
		if !v.Is4() {
			return invalid("internal_ip_address", "'%s' is not a valid IPv4 address", v)
		}
		pf.InternalIPAddress = v
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"internal_port", &pf.InternalPort}, {"external_port", &pf.ExternalPort}} {
		n, null, ok, e := b.integer(f.name)
		if e != nil {
			return e
		}
		if ok && !null {
			if n < 1 || n > 65535 {
				return invalid(f.name, "'%d' is not in range 1 through 65535", n)
			}
			*f.dst = n
		}
	}
	if v, ok, e := b.str("protocol", 0); e != nil {
		return e
	} else if ok {
		if v != "tcp" && v != "udp" {
			return invalid("protocol", "'%s' is not in ['tcp', 'udp']", v)
		}
		pf.Protocol = v
	}
	for _, r := range []string{"internal_port_range", "external_port_range"} {
		if b.has(r) && !b.isNull(r) {
			return badRequest("port_forwarding", "%s is not implemented: give internal_port and external_port", r)
		}
	}
	if post && (pf.InternalPort == 0 || pf.ExternalPort == 0) {
		return badRequest("port_forwarding", "internal_port and external_port are required")
	}
	pf.ExternalKey = pf.Protocol + "/" + strconv.Itoa(pf.ExternalPort)
	return err
}

// CreatePortForwarding forwards a protocol port of an unassociated
// floating IP to an address of a port behind the floating IP's router.
func (s *Service) CreatePortForwarding(ctx context.Context, c *identity.Context, fipID string, b Body) (*PortForwarding, error) {
	if err := pfSpec.check(b, true, c, "port_forwarding"); err != nil {
		return nil, err
	}
	if err := may(c, "create_floatingip_port_forwarding"); err != nil {
		return nil, err
	}
	pf := &PortForwarding{FloatingIPID: fipID}
	if err := pf.decode(b, true); err != nil {
		return nil, err
	}
	var out *PortForwarding
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, err := s.getFloatingIP(tx, c, fipID)
		if err != nil {
			return err
		}
		x := *pf
		x.Std = s.newStd(f.ProjectID)
		x.Description = pf.Description
		x.ID = newID()
		if err := s.checkForwarding(tx, c, f, &x); err != nil {
			return err
		}
		if _, err := tx.Create(&x); err != nil {
			return err
		}
		out = &x
		return s.retranslateRouter(tx, f.RouterID)
	})
	return out, err
}

// checkForwarding validates a port forwarding against its floating IP and
// internal port, and sets the floating IP's router.
func (s *Service) checkForwarding(tx *nsdb.Tx, c *identity.Context, f *FloatingIP, pf *PortForwarding) error {
	if f.PortID != "" {
		return inUse("FipInUseByPortForwarding", "Floating IP %s is associated with port %s; a floating IP with a port cannot have port forwardings.", f.ID, f.PortID)
	}
	p, _, err := s.getPort(tx, c, pf.InternalPortID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(p.FixedIPs, func(x FixedIP) bool { return x.IPAddress == pf.InternalIPAddress })
	if i < 0 {
		return badRequest("port_forwarding", "Port %s does not have ip address %s", p.ID, pf.InternalIPAddress)
	}
	if fips, err := tx.List(FloatingIPKind, "port_id", p.ID); err != nil {
		return err
	} else {
		for _, o := range fips {
			if o.(*FloatingIP).FixedIPAddress == pf.InternalIPAddress {
				return inUse("PortHasBindingFloatingIP", "Cannot create port forwarding to floating IP %s (%s) with port %s using fixed IP %s, as that port already has a binding floating IP.",
					f.FloatingIPAddress, f.ID, p.ID, pf.InternalIPAddress)
			}
		}
	}
	routerID, err := s.routerFor(tx, f.FloatingNetworkID, p.FixedIPs[i].SubnetID)
	if err != nil {
		return err
	}
	if routerID == "" || (f.RouterID != "" && f.RouterID != routerID) {
		return badRequest("port_forwarding", "Port %s 's network %s not bind on router %s", p.ID, p.NetworkID, f.RouterID)
	}
	owner, err := tx.UniqueOwner(PortForwardingKind, PortForwardingKind.Field("external_key"), f.ID, pf.ExternalKey)
	if err != nil {
		return err
	}
	if owner != "" && owner != pf.ID {
		return badRequest("port_forwarding", "A duplicate port forwarding entry with same attributes already exists, conflicting values are {'floatingip_id': '%s', 'external_port': %d, 'protocol': '%s'}", f.ID, pf.ExternalPort, pf.Protocol)
	}
	if f.RouterID != routerID {
		f.RouterID = routerID
		setFIPStatus(f)
		s.touch(&f.Std)
		return tx.Put(f)
	}
	return nil
}

// getForwarding reads a floating IP the caller may see and one of its port
// forwardings; a forwarding of another floating IP is not found.
func (s *Service) getForwarding(tx *nsdb.Tx, c *identity.Context, fipID, id string) (*FloatingIP, *PortForwarding, error) {
	f, err := s.getFloatingIP(tx, c, fipID)
	if err != nil {
		return nil, nil, err
	}
	o, err := tx.Get(PortForwardingKind, id)
	if err != nil || o.(*PortForwarding).FloatingIPID != fipID {
		return nil, nil, portForwardingNotFound(id)
	}
	return f, o.(*PortForwarding), nil
}

// GetPortForwarding reads one port forwarding of a floating IP.
func (s *Service) GetPortForwarding(ctx context.Context, c *identity.Context, fipID, id string) (*PortForwarding, error) {
	var out *PortForwarding
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		var err error
		_, out, err = s.getForwarding(tx, c, fipID, id)
		return err
	})
	return out, err
}

// ListPortForwardings lists a floating IP's port forwardings.
func (s *Service) ListPortForwardings(ctx context.Context, c *identity.Context, fipID string) ([]*PortForwarding, error) {
	var out []*PortForwarding
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		if _, err := s.getFloatingIP(tx, c, fipID); err != nil {
			return err
		}
		objs, err := tx.List(PortForwardingKind, "floatingip_id", fipID)
		for _, o := range objs {
			out = append(out, o.(*PortForwarding))
		}
		return err
	})
	return out, err
}

// UpdatePortForwarding changes a port forwarding.
func (s *Service) UpdatePortForwarding(ctx context.Context, c *identity.Context, fipID, id string, b Body) (*PortForwarding, error) {
	if err := pfSpec.check(b, false, c, "port_forwarding"); err != nil {
		return nil, err
	}
	var out *PortForwarding
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, pf, err := s.getForwarding(tx, c, fipID, id)
		if err != nil {
			return err
		}
		if err := may(c, "update_floatingip_port_forwarding"); err != nil {
			return err
		}
		if err := pf.decode(b, false); err != nil {
			return err
		}
		if err := s.checkForwarding(tx, c, f, pf); err != nil {
			return err
		}
		s.touch(&pf.Std)
		if err := tx.Put(pf); err != nil {
			return err
		}
		out = pf
		return s.retranslateRouter(tx, f.RouterID)
	})
	return out, err
}

// DeletePortForwarding deletes a port forwarding; the floating IP's last
// one leaves it without a router.
func (s *Service) DeletePortForwarding(ctx context.Context, c *identity.Context, fipID, id string) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, _, err := s.getForwarding(tx, c, fipID, id)
		if err != nil {
			return err
		}
		if err := may(c, "delete_floatingip_port_forwarding"); err != nil {
			return err
		}
		if err := tx.Delete(PortForwardingKind, id); err != nil {
			return err
		}
		router := f.RouterID
		rest, err := tx.List(PortForwardingKind, "floatingip_id", fipID)
		if err != nil {
			return err
		}
		if len(rest) == 0 && f.PortID == "" {
			f.RouterID = ""
			setFIPStatus(f)
			s.touch(&f.Std)
			if err := tx.Put(f); err != nil {
				return err
			}
		}
		return s.retranslateRouter(tx, router)
	})
	return err
}
