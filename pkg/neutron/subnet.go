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

var subnetSpec = std.with(spec{
	"name":                   {post: true, put: true},
	"network_id":             {post: true, required: true},
	"ip_version":             {post: true, required: true},
	"cidr":                   {post: true},
	"prefixlen":              {post: true},
	"gateway_ip":             {post: true, put: true},
	"allocation_pools":       {post: true, put: true},
	"dns_nameservers":        {post: true, put: true},
	"host_routes":            {post: true, put: true},
	"enable_dhcp":            {post: true, put: true},
	"ipv6_ra_mode":           {post: true},
	"ipv6_address_mode":      {post: true},
	"subnetpool_id":          {post: true},
	"use_default_subnetpool": {post: true},
	"service_types":          {post: true, put: true},
	"segment_id":             {post: true, put: true},
	"dns_publish_fixed_ip":   {},
})

// Neutron's limits (max_dns_nameservers, max_subnet_host_routes).
const (
	maxDNSNameservers = 5
	maxHostRoutes     = 20
)

// matchVersion is Neutron's _validate_ip_version.
func matchVersion(ver int, a netip.Addr, name string, text string) error {
	if (ver == 4) != a.Is4() {
		return invalidInput("%s '%s' does not match the ip_version '%d'", name, text, ver)
	}
	return nil
}

// decodeMutable reads the attributes a subnet's create and update share.
func (s *Subnet) decodeMutable(b Body) error {
	if err := decodeStd(b, &s.Std); err != nil {
		return err
	}
	if v, ok, err := b.str("name", 255); err != nil {
		return err
	} else if ok {
		s.Name = v
	}
	if v, ok, err := b.boolean("enable_dhcp"); err != nil {
		return err
	} else if ok {
		s.EnableDHCP = v
	}
	if b.has("dns_nameservers") {
		var raw []string
		if _, err := b.raw("dns_nameservers", &raw, "not a list of nameservers"); err != nil {
			return err
		}
		if len(raw) > maxDNSNameservers {
			return newErr(400, "DNSNameServersExhausted", "Unable to complete operation for %s. The number of DNS nameservers exceeds the limit %d.", subnetLabel(s), maxDNSNameservers)
		}
		s.DNSNameservers = nil
		for _, x := range raw {
			a, err := parseIP(x)
			if err != nil {
				return invalid("dns_nameservers", "'%s' is not a valid nameserver", x)
			}
			if slices.Contains(s.DNSNameservers, a) {
				return invalid("dns_nameservers", "Duplicate nameserver '%s'", x)
			}
			if err := matchVersion(s.IPVersion, a, "dns_nameserver", x); err != nil {
				return err
			}
			s.DNSNameservers = append(s.DNSNameservers, a)
		}
	}
	if b.has("host_routes") {
		var raw []map[string]json.RawMessage
		if _, err := b.raw("host_routes", &raw, "Invalid data format for hostroute"); err != nil {
			return err
		}
		if len(raw) > maxHostRoutes {
			return newErr(400, "HostRoutesExhausted", "Unable to complete operation for %s. The number of host routes exceeds the limit %d.", subnetLabel(s), maxHostRoutes)
		}
		s.HostRoutes = nil
		for _, m := range raw {
			r, err := parseRoute(Body(m), "host_routes", "hostroute")
			if err != nil {
				return err
			}
			if err := matchVersion(s.IPVersion, r.NextHop, "nexthop", r.NextHop.String()); err != nil {
				return err
			}
			if err := matchVersion(s.IPVersion, r.Destination.Addr(), "destination", r.Destination.String()); err != nil {
				return err
			}
			if slices.Contains(s.HostRoutes, r) {
				return invalid("host_routes", "Duplicate hostroute '%s'", mustJSON(map[string]string{"destination": r.Destination.String(), "nexthop": r.NextHop.String()}))
			}
			s.HostRoutes = append(s.HostRoutes, r)
		}
	}
	var types []string
	if _, err := b.raw("service_types", &types, "not a list of service types"); err != nil {
		return err
	}
	if len(types) > 0 {
		return invalidInput("subnet service types are not implemented: service_types must be empty")
	}
	if b.has("segment_id") && !b.isNull("segment_id") {
		return invalidInput("routed networks are not implemented: segment_id must be null")
	}
	return nil
}

func subnetLabel(s *Subnet) string {
	if s.ID == "" {
		return "new subnet"
	}
	return s.ID
}

// parseRoute reads {"destination", "nexthop"}.
func parseRoute(b Body, attr, what string) (Route, error) {
	bad := invalid(attr, "Invalid data format for %s: '%s'", what, mustJSON(b))
	if len(b) != 2 || !b.has("destination") || !b.has("nexthop") {
		return Route{}, bad
	}
	ds, _, err := b.str("destination", 0)
	if err != nil {
		return Route{}, bad
	}
	d, err := parseCIDR(ds)
	if err != nil {
		return Route{}, invalid(attr, "%s", err.Error())
	}
	nh, _, err := b.ip("nexthop")
	if err != nil || !nh.IsValid() {
		return Route{}, bad
	}
	return Route{Destination: d, NextHop: nh}, nil
}

// CreateSubnet validates a subnet as Neutron does and writes it with its
// DHCP subnet.
func (s *Service) CreateSubnet(ctx context.Context, c *identity.Context, b Body) (*Subnet, error) {
	if err := subnetSpec.check(b, true, c, "subnet"); err != nil {
		return nil, err
	}
	if err := may(c, "create_subnet"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	sub := &Subnet{Std: s.newStd(project), EnableDHCP: true}
	if err := s.decodeNewSubnet(sub, b); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, project, "subnet", 1); err != nil {
		return nil, err
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	var out *Subnet
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		n, err := s.getNetwork(tx, c, sub.NetworkID)
		if err != nil {
			return err
		}
		if !owns(c, &n.Std) {
			return policyNotAuthorized("create_subnet")
		}
		others, err := tx.List(SubnetKind, "network_id", n.ID)
		if err != nil {
			return err
		}
		for _, o := range others {
			if o.(*Subnet).CIDR.Overlaps(sub.CIDR) {
				return invalidInput("Requested subnet with cidr: %s for network: %s overlaps with another subnet", sub.CIDR, n.ID)
			}
		}
		x := *sub
		x.ID = newID()
		if err := apply(tx, &x.Std, TranslateSubnet(&x, n)); err != nil {
			return err
		}
		o, err := tx.Create(&x)
		if err == nil {
			out = o.(*Subnet)
		}
		return err
	})
	return out, err
}

// decodeNewSubnet is Neutron's _validate_subnet for a create.
func (s *Service) decodeNewSubnet(sub *Subnet, b Body) error {
	var err error
	if sub.NetworkID, _, err = b.uuid("network_id"); err != nil {
		return err
	}
	ver, _, _, err := b.integer("ip_version")
	if err != nil {
		return err
	}
	if ver != 4 && ver != 6 {
		return invalid("ip_version", "'%s' is not in [4, 6]", rawText(b["ip_version"]))
	}
	sub.IPVersion = ver
	if b.has("subnetpool_id") && !b.isNull("subnetpool_id") || b.has("prefixlen") {
		return badRequest("subnets", "subnet pools are not implemented: give a cidr")
	}
	if v, _, _ := b.boolean("use_default_subnetpool"); v {
		return badRequest("subnets", "subnet pools are not implemented: give a cidr")
	}
	cidr, ok, err := b.cidr("cidr")
	if err != nil {
		return err
	}
	if !ok || !cidr.IsValid() {
		return badRequest("subnets", "a subnetpool must be specified in the absence of a cidr")
	}
	if err := matchVersion(ver, cidr.Addr(), "cidr", cidr.String()); err != nil {
		return err
	}
	if cidr.Bits() == 0 {
		return invalidInput("0 is not allowed as CIDR prefix length")
	}
	sub.CIDR = cidr
	if err := sub.decodeMutable(b); err != nil {
		return err
	}
	if sub.EnableDHCP {
		if (ver == 4 && cidr.Bits() > 30) || (ver == 6 && cidr.Bits() > 126) {
			return invalidInput("Subnet has a prefix length that is incompatible with DHCP service enabled")
		}
		switch {
		case cidr.Addr().IsMulticast():
			return invalidInput("Multicast IP subnet is not supported if enable_dhcp is True")
		case cidr.Addr().IsLoopback():
			return invalidInput("Loopback IP subnet is not supported if enable_dhcp is True")
		case ver == 4 && cidr.Addr() == netip.IPv4Unspecified():
			return invalidInput("First IP '0.0.0.0' of network is not supported if enable_dhcp is True.")
		}
	}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"ipv6_ra_mode", &sub.IPv6RAMode}, {"ipv6_address_mode", &sub.IPv6AddressMode}} {
		v, ok, err := b.str(m.name, 0)
		if err != nil && !b.isNull(m.name) {
			return err
		}
		if !ok || b.isNull(m.name) {
			continue
		}
		if v != "slaac" && v != "dhcpv6-stateful" && v != "dhcpv6-stateless" {
			return invalid(m.name, "'%s' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac']", v)
		}
		if ver == 4 {
			return invalidInput("%s is not valid when ip_version is 4", m.name)
		}
		*m.dst = v
	}
	if ver == 6 {
		if (sub.IPv6RAMode != "" || sub.IPv6AddressMode != "") && !sub.EnableDHCP {
			return invalidInput("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False")
		}
		if sub.IPv6RAMode != "" && sub.IPv6AddressMode != "" && sub.IPv6RAMode != sub.IPv6AddressMode {
			return invalidInput("ipv6_ra_mode set to '%s' with ipv6_address_mode set to '%s' is not valid. If both attributes are set, they must be the same value", sub.IPv6RAMode, sub.IPv6AddressMode)
		}
		if slaac(sub) && cidr.Bits() != 64 {
			return invalidInput("Invalid CIDR %s for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64", cidr)
		}
	}
	// The gateway: absent means the first address, null means none.
	switch {
	case !b.has("gateway_ip"):
		sub.GatewayIP = cidr.Masked().Addr().Next()
	case b.isNull("gateway_ip"):
	default:
		gw, _, err := b.ip("gateway_ip")
		if err != nil {
			return err
		}
		if err := checkGateway(sub, gw); err != nil {
			return err
		}
		sub.GatewayIP = gw
	}
	pools, ok, err := parsePools(b, "allocation_pools")
	if err != nil {
		return err
	}
	if ok && !b.isNull("allocation_pools") {
		if err := validatePools(pools, cidr, sub.GatewayIP); err != nil {
			return err
		}
		sub.AllocationPools = pools
	} else {
		sub.AllocationPools = defaultPools(cidr, sub.GatewayIP)
	}
	return nil
}

// checkGateway is Neutron's gateway validation: the right family, and not
// the network or IPv4 broadcast address of the subnet. Like Neutron,
// Nagare accepts a gateway outside the subnet (reached through a host
// route); such a gateway is not handed out by DHCP and a router interface
// cannot take it.
func checkGateway(sub *Subnet, gw netip.Addr) error {
	if err := matchVersion(sub.IPVersion, gw, "gateway_ip", gw.String()); err != nil {
		return err
	}
	if sub.CIDR.Contains(gw) && (gw == sub.CIDR.Masked().Addr() || (gw.Is4() && gw == lastAddr(sub.CIDR))) {
		return invalidInput("Gateway is not valid on subnet")
	}
	return nil
}

func (s *Service) getSubnet(tx *nsdb.Tx, c *identity.Context, id string) (*Subnet, *Network, error) {
	o, err := tx.Get(SubnetKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil, subnetNotFound(id)
	}
	if err != nil {
		return nil, nil, err
	}
	sub := o.(*Subnet)
	no, err := tx.Get(NetworkKind, sub.NetworkID)
	if err != nil {
		return nil, nil, err
	}
	n := no.(*Network)
	if !subnetVisible(c, sub, n) {
		return nil, nil, subnetNotFound(id)
	}
	return sub, n, nil
}

// subnetVisible is get_subnet's policy: owner, or the network is shared.
func subnetVisible(c *identity.Context, s *Subnet, n *Network) bool {
	return owns(c, &s.Std) || (n != nil && (n.Shared || n.ProjectID == c.ProjectID))
}

// UpdateSubnet changes a subnet's writable attributes.
func (s *Service) UpdateSubnet(ctx context.Context, c *identity.Context, id string, b Body, ifRev int64) (*Subnet, error) {
	if err := subnetSpec.check(b, false, c, "subnet"); err != nil {
		return nil, err
	}
	var out *Subnet
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		sub, n, err := s.getSubnet(tx, c, id)
		if err != nil {
			return err
		}
		if err := ownsOrHidden(c, &sub.Std, true, "update_subnet", nil); err != nil {
			return err
		}
		if err := may(c, "update_subnet"); err != nil {
			return err
		}
		if err := checkRevision(&sub.Std, ifRev); err != nil {
			return err
		}
		was := *sub
		if err := sub.decodeMutable(b); err != nil {
			return err
		}
		if was.EnableDHCP && !sub.EnableDHCP && (sub.IPv6RAMode != "" || sub.IPv6AddressMode != "") {
			return invalidInput("Cannot disable enable_dhcp with ipv6 attributes set")
		}
		if b.has("gateway_ip") {
			var gw netip.Addr
			if !b.isNull("gateway_ip") {
				if gw, _, err = b.ip("gateway_ip"); err != nil {
					return err
				}
				if err := checkGateway(sub, gw); err != nil {
					return err
				}
			}
			if gw != was.GatewayIP && was.GatewayIP.IsValid() {
				// A router interface holding the old gateway keeps it.
				if owner, err := s.routerOnAddress(tx, sub, was.GatewayIP); err != nil {
					return err
				} else if owner != "" {
					return inUse("GatewayIpInUse", "Current gateway ip %s already in use by port %s. Unable to update.", was.GatewayIP, owner)
				}
			}
			sub.GatewayIP = gw
		}
		pools, ok, err := parsePools(b, "allocation_pools")
		if err != nil {
			return err
		}
		if ok {
			sub.AllocationPools = pools
		}
		if ok || b.has("gateway_ip") {
			if err := validatePools(sub.AllocationPools, sub.CIDR, sub.GatewayIP); err != nil {
				return err
			}
		}
		s.touch(&sub.Std)
		if err := apply(tx, &sub.Std, TranslateSubnet(sub, n)); err != nil {
			return err
		}
		out = sub
		return tx.Put(sub)
	})
	return out, err
}

// routerOnAddress names the router port holding an address of a subnet.
func (s *Service) routerOnAddress(tx *nsdb.Tx, sub *Subnet, a netip.Addr) (string, error) {
	o, err := tx.Get(IPAllocationKind, allocationID(sub.ID, a))
	if errors.Is(err, model.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	po, err := tx.Get(PortKind, o.(*IPAllocation).PortID)
	if err != nil {
		return "", err
	}
	if p := po.(*Port); p.DeviceOwner == OwnerRouterInterface || p.DeviceOwner == OwnerRouterGateway {
		return p.ID, nil
	}
	return "", nil
}

// DeleteSubnet deletes a subnet no port has an address in.
func (s *Service) DeleteSubnet(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		sub, _, err := s.getSubnet(tx, c, id)
		if err != nil {
			return err
		}
		if err := ownsOrHidden(c, &sub.Std, true, "delete_subnet", nil); err != nil {
			return err
		}
		if err := may(c, "delete_subnet"); err != nil {
			return err
		}
		if err := checkRevision(&sub.Std, ifRev); err != nil {
			return err
		}
		allocs, err := tx.List(IPAllocationKind, "subnet_id", id)
		if err != nil {
			return err
		}
		if len(allocs) > 0 {
			return inUse("SubnetInUse", "Unable to complete operation on subnet %s: One or more ports have an IP allocation from this subnet.", id)
		}
		if err := apply(tx, &sub.Std, nil); err != nil {
			return err
		}
		return tx.Delete(SubnetKind, id)
	})
	return err
}
