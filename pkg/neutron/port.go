package neutron

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

var portSpec = std.with(spec{
	"name":                  {post: true, put: true},
	"network_id":            {post: true, required: true},
	"admin_state_up":        {post: true, put: true},
	"mac_address":           {post: true, put: true},
	"fixed_ips":             {post: true, put: true},
	"device_id":             {post: true, put: true},
	"device_owner":          {post: true, put: true},
	"status":                {},
	"security_groups":       {post: true, put: true},
	"allowed_address_pairs": {post: true, put: true},
	"port_security_enabled": {post: true, put: true},
	"binding:host_id":       {post: true, put: true, adminSet: true, adminView: true},
	"binding:vnic_type":     {post: true, put: true},
	"binding:profile":       {post: true, put: true, adminSet: true, adminView: true},
	"binding:vif_type":      {adminView: true},
	"binding:vif_details":   {adminView: true},
	"ip_allocation":         {},
})

// vnicTypes are the VNIC types Neutron's API accepts. Nagare binds normal
// ones (a tap device on the virtual switch) and direct/macvtap ones (SR-IOV
// virtual functions); the others fail to bind, as in Neutron when no
// mechanism driver supports them.
var vnicTypes = []string{"normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder",
	"smart-nic", "accelerator-direct", "accelerator-direct-physical", "remote-managed", "vdpa"}

// Neutron's limits (max_fixed_ips_per_port, max_allowed_address_pair).
const (
	maxFixedIPs      = 5
	maxAddressPairs  = 10
	vifUnbound       = "unbound"
	vifBindingFailed = "binding_failed"
)

// fixedReq is one requested fixed IP: a subnet, an address, or both.
type fixedReq struct {
	subnetID string
	ip       netip.Addr
}

func parseFixedIPs(b Body) ([]fixedReq, bool, error) {
	var raw []map[string]json.RawMessage
	ok, err := b.raw("fixed_ips", &raw, "Invalid data format for fixed IP")
	if err != nil || !ok {
		return nil, ok, err
	}
	if len(raw) > maxFixedIPs {
		return nil, true, invalidInput("Exceeded maximum amount of fixed ips per port.")
	}
	out := []fixedReq{}
	for _, m := range raw {
		fb := Body(m)
		for k := range fb {
			if k != "subnet_id" && k != "ip_address" {
				return nil, true, invalid("fixed_ips", "Unexpected keys supplied: %s", k)
			}
		}
		var f fixedReq
		if f.subnetID, _, err = fb.uuid("subnet_id"); err != nil {
			return nil, true, invalid("fixed_ips", "'%s' is not a valid UUID", rawText(m["subnet_id"]))
		}
		if f.ip, _, err = fb.ip("ip_address"); err != nil {
			return nil, true, invalid("fixed_ips", "'%s' is not a valid IP address", rawText(m["ip_address"]))
		}
		if f.subnetID == "" && !f.ip.IsValid() {
			return nil, true, invalid("fixed_ips", "Invalid data format for fixed IP: '%s'", mustJSON(m))
		}
		for _, g := range out {
			if f.ip.IsValid() && g.ip == f.ip {
				return nil, true, invalid("fixed_ips", "Duplicate IP address '%s'", f.ip)
			}
		}
		out = append(out, f)
	}
	return out, true, nil
}

func parseAddressPairs(b Body) ([]AddressPair, bool, error) {
	var raw []map[string]json.RawMessage
	ok, err := b.raw("allowed_address_pairs", &raw, "Allowed address pairs must be a list")
	if err != nil || !ok {
		return nil, ok, err
	}
	if len(raw) > maxAddressPairs {
		return nil, true, newErr(400, "AllowedAddressPairExhausted", "The number of allowed address pair exceeds the maximum %d.", maxAddressPairs)
	}
	out := []AddressPair{}
	for _, m := range raw {
		pb := Body(m)
		for k := range pb {
			if k != "ip_address" && k != "mac_address" {
				return nil, true, invalid("allowed_address_pairs", "Unrecognized attribute(s) '%s'", k)
			}
		}
		s, has, err := pb.str("ip_address", 0)
		if err != nil || !has {
			return nil, true, newErr(400, "AllowedAddressPairsMissingIP", "AllowedAddressPair must contain ip_address")
		}
		pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, err2 := parseIP(s)
			if err2 != nil {
				return nil, true, invalid("allowed_address_pairs", "'%s' is not a valid IP address", s)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		var ap AddressPair
		ap.IPAddress = pfx
		if pb.has("mac_address") && !pb.isNull("mac_address") {
			if ap.MACAddress, _, err = pb.mac("mac_address"); err != nil {
				return nil, true, err
			}
		}
		if slices.Contains(out, ap) {
			return nil, true, newErr(400, "DuplicateAddressPairInRequest", "Request contains duplicate address pair: mac_address %s ip_address %s.", ap.MACAddress, s)
		}
		out = append(out, ap)
	}
	return out, true, nil
}

// portReq is what a request says about a port besides plain attributes.
type portReq struct {
	fixed     []fixedReq
	hasFixed  bool
	groups    []string
	hasGroups bool
	pairs     []AddressPair
	hasPairs  bool
	mac       packet.MAC
}

// decode reads a port's writable attributes (create and update alike).
func (p *Port) decode(b Body, r *portReq) error {
	if err := decodeStd(b, &p.Std); err != nil {
		return err
	}
	if v, ok, err := b.str("name", 255); err != nil {
		return err
	} else if ok {
		p.Name = v
	}
	for _, f := range []struct {
		name string
		dst  *string
		max  int
	}{{"device_id", &p.DeviceID, 255}, {"device_owner", &p.DeviceOwner, 255}, {"binding:host_id", &p.BindingHostID, 255}} {
		if v, ok, err := b.str(f.name, f.max); err != nil {
			return err
		} else if ok {
			*f.dst = v
		}
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"admin_state_up", &p.AdminStateUp}, {"port_security_enabled", &p.PortSecurityEnabled}} {
		if v, ok, err := b.boolean(f.name); err != nil {
			return err
		} else if ok {
			*f.dst = v
		}
	}
	if v, ok, err := b.str("binding:vnic_type", 0); err != nil {
		return err
	} else if ok {
		if !slices.Contains(vnicTypes, v) {
			return invalid("binding:vnic_type", "'%s' is not in %s", v, pyList(vnicTypes))
		}
		p.VNICType = v
	}
	if b.has("binding:profile") {
		if b.isNull("binding:profile") {
			p.Profile = nil
		} else {
			var m map[string]any
			if err := json.Unmarshal(b["binding:profile"], &m); err != nil {
				return invalid("binding:profile", "'%s' is not a dictionary", rawText(b["binding:profile"]))
			}
			p.Profile, _ = json.Marshal(m)
			if len(m) == 0 {
				p.Profile = nil
			}
		}
	}
	var err error
	if r.mac, _, err = b.mac("mac_address"); err != nil {
		return err
	}
	if r.fixed, r.hasFixed, err = parseFixedIPs(b); err != nil {
		return err
	}
	if r.groups, r.hasGroups, err = b.uuidList("security_groups"); err != nil {
		return err
	}
	if b.isNull("security_groups") {
		r.groups, r.hasGroups = []string{}, true
	}
	if r.pairs, r.hasPairs, err = parseAddressPairs(b); err != nil {
		return err
	}
	return nil
}

func pyList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// CreatePort creates a port: its addresses, its MAC, its security groups
// (the project's default group unless told otherwise), its binding, and
// its translation, in one transaction.
func (s *Service) CreatePort(ctx context.Context, c *identity.Context, b Body) (*Port, error) {
	if err := portSpec.check(b, true, c, "port"); err != nil {
		return nil, err
	}
	if err := may(c, "create_port"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	p := &Port{Std: s.newStd(project), AdminStateUp: true, VNICType: "normal"}
	var r portReq
	if err := p.decode(b, &r); err != nil {
		return nil, err
	}
	if p.NetworkID, _, err = b.uuid("network_id"); err != nil {
		return nil, err
	}
	_, hasSecurity := b["port_security_enabled"]
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	// The quota is counted while the transaction reads (it is not part of
	// it anyway: see checkQuota), and waited for before it commits.
	quota := s.checkQuotaAsync(ctx, project, "port", 1)
	var out *Port
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		x := *p
		x.ID = newID()
		n, err := s.getNetwork(tx, c, x.NetworkID)
		if err != nil {
			return err
		}
		if !owns(c, &n.Std) && !n.Shared {
			return policyNotAuthorized("create_port")
		}
		if !hasSecurity {
			x.PortSecurityEnabled = n.PortSecurityEnabled
		}
		if err := s.writePort(tx, c, &x, r, true); err != nil {
			return err
		}
		if err := quota(); err != nil {
			return err
		}
		out = &x
		return nil
	})
	return out, err
}

// writePort assigns what a new port gets from the server (MAC, addresses,
// default security group, binding) and writes it with its translation.
// Router and floating IP code creates its ports through it too.
func (s *Service) writePort(tx *nsdb.Tx, c *identity.Context, p *Port, r portReq, fresh bool) error {
	if err := s.setMAC(tx, p, r.mac); err != nil {
		return err
	}
	subnets, err := networkSubnets(tx, p.NetworkID)
	if err != nil {
		return err
	}
	// What the translation reads next, in one round trip: the groups and
	// the DHCP subnets its DHCP hosts join.
	var ahead []nsdb.ObjectID
	for id, sub := range subnets {
		if sub.CIDR.Addr().Is4() {
			ahead = append(ahead, nsdb.ObjectID{Kind: model.DHCPSubnetKind, ID: id})
		}
	}
	groups := p.SecurityGroups
	if fresh && !r.hasGroups && p.ProjectID != "" {
		groups = []string{defaultGroupID(p.ProjectID)}
	} else if r.hasGroups {
		groups = r.groups
	}
	for _, g := range groups {
		ahead = append(ahead, nsdb.ObjectID{Kind: SecurityGroupKind, ID: g})
	}
	if err := tx.Prefetch(ahead...); err != nil {
		return err
	}
	if fresh || r.hasFixed {
		if err := s.setFixedIPs(tx, p, subnets, r.fixed, r.hasFixed); err != nil {
			return err
		}
	}
	if err := s.setSecurity(tx, c, p, r, fresh); err != nil {
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
	in := PortInput{Port: p, Subnets: subnets, Groups: pgroups, HostID: hostID}
	if err := apply(tx, &p.Std, TranslatePort(in)); err != nil {
		return err
	}
	if fresh {
		_, err = tx.Create(p)
	} else {
		err = tx.Put(p)
	}
	return err
}

// setMAC keeps, checks or generates the port's MAC, unique on its network.
func (s *Service) setMAC(tx *nsdb.Tx, p *Port, want packet.MAC) error {
	f := PortKind.Field("mac_address")
	if !want.IsZero() {
		if want.IsMulticast() {
			return invalid("mac_address", "'%s' is not a valid MAC address", want)
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
	return newErr(503, "NetworkMacAddressGenerationFailure", "Unable to generate unique mac on network %s.", p.NetworkID)
}

func networkSubnets(tx *nsdb.Tx, netID string) (map[string]*Subnet, error) {
	objs, err := tx.List(SubnetKind, "network_id", netID)
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
func (s *Service) setFixedIPs(tx *nsdb.Tx, p *Port, subnets map[string]*Subnet, req []fixedReq, explicit bool) error {
	routerPort := p.DeviceOwner == OwnerRouterInterface || p.DeviceOwner == OwnerRouterGateway
	if !explicit {
		req = nil
		seen := map[int]bool{}
		for _, sub := range sortedSubnets(subnets) {
			if slaac(sub) {
				req = append(req, fixedReq{subnetID: sub.ID})
				continue
			}
			if !seen[sub.IPVersion] && len(sub.AllocationPools) > 0 {
				seen[sub.IPVersion] = true
				req = append(req, fixedReq{subnetID: sub.ID})
			}
		}
	}
	if !routerPort {
		// Every port gets its address on each SLAAC subnet, asked for or
		// not (Neutron's auto-address subnets).
		for _, sub := range sortedSubnets(subnets) {
			if slaac(sub) && !slices.ContainsFunc(req, func(f fixedReq) bool { return f.subnetID == sub.ID || sub.CIDR.Contains(f.ip) }) {
				req = append(req, fixedReq{subnetID: sub.ID})
			}
		}
	}
	var next []FixedIP
	for _, f := range req {
		sub := subnets[f.subnetID]
		switch {
		case f.subnetID != "" && sub == nil:
			return invalidInput("Failed to create port on network %s, because fixed_ips included invalid subnet %s", p.NetworkID, f.subnetID)
		case f.subnetID == "":
			for _, x := range sortedSubnets(subnets) {
				if x.CIDR.Contains(f.ip) {
					sub = x
					break
				}
			}
			if sub == nil {
				return newErr(400, "InvalidIpForNetwork", "IP address %s is not a valid IP for any of the subnets on the specified network.", f.ip)
			}
		}
		want := f.ip
		if want.IsValid() && !validIPForSubnet(sub, want, routerPort) {
			return newErr(400, "InvalidIpForSubnet", "IP address %s is not a valid IP for the specified subnet.", want)
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

// setSecurity applies the port security rules of Neutron's
// port-security and allowed-address-pairs extensions.
func (s *Service) setSecurity(tx *nsdb.Tx, c *identity.Context, p *Port, r portReq, fresh bool) error {
	if r.hasPairs {
		p.AllowedAddressPairs = r.pairs
	}
	if r.hasGroups {
		p.SecurityGroups = r.groups
	}
	networkOwned := strings.HasPrefix(p.DeviceOwner, ownerNetworkPrefix)
	if !p.PortSecurityEnabled {
		if len(p.AllowedAddressPairs) > 0 {
			return conflict("AddressPairAndPortSecurityRequired", "Port Security must be enabled in order to have allowed address pairs on a port.")
		}
		if len(p.SecurityGroups) > 0 {
			if fresh || r.hasGroups {
				return newErr(400, "PortSecurityAndIPRequiredForSecurityGroups", "Port security must be enabled and port must have an IP address in order to use security groups.")
			}
			return conflict("PortSecurityPortHasSecurityGroup", "Port has security group associated. Cannot disable port security or ip address until security group is removed")
		}
		return nil
	}
	if fresh && !r.hasGroups && !networkOwned {
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
			return nil, securityGroupNotFound(id)
		}
		if err != nil {
			return nil, err
		}
		g := o.(*SecurityGroup)
		if g.ProjectID != p.ProjectID && p.ProjectID != "" {
			return nil, securityGroupNotFound(id)
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

// vifDetails is binding:vif_details for a VIF type.
func vifDetails(p *Port, n *Network) map[string]any {
	switch p.VIFType {
	case "tap":
		return map[string]any{"port_filter": filtered(p), "connectivity": "l2"}
	case "hw_veb":
		vlan := "0"
		if n != nil && n.NetworkType == "vlan" {
			vlan = strconv.Itoa(n.SegmentationID)
		}
		return map[string]any{"port_filter": false, "vlan": vlan, "connectivity": "l2"}
	}
	return map[string]any{}
}

func (s *Service) getPort(tx *nsdb.Tx, c *identity.Context, id string) (*Port, *Network, error) {
	o, err := tx.Get(PortKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil, portNotFound(id)
	}
	if err != nil {
		return nil, nil, err
	}
	p := o.(*Port)
	no, err := tx.Get(NetworkKind, p.NetworkID)
	if err != nil {
		return nil, nil, err
	}
	n := no.(*Network)
	if !portVisible(c, p, n) {
		return nil, nil, portNotFound(id)
	}
	return p, n, nil
}

// portVisible is get_port's policy: the port's or the network's owner.
func portVisible(c *identity.Context, p *Port, n *Network) bool {
	return owns(c, &p.Std) || (n != nil && n.ProjectID == c.ProjectID)
}

// UpdatePort changes a port: addresses, groups, pairs, binding and the
// rest, re-translating it in the same transaction.
func (s *Service) UpdatePort(ctx context.Context, c *identity.Context, id string, b Body, ifRev int64) (*Port, error) {
	if err := portSpec.check(b, false, c, "port"); err != nil {
		return nil, err
	}
	if b.has("mac_address") && !c.IsAdmin() {
		return nil, policyNotAuthorized("update_port:mac_address")
	}
	var out *Port
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		p, _, err := s.getPort(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "update_port"); err != nil {
			return err
		}
		if err := checkRevision(&p.Std, ifRev); err != nil {
			return err
		}
		was := *p
		var r portReq
		if err := p.decode(b, &r); err != nil {
			return err
		}
		if isRouterPort(&was) && (r.hasFixed || b.has("device_owner") || b.has("device_id")) {
			return inUse("L3PortInUse", "Port %s has owner %s and therefore cannot be updated this way: use the router's interface operations.", id, was.DeviceOwner)
		}
		if !r.mac.IsZero() && r.mac != was.MACAddress && was.VIFType != vifUnbound && was.VIFType != vifBindingFailed {
			return inUse("PortBound", "Unable to complete operation on port %s, port is already bound, port type: %s, old_mac %s, new_mac %s.", id, was.VIFType, was.MACAddress, r.mac)
		}
		if r.hasFixed {
			// Floating IPs on addresses the port gives up lose their
			// association (Neutron refuses; disassociating is kinder to
			// Nova's fixed-IP changes and keeps the NAT rules consistent).
			if err := s.disassociateLost(tx, p, r.fixed); err != nil {
				return err
			}
		}
		s.touch(&p.Std)
		if err := s.writePort(tx, c, p, r, false); err != nil {
			return err
		}
		out = p
		return nil
	})
	return out, err
}

// DeletePort deletes a port; floating IPs on it are disassociated and port
// forwardings to it deleted. Router and floating IP ports go with their
// router interface or floating IP, not through this call.
func (s *Service) DeletePort(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		// The port's and its network's owners may delete it (getPort
		// hides it from anyone else).
		p, _, err := s.getPort(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "delete_port"); err != nil {
			return err
		}
		if err := checkRevision(&p.Std, ifRev); err != nil {
			return err
		}
		switch p.DeviceOwner {
		case OwnerRouterInterface, OwnerRouterGateway, OwnerFloatingIP:
			return inUse("ServicePortInUse", "Port %s cannot be deleted directly via the port API: has device owner %s.", id, p.DeviceOwner)
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
	for _, r := range sortedKeys(routers) {
		if err := s.retranslateRouter(tx, r); err != nil {
			return err
		}
	}
	return nil
}

// removePort releases a port's addresses and deletes it with its
// translation.
func (s *Service) removePort(tx *nsdb.Tx, p *Port) error {
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
func (s *Service) disassociateLost(tx *nsdb.Tx, p *Port, next []fixedReq) error {
	fips, err := tx.List(FloatingIPKind, "port_id", p.ID)
	if err != nil {
		return err
	}
	for _, o := range fips {
		f := o.(*FloatingIP)
		kept := slices.ContainsFunc(next, func(r fixedReq) bool {
			if r.ip.IsValid() {
				return r.ip == f.FixedIPAddress
			}
			return slices.ContainsFunc(p.FixedIPs, func(x FixedIP) bool { return x.SubnetID == r.subnetID && x.IPAddress == f.FixedIPAddress })
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
