package neutron

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// SubnetRequest is what a create or update of a subnet asks.
type SubnetRequest struct {
	StdRequest
	// Create only.
	NetworkID       string
	IPVersion       int // 4 or 6
	CIDR            netip.Prefix
	IPv6RAMode      string // "" when not given or null
	IPv6AddressMode string
	// GatewayIP: nil when not given (a create takes the first address);
	// the zero Addr when null (no gateway).
	GatewayIP *netip.Addr
	// AllocationPools: nil when not given; a nil slice when null (a
	// create takes the default pools; an update leaves none).
	AllocationPools *[]Pool
	DNSNameservers  *[]netip.Addr
	HostRoutes      *[]Route
	EnableDHCP      *bool
	// ServiceTypes are device owners ("network:…", "compute:…").
	ServiceTypes *[]string
	// A subnet from a pool: SubnetPoolID, or the default pool of its IP
	// version; the CIDR (zero: any free prefix of PrefixLen, zero: the
	// pool's default length).
	SubnetPoolID   string
	UseDefaultPool bool
	PrefixLen      int
}

// Neutron's limits (max_dns_nameservers, max_subnet_host_routes).
const (
	maxDNSNameservers = 5
	maxHostRoutes     = 20
)

// matchVersion is Neutron's _validate_ip_version.
func matchVersion(ver int, a netip.Addr, name string, text string) error {
	if (ver == 4) != a.Is4() {
		return InvalidInput("%s '%s' does not match the ip_version '%d'", name, text, ver)
	}
	return nil
}

// applyMutable checks and sets the attributes a subnet's create and update
// share.
func (r *SubnetRequest) applyMutable(s *Subnet) error {
	r.StdRequest.apply(&s.Std)
	set(&s.EnableDHCP, r.EnableDHCP)
	set(&s.ServiceTypes, r.ServiceTypes)
	if r.DNSNameservers != nil {
		dns := *r.DNSNameservers
		if len(dns) > maxDNSNameservers {
			return NewError(BadRequest, "DNSNameServersExhausted", "Unable to complete operation for %s. The number of DNS nameservers exceeds the limit %d.", subnetLabel(s), maxDNSNameservers)
		}
		for _, a := range dns {
			if err := matchVersion(s.IPVersion, a, "dns_nameserver", a.String()); err != nil {
				return err
			}
		}
		s.DNSNameservers = dns
	}
	if r.HostRoutes != nil {
		routes := *r.HostRoutes
		if len(routes) > maxHostRoutes {
			return NewError(BadRequest, "HostRoutesExhausted", "Unable to complete operation for %s. The number of host routes exceeds the limit %d.", subnetLabel(s), maxHostRoutes)
		}
		for _, rt := range routes {
			if err := matchVersion(s.IPVersion, rt.NextHop, "nexthop", rt.NextHop.String()); err != nil {
				return err
			}
			if err := matchVersion(s.IPVersion, rt.Destination.Addr(), "destination", rt.Destination.String()); err != nil {
				return err
			}
		}
		s.HostRoutes = routes
	}
	return nil
}

func subnetLabel(s *Subnet) string {
	if s.ID == "" {
		return "new subnet"
	}
	return s.ID
}

// CreateSubnet validates a subnet as Neutron does and writes it with its
// DHCP subnet.
func (s *Service) CreateSubnet(ctx context.Context, c *identity.Context, r SubnetRequest) (*Subnet, error) {
	cr, err := s.PrepareSubnet(c, r)
	return created[*Subnet](ctx, s, cr, err)
}

// PrepareSubnet checks a subnet's create. A subnet from a subnet pool is
// checked once the transaction has its prefix.
func (s *Service) PrepareSubnet(c *identity.Context, r SubnetRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_subnet")
	if err != nil {
		return nil, err
	}
	fromPool := r.SubnetPoolID != "" || r.UseDefaultPool
	if !fromPool && !r.CIDR.IsValid() {
		return nil, BadResourceRequest("subnets", "a subnetpool must be specified in the absence of a cidr")
	}
	if !fromPool && r.PrefixLen != 0 {
		return nil, BadResourceRequest("subnets", "prefixlen is only valid with a subnetpool")
	}
	sub := &Subnet{Std: st, EnableDHCP: true}
	if !fromPool {
		if err := newSubnet(sub, &r); err != nil {
			return nil, err
		}
	}
	return creation(st.ProjectID, "subnet", func(tx *nsdb.Tx) (model.Object, error) {
		x := *sub
		netID, ver := r.NetworkID, r.IPVersion
		n, err := get[*Network](tx, c, netID)
		if err != nil {
			return nil, err
		}
		if !owns(c, &n.Std) {
			return nil, PolicyNotAuthorized("create_subnet")
		}
		others, err := listOf[*Subnet](tx, "network_id", n.ID)
		if err != nil {
			return nil, err
		}
		if fromPool {
			pool, err := s.subnetPool(tx, c, r)
			if err != nil {
				return nil, err
			}
			x.NetworkID, x.IPVersion, x.CIDR, x.SubnetPoolID = netID, ver, r.CIDR, pool.ID
			if err := poolAffinity(others, &x); err != nil {
				return nil, err
			}
			if err := s.allocateFromPool(tx, pool, &x, r.PrefixLen); err != nil {
				return nil, err
			}
			req := r
			req.CIDR = x.CIDR
			if err := newSubnet(&x, &req); err != nil {
				return nil, err
			}
		}
		if err := poolAffinity(others, &x); err != nil {
			return nil, err
		}
		for _, o := range others {
			if o.CIDR.Overlaps(x.CIDR) {
				return nil, InvalidInput("Requested subnet with cidr: %s for network: %s overlaps with another subnet", x.CIDR, n.ID)
			}
		}
		x.ID = newID()
		return createWith(tx, &x, TranslateSubnet(&x, n))
	}), nil
}

// poolAffinity is Neutron's check that a network's subnets of one IP
// version come from one subnet pool (or none).
func poolAffinity(others []*Subnet, x *Subnet) error {
	for _, o := range others {
		if o.IPVersion == x.IPVersion && o.SubnetPoolID != x.SubnetPoolID {
			return NewError(BadRequest, "NetworkSubnetPoolAffinityError", "Subnets hosted on the same network must be allocated from the same subnet pool.")
		}
	}
	return nil
}

// subnetPool is the pool a subnet request names, as the caller may use it,
// or the default pool of its IP version.
func (s *Service) subnetPool(tx *nsdb.Tx, c *identity.Context, r SubnetRequest) (*SubnetPool, error) {
	id := r.SubnetPoolID
	if id == "" {
		pools, err := listOf[*SubnetPool](tx, "", "")
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(pools, func(p *SubnetPool) bool { return p.IsDefault && p.IPVersion == r.IPVersion })
		if i < 0 {
			return nil, BadResourceRequest("subnets", "No default subnetpool found for IPv%d", r.IPVersion)
		}
		id = pools[i].ID
	}
	return get[*SubnetPool](tx, c, id)
}

// newSubnet is Neutron's _validate_subnet for a create.
func newSubnet(sub *Subnet, r *SubnetRequest) error {
	ver, cidr := r.IPVersion, r.CIDR
	sub.NetworkID, sub.IPVersion = r.NetworkID, ver
	if err := matchVersion(ver, cidr.Addr(), "cidr", cidr.String()); err != nil {
		return err
	}
	if cidr.Bits() == 0 {
		return InvalidInput("0 is not allowed as CIDR prefix length")
	}
	sub.CIDR = cidr
	if err := r.applyMutable(sub); err != nil {
		return err
	}
	if sub.EnableDHCP {
		if (ver == 4 && cidr.Bits() > 30) || (ver == 6 && cidr.Bits() > 126) {
			return InvalidInput("Subnet has a prefix length that is incompatible with DHCP service enabled")
		}
		switch {
		case cidr.Addr().IsMulticast():
			return InvalidInput("Multicast IP subnet is not supported if enable_dhcp is True")
		case cidr.Addr().IsLoopback():
			return InvalidInput("Loopback IP subnet is not supported if enable_dhcp is True")
		case ver == 4 && cidr.Addr() == netip.IPv4Unspecified():
			return InvalidInput("First IP '0.0.0.0' of network is not supported if enable_dhcp is True.")
		}
	}
	for _, m := range []struct{ name, v string }{{"ipv6_ra_mode", r.IPv6RAMode}, {"ipv6_address_mode", r.IPv6AddressMode}} {
		if m.v != "" && ver == 4 {
			return InvalidInput("%s is not valid when ip_version is 4", m.name)
		}
	}
	sub.IPv6RAMode, sub.IPv6AddressMode = r.IPv6RAMode, r.IPv6AddressMode
	if ver == 6 {
		if (sub.IPv6RAMode != "" || sub.IPv6AddressMode != "") && !sub.EnableDHCP {
			return InvalidInput("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False")
		}
		if sub.IPv6RAMode != "" && sub.IPv6AddressMode != "" && sub.IPv6RAMode != sub.IPv6AddressMode {
			return InvalidInput("ipv6_ra_mode set to '%s' with ipv6_address_mode set to '%s' is not valid. If both attributes are set, they must be the same value", sub.IPv6RAMode, sub.IPv6AddressMode)
		}
		if slaac(sub) && cidr.Bits() != 64 {
			return InvalidInput("Invalid CIDR %s for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64", cidr)
		}
	}
	// The gateway: not given means the first address, null means none.
	if gw, ok := deref(r.GatewayIP); !ok {
		sub.GatewayIP = cidr.Masked().Addr().Next()
	} else if gw.IsValid() {
		if err := checkGateway(sub, gw); err != nil {
			return err
		}
		sub.GatewayIP = gw
	}
	if pools, _ := deref(r.AllocationPools); pools != nil {
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
		return InvalidInput("Gateway is not valid on subnet")
	}
	return nil
}

// subnetVisible is get_subnet's policy: owner, or the network is shared.
func subnetVisible(c *identity.Context, s *Subnet, n *Network) bool {
	return owns(c, &s.Std) || (n != nil && (n.Shared || n.ProjectID == c.ProjectID))
}

// UpdateSubnet changes a subnet's writable attributes.
func (s *Service) UpdateSubnet(ctx context.Context, c *identity.Context, id string, r SubnetRequest, ifRev int64) (*Subnet, error) {
	return modify(ctx, s, c, id, "update_subnet", ifRev, func(tx *nsdb.Tx, sub *Subnet) error {
		no, err := tx.Get(NetworkKind, sub.NetworkID)
		if err != nil {
			return err
		}
		n := no.(*Network)
		was := *sub
		if err := r.applyMutable(sub); err != nil {
			return err
		}
		if was.EnableDHCP && !sub.EnableDHCP && (sub.IPv6RAMode != "" || sub.IPv6AddressMode != "") {
			return InvalidInput("Cannot disable enable_dhcp with ipv6 attributes set")
		}
		if gw, ok := deref(r.GatewayIP); ok {
			if gw.IsValid() {
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
		if r.AllocationPools != nil {
			sub.AllocationPools = *r.AllocationPools
		}
		if r.AllocationPools != nil || r.GatewayIP != nil {
			if err := validatePools(sub.AllocationPools, sub.CIDR, sub.GatewayIP); err != nil {
				return err
			}
		}
		s.touch(&sub.Std)
		if err := apply(tx, &sub.Std, TranslateSubnet(sub, n)); err != nil {
			return err
		}
		return tx.Put(sub)
	})
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
	_, err := modify(ctx, s, c, id, "delete_subnet", ifRev, func(tx *nsdb.Tx, sub *Subnet) error {
		allocs, err := tx.List(IPAllocationKind, "subnet_id", id)
		if err != nil {
			return err
		}
		if len(allocs) > 0 {
			return inUse("SubnetInUse", "Unable to complete operation on subnet %s: One or more ports have an IP allocation from this subnet.", id)
		}
		if err := vpnSubnetInGroup(tx, id); err != nil {
			return err
		}
		if err := apply(tx, &sub.Std, nil); err != nil {
			return err
		}
		return tx.Delete(SubnetKind, id)
	})
	return err
}
