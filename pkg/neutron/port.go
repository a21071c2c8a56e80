package neutron

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// PortRequest is what a create or update of a port asks. Router and
// floating IP code builds its own for the ports it creates.
type PortRequest struct {
	StdRequest
	NetworkID           string // create only
	AdminStateUp        *bool
	PortSecurityEnabled *bool
	MACAddress          packet.MAC // zero: not asked for
	FixedIPs            *[]FixedIPRequest
	SecurityGroups      *[]string
	AllowedAddressPairs *[]AddressPair
	DeviceID            *string
	DeviceOwner         *string
	BindingHostID       *string
	VNICType            *string
	// Profile is binding:profile as JSON; a nil RawMessage removes it.
	Profile       *json.RawMessage
	ExtraDHCPOpts *[]ExtraDHCPOptRequest // merged into the port's
	DNSName       *string                // checked with ValidDNSName
	Trusted       *bool
	QoSPolicyID   *string // "": none
}

// FixedIPRequest is one requested fixed IP: a subnet, an address, or both.
type FixedIPRequest struct {
	SubnetID  string
	IPAddress netip.Addr
}

// Neutron's limits (max_fixed_ips_per_port, max_allowed_address_pair).
const (
	maxFixedIPs      = 5
	maxAddressPairs  = 10
	vifUnbound       = "unbound"
	vifBindingFailed = "binding_failed"
)

// check applies the limits a request must respect whatever the port.
func (r *PortRequest) check() error {
	if r.AllowedAddressPairs != nil && len(*r.AllowedAddressPairs) > maxAddressPairs {
		return NewError(BadRequest, "AllowedAddressPairExhausted", "The number of allowed address pair exceeds the maximum %d.", maxAddressPairs)
	}
	return nil
}

// apply sets the plain attributes the request names; writePort assigns
// the rest.
func (r *PortRequest) apply(p *Port) {
	r.StdRequest.apply(&p.Std)
	set(&p.AdminStateUp, r.AdminStateUp)
	set(&p.PortSecurityEnabled, r.PortSecurityEnabled)
	set(&p.DeviceID, r.DeviceID)
	set(&p.DeviceOwner, r.DeviceOwner)
	set(&p.BindingHostID, r.BindingHostID)
	set(&p.VNICType, r.VNICType)
	set(&p.Profile, r.Profile)
	set(&p.DNSName, r.DNSName)
	if r.Trusted != nil {
		p.Trusted = r.Trusted
	}
	if r.ExtraDHCPOpts != nil {
		p.ExtraDHCPOpts = mergeDHCPOpts(p.ExtraDHCPOpts, *r.ExtraDHCPOpts)
	}
	set(&p.QoSPolicyID, r.QoSPolicyID)
}

// CreatePort creates a port: its addresses, its MAC, its security groups
// (the project's default group unless told otherwise), its binding, and
// its translation, in one transaction.
func (s *Service) CreatePort(ctx context.Context, c *identity.Context, r PortRequest) (*Port, error) {
	cr, err := s.PreparePort(c, r)
	return created[*Port](ctx, s, cr, err)
}

// PreparePort checks a port's create.
func (s *Service) PreparePort(c *identity.Context, r PortRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_port")
	if err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	p := &Port{Std: st, AdminStateUp: true, VNICType: "normal", NetworkID: r.NetworkID}
	r.apply(p)
	return creation(st.ProjectID, "port", func(tx *nsdb.Tx) (model.Object, error) {
		x := *p
		x.ID = newID()
		n, err := get[*Network](tx, c, x.NetworkID)
		if err != nil {
			return nil, err
		}
		if !owns(c, &n.Std) && !n.Shared {
			if ok, err := granted(tx, c, "network", n.ID, AccessShared); err != nil {
				return nil, err
			} else if !ok {
				return nil, PolicyNotAuthorized("create_port")
			}
		}
		if r.PortSecurityEnabled == nil {
			x.PortSecurityEnabled = n.PortSecurityEnabled
		}
		if err := s.writePort(tx, c, &x, r, true); err != nil {
			return nil, err
		}
		return &x, nil
	}), nil
}

// writePort assigns what a new port gets from the server (MAC, addresses,
// default security group, binding) and writes it with its translation.
// Router and floating IP code creates its ports through it too. fresh: p
// is a new port, under an id just generated.
func (s *Service) writePort(tx *nsdb.Tx, c *identity.Context, p *Port, r PortRequest, fresh bool) error {
	if err := s.setMAC(tx, p, r.MACAddress); err != nil {
		return err
	}
	groups := p.SecurityGroups
	if fresh && r.SecurityGroups == nil && p.ProjectID != "" {
		groups = []string{defaultGroupID(p.ProjectID)}
	} else if r.SecurityGroups != nil {
		groups = *r.SecurityGroups
	}
	// What the translation reads next comes in the round trip that reads
	// the subnets: the groups, and the DHCP subnets (a subnet's id) its
	// DHCP hosts join.
	subnets, err := listSubnets(tx, p.NetworkID, func(ids []string) []nsdb.ObjectID {
		ahead := make([]nsdb.ObjectID, 0, len(ids)+len(groups))
		for _, id := range ids {
			ahead = append(ahead, nsdb.ObjectID{Kind: model.DHCPSubnetKind, ID: id})
		}
		for _, g := range groups {
			ahead = append(ahead, nsdb.ObjectID{Kind: SecurityGroupKind, ID: g})
		}
		return ahead
	})
	if err != nil {
		return err
	}
	if fresh || r.FixedIPs != nil {
		if err := s.setFixedIPs(tx, p, subnets, r.FixedIPs); err != nil {
			return err
		}
	}
	if err := s.setSecurity(tx, p, r, fresh); err != nil {
		return err
	}
	pgroups, err := s.portGroups(tx, p)
	if err != nil {
		return err
	}
	hostID, err := s.bind(tx, p)
	if err != nil {
		return err
	}
	if r.QoSPolicyID != nil {
		if err := s.usableQoS(tx, c, p.QoSPolicyID, "port", p.ID); err != nil {
			return err
		}
	}
	qos, err := effectiveQoS(tx, p)
	if err != nil {
		return err
	}
	// A port being created has a new id no trunk can name yet.
	var parent string
	var vlan uint16
	if !fresh {
		if parent, vlan, err = trunkParent(tx, p.ID); err != nil {
			return err
		}
	}
	in := PortInput{Port: p, Subnets: subnets, Groups: pgroups, HostID: hostID, QoSPolicyID: qos, ParentID: parent, ParentVLAN: vlan}
	if isRouterPort(p) {
		if in.FirewallGroupID, err = firewallOf(tx, p.ID); err != nil {
			return err
		}
	}
	if err := apply(tx, &p.Std, s.translatePort(in)); err != nil {
		return err
	}
	if fresh {
		_, err = tx.Create(p)
	} else {
		err = tx.Put(p)
	}
	return err
}

// effectiveQoS is the QoS policy a port's traffic is under: its own, or
// its network's unless the network owns the port (Neutron leaves router
// and DHCP ports out of network policies).
func effectiveQoS(tx *nsdb.Tx, p *Port) (string, error) {
	if p.QoSPolicyID != "" || strings.HasPrefix(p.DeviceOwner, ownerNetworkPrefix) {
		return p.QoSPolicyID, nil
	}
	o, err := tx.Get(NetworkKind, p.NetworkID)
	if err != nil {
		return "", err
	}
	return o.(*Network).QoSPolicyID, nil
}

// setMAC keeps, checks or generates the port's MAC, unique on its network.
func (s *Service) setMAC(tx *nsdb.Tx, p *Port, want packet.MAC) error {
	f := PortKind.Field("mac_address")
	if !want.IsZero() {
		if want.IsMulticast() {
			return Invalid("mac_address", "'%s' is not a valid MAC address", want)
		}
		owner, err := tx.UniqueOwner(PortKind, f, p.NetworkID, want.String())
		if err != nil {
			return err
		}
		if owner != "" && owner != p.ID {
			return inUse("MacAddressInUse", "Unable to complete operation for network %s. The mac address %s is in use.", p.NetworkID, want)
		}
		p.MACAddress = want
		return nil
	}
	if !p.MACAddress.IsZero() {
		return nil
	}
	for range 16 {
		m := randomMAC()
		owner, err := tx.UniqueOwner(PortKind, f, p.NetworkID, m.String())
		if err != nil {
			return err
		}
		if owner == "" {
			p.MACAddress = m
			return nil
		}
	}
	return NewError(Unavailable, "NetworkMacAddressGenerationFailure", "Unable to generate unique mac on network %s.", p.NetworkID)
}

func networkSubnets(tx *nsdb.Tx, netID string) (map[string]*Subnet, error) {
	return listSubnets(tx, netID, nil)
}

// listSubnets is networkSubnets reading also's objects with the subnets
// (see nsdb.Tx.ListAlso).
func listSubnets(tx *nsdb.Tx, netID string, also func(ids []string) []nsdb.ObjectID) (map[string]*Subnet, error) {
	objs, err := tx.ListAlso(SubnetKind, "network_id", netID, also)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*Subnet, len(objs))
	for _, o := range objs {
		m[o.GetMeta().ID] = o.(*Subnet)
	}
	return m, nil
}

func sortedSubnets(m map[string]*Subnet) []*Subnet {
	out := make([]*Subnet, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Subnet) int { return strings.Compare(a.CreatedAt+a.ID, b.CreatedAt+b.ID) })
	return out
}

// setFixedIPs makes the port's addresses what the request asks: requested
// ones are checked and claimed, unrequested ones released. With no
// request a new port gets one address of each IP version (Neutron's
// default), and a SLAAC subnet's address derives from the MAC.
func (s *Service) setFixedIPs(tx *nsdb.Tx, p *Port, all map[string]*Subnet, asked *[]FixedIPRequest) error {
	routerPort := p.DeviceOwner == OwnerRouterInterface || p.DeviceOwner == OwnerRouterGateway
	subnets := serviceSubnets(all, p.DeviceOwner)
	if len(subnets) == 0 && len(all) > 0 && (asked == nil || len(*asked) > 0) {
		return conflict("IpAddressGenerationFailureNoMatchingSubnet", "No valid service subnet for the given device owner, network %s, service type %s.", p.NetworkID, p.DeviceOwner)
	}
	var req []FixedIPRequest
	if asked != nil {
		if len(*asked) > maxFixedIPs {
			return InvalidInput("Exceeded maximum amount of fixed ips per port.")
		}
		req = slices.Clone(*asked)
	} else {
		seen := map[int]bool{}
		for _, sub := range byServiceType(sortedSubnets(subnets)) {
			if slaac(sub) {
				req = append(req, FixedIPRequest{SubnetID: sub.ID})
				continue
			}
			if !seen[sub.IPVersion] && len(sub.AllocationPools) > 0 {
				seen[sub.IPVersion] = true
				req = append(req, FixedIPRequest{SubnetID: sub.ID})
			}
		}
	}
	if !routerPort {
		// Every port gets its address on each SLAAC subnet, asked for or
		// not (Neutron's auto-address subnets).
		for _, sub := range sortedSubnets(subnets) {
			if slaac(sub) && !slices.ContainsFunc(req, func(f FixedIPRequest) bool { return f.SubnetID == sub.ID || sub.CIDR.Contains(f.IPAddress) }) {
				req = append(req, FixedIPRequest{SubnetID: sub.ID})
			}
		}
	}
	var next []FixedIP
	for _, f := range req {
		sub := subnets[f.SubnetID]
		switch {
		case f.SubnetID != "" && sub == nil:
			return InvalidInput("Failed to create port on network %s, because fixed_ips included invalid subnet %s", p.NetworkID, f.SubnetID)
		case f.SubnetID == "":
			for _, x := range sortedSubnets(subnets) {
				if x.CIDR.Contains(f.IPAddress) {
					sub = x
					break
				}
			}
			if sub == nil {
				return NewError(BadRequest, "InvalidIpForNetwork", "IP address %s is not a valid IP for any of the subnets on the specified network.", f.IPAddress)
			}
		}
		want := f.IPAddress
		if want.IsValid() && !validIPForSubnet(sub, want, routerPort) {
			return NewError(BadRequest, "InvalidIpForSubnet", "IP address %s is not a valid IP for the specified subnet.", want)
		}
		if !want.IsValid() && slaac(sub) {
			want = eui64(sub.CIDR, p.MACAddress)
		}
		if !want.IsValid() {
			// Keep the address the port has in that subnet, if any.
			for _, old := range p.FixedIPs {
				if old.SubnetID == sub.ID && !slices.ContainsFunc(next, func(x FixedIP) bool { return x.IPAddress == old.IPAddress }) {
					want = old.IPAddress
					break
				}
			}
		}
		if want.IsValid() && slices.Contains(p.FixedIPs, FixedIP{SubnetID: sub.ID, IPAddress: want}) {
			next = append(next, FixedIP{SubnetID: sub.ID, IPAddress: want}) // held already
			continue
		}
		a, err := claim(tx, sub, p.ID, want)
		if err != nil {
			return err
		}
		next = append(next, FixedIP{SubnetID: sub.ID, IPAddress: a})
	}
	for _, old := range p.FixedIPs {
		if !slices.Contains(next, old) {
			if err := release(tx, old.SubnetID, old.IPAddress); err != nil {
				return err
			}
		}
	}
	p.FixedIPs = next
	return nil
}

// serviceSubnets are the subnets a port of a device owner takes addresses
// from (subnet-service-types): those without service types and those
// naming the owner; DHCP ports use any subnet with DHCP enabled.
func serviceSubnets(all map[string]*Subnet, owner string) map[string]*Subnet {
	out := make(map[string]*Subnet, len(all))
	for id, sub := range all {
		if len(sub.ServiceTypes) == 0 || slices.Contains(sub.ServiceTypes, owner) || (owner == OwnerDHCP && sub.EnableDHCP) {
			out[id] = sub
		}
	}
	return out
}

// byServiceType puts the subnets that name service types first, as
// Neutron prefers them.
func byServiceType(subs []*Subnet) []*Subnet {
	untyped := func(s *Subnet) int {
		if len(s.ServiceTypes) > 0 {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(subs, func(a, b *Subnet) int { return cmp.Compare(untyped(a), untyped(b)) })
	return subs
}

// setSecurity applies the port security rules of Neutron's
// port-security and allowed-address-pairs extensions.
func (s *Service) setSecurity(tx *nsdb.Tx, p *Port, r PortRequest, fresh bool) error {
	set(&p.AllowedAddressPairs, r.AllowedAddressPairs)
	set(&p.SecurityGroups, r.SecurityGroups)
	networkOwned := strings.HasPrefix(p.DeviceOwner, ownerNetworkPrefix)
	if !p.PortSecurityEnabled {
		if len(p.AllowedAddressPairs) > 0 {
			return conflict("AddressPairAndPortSecurityRequired", "Port Security must be enabled in order to have allowed address pairs on a port.")
		}
		if len(p.SecurityGroups) > 0 {
			if fresh || r.SecurityGroups != nil {
				return NewError(BadRequest, "PortSecurityAndIPRequiredForSecurityGroups", "Port security must be enabled and port must have an IP address in order to use security groups.")
			}
			return conflict("PortSecurityPortHasSecurityGroup", "Port has security group associated. Cannot disable port security or ip address until security group is removed")
		}
		return nil
	}
	if fresh && r.SecurityGroups == nil && !networkOwned {
		g, err := s.defaultGroup(tx, p.ProjectID)
		if err != nil {
			return err
		}
		p.SecurityGroups = []string{g.ID}
	}
	return nil
}

// portGroups reads the port's groups, checking the caller may use them.
func (s *Service) portGroups(tx *nsdb.Tx, p *Port) ([]*SecurityGroup, error) {
	var out []*SecurityGroup
	for _, id := range p.SecurityGroups {
		o, err := tx.Get(SecurityGroupKind, id)
		if errors.Is(err, model.ErrNotFound) {
			return nil, NotFoundError(SecurityGroupKind, id)
		}
		if err != nil {
			return nil, err
		}
		g := o.(*SecurityGroup)
		if g.ProjectID != p.ProjectID && p.ProjectID != "" {
			// Another project's group, usable if it shares it with the
			// port's project (rbac-security-groups).
			pols, err := rbacPolicies(tx, "security_group", id)
			if err != nil {
				return nil, err
			}
			if !grants(pols, AccessShared, p.ProjectID) {
				return nil, NotFoundError(SecurityGroupKind, id)
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// bind resolves binding:host_id and sets the VIF type and status: normal
// VNICs bind as tap devices, direct and macvtap as SR-IOV VFs (hw_veb); a
// host no agent registered, or a VNIC type Nagare cannot serve, fails the
// binding as Neutron's ML2 does when no mechanism driver can bind.
func (s *Service) bind(tx *nsdb.Tx, p *Port) (string, error) {
	p.VIFType = vifUnbound
	p.Status = "DOWN"
	if p.DeviceOwner == OwnerFloatingIP {
		p.Status = "N/A"
		return "", nil
	}
	if isRouterPort(p) {
		p.VIFType = "unbound"
		if p.AdminStateUp {
			p.Status = "ACTIVE"
		}
		return "", nil
	}
	if p.BindingHostID == "" {
		return "", nil
	}
	id, err := s.hostID(tx, p.BindingHostID)
	if err != nil {
		return "", err
	}
	switch {
	case id == "":
		p.VIFType = vifBindingFailed
	case p.VNICType == "normal":
		p.VIFType = "tap"
	case p.VNICType == "direct" || p.VNICType == "macvtap":
		p.VIFType = "hw_veb"
	default:
		p.VIFType = vifBindingFailed
	}
	if p.VIFType != vifBindingFailed && p.AdminStateUp {
		p.Status = "ACTIVE"
	}
	if p.VIFType == vifBindingFailed {
		return "", nil
	}
	return id, nil
}

// portVisible is get_port's policy: the port's or the network's owner.
func portVisible(c *identity.Context, p *Port, n *Network) bool {
	return owns(c, &p.Std) || (n != nil && n.ProjectID == c.ProjectID)
}

// UpdatePort changes a port: addresses, groups, pairs, binding and the
// rest, re-translating it in the same transaction.
func (s *Service) UpdatePort(ctx context.Context, c *identity.Context, id string, r PortRequest, ifRev int64) (*Port, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	return modify(ctx, s, c, id, "update_port", ifRev, func(tx *nsdb.Tx, p *Port) error {
		was := *p
		r.apply(p)
		if isRouterPort(&was) && (r.FixedIPs != nil || r.DeviceOwner != nil || r.DeviceID != nil) {
			return inUse("L3PortInUse", "Port %s has owner %s and therefore cannot be updated this way: use the router's interface operations.", id, was.DeviceOwner)
		}
		if m := r.MACAddress; !m.IsZero() && m != was.MACAddress && was.VIFType != vifUnbound && was.VIFType != vifBindingFailed {
			return inUse("PortBound", "Unable to complete operation on port %s, port is already bound, port type: %s, old_mac %s, new_mac %s.", id, was.VIFType, was.MACAddress, m)
		}
		if r.FixedIPs != nil {
			// Floating IPs on addresses the port gives up lose their
			// association (Neutron refuses; disassociating is kinder to
			// Nova's fixed-IP changes and keeps the NAT rules consistent).
			if err := s.disassociateLost(tx, p, *r.FixedIPs); err != nil {
				return err
			}
		}
		s.touch(&p.Std)
		if err := s.writePort(tx, c, p, r, false); err != nil {
			return err
		}
		return nil
	})
}

// DeletePort deletes a port; floating IPs on it are disassociated and port
// forwardings to it deleted. Router and floating IP ports go with their
// router interface or floating IP, not through this call.
func (s *Service) DeletePort(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	// The port's and its network's owners may delete it (its get policy
	// hides it from anyone else).
	_, err := modify(ctx, s, c, id, "delete_port", ifRev, func(tx *nsdb.Tx, p *Port) error {
		switch p.DeviceOwner {
		case OwnerRouterInterface, OwnerRouterGateway, OwnerFloatingIP:
			return inUse("ServicePortInUse", "Port %s cannot be deleted directly via the port API: has device owner %s.", id, p.DeviceOwner)
		}
		if err := trunkInUse(tx, p); err != nil {
			return err
		}
		return s.detachAndRemove(tx, p)
	})
	return err
}

// detachAndRemove disassociates a port's floating IPs, deletes the port
// forwardings to it, re-translates the routers involved and removes it.
func (s *Service) detachAndRemove(tx *nsdb.Tx, p *Port) error {
	routers := map[string]bool{}
	fips, err := tx.List(FloatingIPKind, "port_id", p.ID)
	if err != nil {
		return err
	}
	for _, o := range fips {
		f := o.(*FloatingIP)
		if f.RouterID != "" {
			routers[f.RouterID] = true
		}
		f.PortID, f.FixedIPAddress, f.RouterID = "", netip.Addr{}, ""
		s.touch(&f.Std)
		if err := tx.Put(f); err != nil {
			return err
		}
	}
	pfs, err := tx.List(PortForwardingKind, "internal_port_id", p.ID)
	if err != nil {
		return err
	}
	for _, o := range pfs {
		pf := o.(*PortForwarding)
		fo, err := tx.Get(FloatingIPKind, pf.FloatingIPID)
		if err == nil && fo.(*FloatingIP).RouterID != "" {
			routers[fo.(*FloatingIP).RouterID] = true
		}
		if err := tx.Delete(PortForwardingKind, pf.ID); err != nil {
			return err
		}
	}
	if err := s.removePort(tx, p); err != nil {
		return err
	}
	for _, r := range slices.Sorted(maps.Keys(routers)) {
		if err := s.retranslateRouter(tx, r); err != nil {
			return err
		}
	}
	return nil
}

// removePort releases a port's addresses and deletes it with its
// translation.
func (s *Service) removePort(tx *nsdb.Tx, p *Port) error {
	if err := dropTaps(tx, p.ID); err != nil {
		return err
	}
	for _, f := range p.FixedIPs {
		if err := release(tx, f.SubnetID, f.IPAddress); err != nil {
			return err
		}
	}
	if err := apply(tx, &p.Std, nil); err != nil {
		return err
	}
	return tx.Delete(PortKind, p.ID)
}

// disassociateLost disassociates the floating IPs whose fixed address the
// port's new fixed IPs no longer include.
func (s *Service) disassociateLost(tx *nsdb.Tx, p *Port, next []FixedIPRequest) error {
	fips, err := tx.List(FloatingIPKind, "port_id", p.ID)
	if err != nil {
		return err
	}
	for _, o := range fips {
		f := o.(*FloatingIP)
		kept := slices.ContainsFunc(next, func(r FixedIPRequest) bool {
			if r.IPAddress.IsValid() {
				return r.IPAddress == f.FixedIPAddress
			}
			return slices.ContainsFunc(p.FixedIPs, func(x FixedIP) bool { return x.SubnetID == r.SubnetID && x.IPAddress == f.FixedIPAddress })
		})
		if kept {
			continue
		}
		router := f.RouterID
		f.PortID, f.FixedIPAddress, f.RouterID = "", netip.Addr{}, ""
		s.touch(&f.Std)
		if err := tx.Put(f); err != nil {
			return err
		}
		if router != "" {
			if err := s.retranslateRouter(tx, router); err != nil {
				return err
			}
		}
	}
	return nil
}
