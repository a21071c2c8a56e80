package neutron

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Reads: what a caller may see, and how Neutron shows it.

// Resource names a Neutron resource for the generic read path.
type Resource struct {
	Singular, Plural string
	Kind             *model.Kind
	spec             spec
	// Path is the collection's URL path segment where it differs from
	// Plural (security-groups, security-group-rules).
	Path string
}

// URLPath is the collection's path segment under /v2.0.
func (r *Resource) URLPath() string {
	if r.Path != "" {
		return r.Path
	}
	return r.Plural
}

// Resources are the resources served under /v2.0 with the standard
// list/show conventions.
var (
	Networks           = &Resource{"network", "networks", NetworkKind, networkSpec, ""}
	Subnets            = &Resource{"subnet", "subnets", SubnetKind, subnetSpec, ""}
	Ports              = &Resource{"port", "ports", PortKind, portSpec, ""}
	Routers            = &Resource{"router", "routers", RouterKind, routerSpec, ""}
	FloatingIPs        = &Resource{"floatingip", "floatingips", FloatingIPKind, fipSpec, ""}
	SecurityGroups     = &Resource{"security_group", "security_groups", SecurityGroupKind, groupSpec, "security-groups"}
	SecurityGroupRules = &Resource{"security_group_rule", "security_group_rules", SecurityGroupRuleKind, ruleSpec, "security-group-rules"}
	PortForwardings    = &Resource{"port_forwarding", "port_forwardings", PortForwardingKind, pfSpec, ""}
)

// Attribute reports whether name is an attribute of the resource (for
// filters, fields and sort keys), and whether the caller may see it.
func (r *Resource) Attribute(name string, c *identity.Context) (exists, visible bool) {
	a, ok := r.spec[name]
	if !ok {
		return false, false
	}
	return true, !a.adminView || c.IsAdmin()
}

// NotFound is the resource's not-found error.
func (r *Resource) NotFound(id string) error {
	switch r {
	case Networks:
		return networkNotFound(id)
	case Subnets:
		return subnetNotFound(id)
	case Ports:
		return portNotFound(id)
	case Routers:
		return routerNotFound(id)
	case FloatingIPs:
		return floatingIPNotFound(id)
	case SecurityGroups:
		return securityGroupNotFound(id)
	case SecurityGroupRules:
		return securityGroupRuleNotFound(id)
	}
	return portForwardingNotFound(id)
}

// Viewer renders objects for one caller within one snapshot, caching what
// several views share (the subnets of networks, the rules of groups).
type Viewer struct {
	s        *Service
	tx       *nsdb.Tx
	c        *identity.Context
	networks map[string]*Network
	subnets  map[string][]string // network → subnet ids, when all were listed
	rules    map[string][]*SecurityGroupRule
}

// Read runs fn with a viewer over one consistent snapshot.
func (s *Service) Read(ctx context.Context, c *identity.Context, fn func(v *Viewer) error) error {
	return s.view(ctx, func(tx *nsdb.Tx) error {
		return fn(&Viewer{s: s, tx: tx, c: c, networks: map[string]*Network{}})
	})
}

func (v *Viewer) network(id string) *Network {
	if n, ok := v.networks[id]; ok {
		return n
	}
	o, err := v.tx.Get(NetworkKind, id)
	var n *Network
	if err == nil {
		n = o.(*Network)
	}
	v.networks[id] = n
	return n
}

// Get returns one object the caller may see (the resource's NotFound
// otherwise).
func (v *Viewer) Get(r *Resource, id string) (model.Object, error) {
	o, err := v.tx.Get(r.Kind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, r.NotFound(id)
	}
	if err != nil {
		return nil, err
	}
	if !v.visible(o) {
		return nil, r.NotFound(id)
	}
	return o, nil
}

// visible is each resource's get policy.
func (v *Viewer) visible(o model.Object) bool {
	c := v.c
	if c.IsAdmin() {
		return true
	}
	switch x := o.(type) {
	case *Network:
		return networkVisible(c, x)
	case *Subnet:
		return subnetVisible(c, x, v.network(x.NetworkID))
	case *Port:
		return portVisible(c, x, v.network(x.NetworkID))
	case *SecurityGroupRule:
		if owns(c, &x.Std) {
			return true
		}
		g, err := v.tx.Get(SecurityGroupKind, x.SecurityGroupID)
		return err == nil && owns(c, &g.(*SecurityGroup).Std)
	case Object:
		return owns(c, x.std())
	}
	return false
}

// List returns the objects of a resource the caller may see, in creation
// order. narrow, when not empty, is a reference filter (network_id,
// device_id of router ports, security_group_id, …) with a single value
// that the store answers from its index instead of scanning the kind.
func (v *Viewer) List(r *Resource, narrowField, narrowValue string) ([]model.Object, error) {
	var objs []model.Object
	var err error
	k := r.Kind
	switch {
	case narrowField != "":
		objs, err = v.tx.List(k, narrowField, narrowValue)
	case v.c.IsAdmin() || r == Networks || r == Subnets:
		objs, err = v.tx.List(k, "", "")
	default:
		// A project's own objects come from its index; ports on its
		// shared networks and rules of its groups are added.
		objs, err = v.tx.List(k, "project_ref", projectObjectID(v.c.ProjectID))
		if err == nil {
			objs, err = v.addShared(r, objs)
		}
	}
	if err != nil {
		return nil, err
	}
	if r == Subnets && narrowField == "" {
		v.subnets = map[string][]string{}
		for _, o := range objs {
			s := o.(*Subnet)
			v.subnets[s.NetworkID] = append(v.subnets[s.NetworkID], s.ID)
		}
	}
	out := objs[:0]
	for _, o := range objs {
		if v.visible(o) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (v *Viewer) addShared(r *Resource, own []model.Object) ([]model.Object, error) {
	seen := map[string]bool{}
	for _, o := range own {
		seen[o.GetMeta().ID] = true
	}
	var more []model.Object
	switch r {
	case Ports:
		nets, err := v.tx.List(NetworkKind, "project_ref", projectObjectID(v.c.ProjectID))
		if err != nil {
			return nil, err
		}
		for _, n := range nets {
			if !n.(*Network).Shared {
				continue
			}
			ps, err := v.tx.List(PortKind, "network_id", n.GetMeta().ID)
			if err != nil {
				return nil, err
			}
			more = append(more, ps...)
		}
	case SecurityGroupRules:
		groups, err := v.tx.List(SecurityGroupKind, "project_ref", projectObjectID(v.c.ProjectID))
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			rs, err := v.tx.List(SecurityGroupRuleKind, "security_group_id", g.GetMeta().ID)
			if err != nil {
				return nil, err
			}
			more = append(more, rs...)
		}
	}
	for _, o := range more {
		if !seen[o.GetMeta().ID] {
			seen[o.GetMeta().ID] = true
			own = append(own, o)
		}
	}
	return own, nil
}

func stdView(st *Std, withName bool) map[string]any {
	tags := st.Tags
	if tags == nil {
		tags = []string{}
	}
	m := map[string]any{
		"id": st.ID, "tenant_id": st.ProjectID, "project_id": st.ProjectID, "description": st.Description,
		"tags": tags, "created_at": st.CreatedAt, "updated_at": st.UpdatedAt, "revision_number": st.RevisionNumber,
	}
	if withName {
		m["name"] = st.Name
	}
	return m
}

func addrOrNil(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// View renders an object as Neutron shows it to the caller, hiding the
// attributes only admins see.
func (v *Viewer) View(o model.Object) map[string]any {
	admin := v.c.IsAdmin()
	switch x := o.(type) {
	case *Network:
		m := stdView(&x.Std, true)
		m["admin_state_up"] = x.AdminStateUp
		m["status"] = "ACTIVE"
		m["subnets"] = v.subnetIDs(x.ID)
		m["shared"] = x.Shared
		m["router:external"] = x.External
		m["mtu"] = x.MTU
		m["port_security_enabled"] = x.PortSecurityEnabled
		m["availability_zone_hints"] = []string{}
		m["availability_zones"] = []string{}
		m["ipv4_address_scope"] = nil
		m["ipv6_address_scope"] = nil
		m["l2_adjacency"] = true
		if x.External {
			m["is_default"] = false
		}
		if admin {
			m["provider:network_type"] = x.NetworkType
			m["provider:physical_network"] = strOrNil(x.PhysicalNetwork)
			if x.NetworkType == "flat" {
				m["provider:segmentation_id"] = nil
			} else {
				m["provider:segmentation_id"] = x.SegmentationID
			}
		}
		return m
	case *Subnet:
		m := stdView(&x.Std, true)
		pools := make([]map[string]string, len(x.AllocationPools))
		for i, p := range x.AllocationPools {
			pools[i] = map[string]string{"start": p.Start.String(), "end": p.End.String()}
		}
		dns := make([]string, len(x.DNSNameservers))
		for i, a := range x.DNSNameservers {
			dns[i] = a.String()
		}
		routes := make([]map[string]string, len(x.HostRoutes))
		for i, r := range x.HostRoutes {
			routes[i] = map[string]string{"destination": r.Destination.String(), "nexthop": r.NextHop.String()}
		}
		m["network_id"], m["ip_version"], m["cidr"] = x.NetworkID, x.IPVersion, x.CIDR.String()
		m["gateway_ip"] = addrOrNil(x.GatewayIP)
		m["allocation_pools"], m["dns_nameservers"], m["host_routes"] = pools, dns, routes
		m["enable_dhcp"] = x.EnableDHCP
		m["ipv6_ra_mode"], m["ipv6_address_mode"] = strOrNil(x.IPv6RAMode), strOrNil(x.IPv6AddressMode)
		m["subnetpool_id"], m["segment_id"] = nil, nil
		m["service_types"] = []string{}
		return m
	case *Port:
		m := stdView(&x.Std, true)
		ips := make([]map[string]string, len(x.FixedIPs))
		for i, f := range x.FixedIPs {
			ips[i] = map[string]string{"subnet_id": f.SubnetID, "ip_address": f.IPAddress.String()}
		}
		pairs := make([]map[string]string, len(x.AllowedAddressPairs))
		for i, p := range x.AllowedAddressPairs {
			ip := p.IPAddress.String()
			if p.IPAddress.IsSingleIP() {
				ip = p.IPAddress.Addr().String()
			}
			mac := p.MACAddress
			if mac.IsZero() {
				mac = x.MACAddress
			}
			pairs[i] = map[string]string{"ip_address": ip, "mac_address": mac.String()}
		}
		groups := x.SecurityGroups
		if groups == nil {
			groups = []string{}
		}
		m["network_id"], m["mac_address"], m["admin_state_up"], m["status"] = x.NetworkID, x.MACAddress.String(), x.AdminStateUp, x.Status
		m["device_id"], m["device_owner"] = x.DeviceID, x.DeviceOwner
		m["fixed_ips"], m["allowed_address_pairs"], m["security_groups"] = ips, pairs, groups
		m["port_security_enabled"] = x.PortSecurityEnabled
		m["binding:vnic_type"] = x.VNICType
		m["ip_allocation"] = "immediate"
		if admin {
			profile := map[string]any{}
			if len(x.Profile) > 0 {
				_ = json.Unmarshal(x.Profile, &profile)
			}
			m["binding:host_id"] = x.BindingHostID
			m["binding:profile"] = profile
			m["binding:vif_type"] = x.VIFType
			m["binding:vif_details"] = vifDetails(x, v.network(x.NetworkID))
		}
		return m
	case *Router:
		m := stdView(&x.Std, true)
		m["admin_state_up"], m["status"] = x.AdminStateUp, "ACTIVE"
		m["external_gateway_info"] = v.gatewayInfo(x)
		routes := make([]map[string]string, len(x.Routes))
		for i, r := range x.Routes {
			routes[i] = map[string]string{"destination": r.Destination.String(), "nexthop": r.NextHop.String()}
		}
		m["routes"] = routes
		m["flavor_id"] = nil
		m["availability_zone_hints"], m["availability_zones"] = []string{}, []string{}
		if admin {
			m["distributed"], m["ha"] = false, false
		}
		return m
	case *FloatingIP:
		m := stdView(&x.Std, false)
		m["floating_network_id"], m["floating_ip_address"] = x.FloatingNetworkID, x.FloatingIPAddress.String()
		m["router_id"], m["port_id"] = strOrNil(x.RouterID), strOrNil(x.PortID)
		m["fixed_ip_address"] = addrOrNil(x.FixedIPAddress)
		m["status"] = x.Status
		m["port_details"] = v.portDetails(x.PortID)
		return m
	case *SecurityGroup:
		m := stdView(&x.Std, true)
		m["stateful"] = x.Stateful
		m["shared"] = false
		rules := []map[string]any{}
		for _, r := range v.groupRules(x.ID) {
			rules = append(rules, v.View(r))
		}
		m["security_group_rules"] = rules
		return m
	case *SecurityGroupRule:
		m := stdView(&x.Std, false)
		m["security_group_id"], m["direction"], m["ethertype"] = x.SecurityGroupID, x.Direction, x.Ethertype
		m["protocol"] = strOrNil(x.Protocol)
		m["port_range_min"], m["port_range_max"] = intOrNil(x.PortRangeMin), intOrNil(x.PortRangeMax)
		m["remote_ip_prefix"], m["normalized_cidr"] = nil, nil
		if x.RemoteIPPrefix.IsValid() {
			m["remote_ip_prefix"], m["normalized_cidr"] = x.RemoteIPPrefix.String(), x.RemoteIPPrefix.Masked().String()
		}
		m["remote_group_id"] = strOrNil(x.RemoteGroupID)
		m["remote_address_group_id"] = nil
		g, err := v.tx.Get(SecurityGroupKind, x.SecurityGroupID)
		m["belongs_to_default_sg"] = err == nil && g.(*SecurityGroup).IsDefault
		return m
	case *PortForwarding:
		return map[string]any{"id": x.ID, "internal_port_id": x.InternalPortID, "internal_ip_address": x.InternalIPAddress.String(),
			"internal_port": x.InternalPort, "external_port": x.ExternalPort, "protocol": x.Protocol, "description": x.Description,
			"internal_port_range": rangeText(x.InternalPort), "external_port_range": rangeText(x.ExternalPort)}
	}
	return nil
}

func rangeText(p int) string { return itoa(p) + ":" + itoa(p) }

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func (v *Viewer) subnetIDs(netID string) []string {
	if v.subnets != nil {
		if ids := v.subnets[netID]; ids != nil {
			return ids
		}
		return []string{}
	}
	objs, err := v.tx.List(SubnetKind, "network_id", netID)
	ids := []string{}
	if err != nil {
		return ids
	}
	for _, o := range objs {
		ids = append(ids, o.GetMeta().ID)
	}
	return ids
}

// LoadSubnets lists every subnet once so that rendering many networks
// does not list each network's subnets separately.
func (v *Viewer) LoadSubnets() error {
	objs, err := v.tx.List(SubnetKind, "", "")
	if err != nil {
		return err
	}
	v.subnets = map[string][]string{}
	for _, o := range objs {
		s := o.(*Subnet)
		v.subnets[s.NetworkID] = append(v.subnets[s.NetworkID], s.ID)
	}
	return nil
}

func (v *Viewer) groupRules(id string) []*SecurityGroupRule {
	if v.rules == nil {
		v.rules = map[string][]*SecurityGroupRule{}
	}
	if rs, ok := v.rules[id]; ok {
		return rs
	}
	rs, _ := groupRules(v.tx, id)
	v.rules[id] = rs
	return rs
}

func (v *Viewer) gatewayInfo(r *Router) any {
	if r.GatewayNetworkID == "" {
		return nil
	}
	ips := []map[string]string{}
	if r.GatewayPortID != "" {
		if o, err := v.tx.Get(PortKind, r.GatewayPortID); err == nil {
			for _, f := range o.(*Port).FixedIPs {
				ips = append(ips, map[string]string{"subnet_id": f.SubnetID, "ip_address": f.IPAddress.String()})
			}
		}
	}
	return map[string]any{"network_id": r.GatewayNetworkID, "enable_snat": r.EnableSNAT, "external_fixed_ips": ips}
}

// portDetails is the fip-port-details extension's summary of the port.
func (v *Viewer) portDetails(id string) any {
	if id == "" {
		return nil
	}
	o, err := v.tx.Get(PortKind, id)
	if err != nil {
		return nil
	}
	p := o.(*Port)
	return map[string]any{"name": p.Name, "network_id": p.NetworkID, "mac_address": p.MACAddress.String(),
		"admin_state_up": p.AdminStateUp, "status": p.Status, "device_id": p.DeviceID, "device_owner": p.DeviceOwner}
}
