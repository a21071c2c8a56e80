package neutron

import (
	"context"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// FloatingIPRequest is what a create or update of a floating IP asks.
type FloatingIPRequest struct {
	StdRequest
	// Create only.
	FloatingNetworkID string
	FloatingIPAddress netip.Addr // zero: any free address
	SubnetID          string
	// PortID is the port to associate with: nil when not given, "" when
	// null (disassociate).
	PortID *string
	// FixedIPAddress picks one of the port's addresses; alone, it
	// re-targets the current port.
	FixedIPAddress netip.Addr
	// DNSName and DNSDomain (create only) are checked with
	// ValidFIPDNSName and ValidDNSDomain.
	DNSName, DNSDomain string
}

// assocReq is a requested association: a port and optionally its address.
type assocReq struct {
	set     bool
	portID  string
	fixedIP netip.Addr
}

func (r *FloatingIPRequest) association() assocReq {
	portID, set := deref(r.PortID)
	// fixed_ip_address alone re-targets the current port.
	return assocReq{set: set || r.FixedIPAddress.IsValid(), portID: portID, fixedIP: r.FixedIPAddress}
}

// CreateFloatingIP allocates an address on an external network (held by a
// port of owner network:floatingip) and associates it when port_id is
// given.
func (s *Service) CreateFloatingIP(ctx context.Context, c *identity.Context, r FloatingIPRequest) (*FloatingIP, error) {
	cr, err := s.PrepareFloatingIP(c, r)
	return created[*FloatingIP](ctx, s, cr, err)
}

// PrepareFloatingIP checks a floating IP's create.
func (s *Service) PrepareFloatingIP(c *identity.Context, r FloatingIPRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_floatingip")
	if err != nil {
		return nil, err
	}
	f := &FloatingIP{Std: st, FloatingNetworkID: r.FloatingNetworkID, DNSName: r.DNSName, DNSDomain: r.DNSDomain}
	r.StdRequest.apply(&f.Std)
	want, subnetID, assoc := r.FloatingIPAddress, r.SubnetID, r.association()
	return creation(st.ProjectID, "floatingip", func(tx *nsdb.Tx) (model.Object, error) {
		var out *FloatingIP
		err := func() error {
			x := *f
			x.ID = newID()
			n, err := get[*Network](tx, c, x.FloatingNetworkID)
			if err != nil {
				return err
			}
			if !n.External {
				return BadResourceRequest("floatingip", "Network %s is not a valid external network", n.ID)
			}
			subs, err := networkSubnets(tx, n.ID)
			if err != nil {
				return err
			}
			var sub *Subnet
			switch {
			case subnetID != "":
				if sub = subs[subnetID]; sub == nil {
					return BadResourceRequest("floatingip", "Subnet %s does not belong to network %s", subnetID, n.ID)
				}
			case want.IsValid():
				for _, x := range sortedSubnets(subs) {
					if x.CIDR.Contains(want) {
						sub = x
						break
					}
				}
				if sub == nil {
					return NewError(BadRequest, "InvalidIpForNetwork", "IP address %s is not a valid IP for any of the subnets on the specified network.", want)
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
				return NewError(BadRequest, "ExternalIpAddressExhausted", "Unable to find any IP address on external network %s.", n.ID)
			}
			p := &Port{Std: s.newStd(""), NetworkID: n.ID, DeviceOwner: OwnerFloatingIP, DeviceID: x.ID, AdminStateUp: true, VNICType: "normal"}
			p.ID = newID()
			fixed := []FixedIPRequest{{SubnetID: sub.ID, IPAddress: want}}
			if err := s.writePort(tx, c, p, PortRequest{FixedIPs: &fixed}, true); err != nil {
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
		}()
		return out, err
	}), nil
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
	p, err := get[*Port](tx, c, a.portID)
	if err != nil {
		return err
	}
	if !owns(c, &p.Std) {
		return BadResourceRequest("floatingip", "Cannot create floating IP and bind it to Port %s, since that port is owned by a different tenant", p.ID)
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
		return BadResourceRequest("floatingip", "Cannot associate floating IP to port %s because it already has a Port Forwarding binding", p.ID)
	}
	var fixed *FixedIP
	if a.fixedIP.IsValid() {
		i := slices.IndexFunc(p.FixedIPs, func(x FixedIP) bool { return x.IPAddress == a.fixedIP })
		if i < 0 {
			return BadResourceRequest("floatingip", "Port %s does not have fixed ip %s", p.ID, a.fixedIP)
		}
		fixed = &p.FixedIPs[i]
	} else {
		for i := range p.FixedIPs {
			if !p.FixedIPs[i].IPAddress.Is4() {
				continue
			}
			if fixed != nil {
				return BadResourceRequest("floatingip", "Port %s has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP", p.ID)
			}
			fixed = &p.FixedIPs[i]
		}
		if fixed == nil {
			return BadResourceRequest("floatingip", "Port %s does not have any IPv4 address", p.ID)
		}
	}
	if !fixed.IPAddress.Is4() {
		return BadResourceRequest("floatingip", "Cannot process floating IP association with %s, since that is not an IPv4 address", fixed.IPAddress)
	}
	routerID, err := s.routerFor(tx, f.FloatingNetworkID, fixed.SubnetID)
	if err != nil {
		return err
	}
	if routerID == "" {
		return NewError(NotFound, "ExternalGatewayForFloatingIPNotFound", "External network %s is not reachable from subnet %s.  Therefore, cannot associate Port %s with a Floating IP.", f.FloatingNetworkID, fixed.SubnetID, p.ID)
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
		id := o.GetMeta().ID
		ports, err := listOf[*Port](tx, "router_id", id)
		if err != nil {
			return "", err
		}
		for _, p := range ports {
			if p.DeviceOwner == OwnerRouterInterface && slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == subnetID }) {
				return id, nil
			}
		}
	}
	return "", nil
}

// UpdateFloatingIP associates, re-targets or disassociates a floating IP.
func (s *Service) UpdateFloatingIP(ctx context.Context, c *identity.Context, id string, r FloatingIPRequest, ifRev int64) (*FloatingIP, error) {
	assoc := r.association()
	return modify(ctx, s, c, id, "update_floatingip", ifRev, func(tx *nsdb.Tx, f *FloatingIP) error {
		r.StdRequest.apply(&f.Std)
		oldRouter := f.RouterID
		if assoc.set {
			if assoc.portID == "" && r.PortID == nil {
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
		for _, r := range uniq(oldRouter, f.RouterID) {
			if err := s.retranslateRouter(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
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
	_, err := modify(ctx, s, c, id, "delete_floatingip", ifRev, func(tx *nsdb.Tx, f *FloatingIP) error {
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
