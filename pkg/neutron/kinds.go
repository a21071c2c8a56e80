package neutron

import (
	"encoding/json"
	"net/netip"
	"strings"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The Neutron objects as stored: internal kinds of the NSDB (see
// model.RegisterInternal), so that references between them (a subnet's
// network, a port's security groups) get the store's integrity checks and
// reverse index, and unique values (a MAC on a network, an address in a
// subnet) are enforced by the same etcd transaction that writes them. The
// JSON names are storage names; the API's representation is built by the
// view functions.

// Std holds Neutron's standard attributes and the bookkeeping every stored
// Neutron object needs.
type Std struct {
	model.Meta
	// ProjectRef is the project's neutron-project object: the reverse
	// index over it lists a project's objects and counts them for quotas
	// without scanning the kind. Empty for objects of no project (router
	// gateway ports, as in Neutron).
	ProjectRef     string   `json:"project_ref,omitempty" nagare:"ref=neutron-project,ondelete=restrict"`
	ProjectID      string   `json:"project_id"`
	Name           string   `json:"name,omitempty"`
	Description    string   `json:"description,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	CreatedAt      string   `json:"created_at"`
	UpdatedAt      string   `json:"updated_at"`
	RevisionNumber int64    `json:"revision_number"`

	// owned is the object's Translation once loaded (see apply).
	owned       map[string]string
	ownedLoaded bool
}

func (s *Std) std() *Std { return s }

// StdRequest is what a create or update request says about the standard
// attributes. Like every request type of this package it holds decoded,
// well-formed values (the API layer decodes them); nil means the request
// does not name the attribute.
type StdRequest struct {
	// ProjectID is the project a create names (tenant_id or project_id);
	// nil is the caller's.
	ProjectID   *string
	Name        *string
	Description *string
	Tags        *[]string // as NormalizeTags returns them
}

// apply sets the attributes the request names.
func (r *StdRequest) apply(st *Std) {
	set(&st.Name, r.Name)
	set(&st.Description, r.Description)
	set(&st.Tags, r.Tags)
}

// set copies a requested value over dst when the request names one.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// deref is a requested value and whether the request names one.
func deref[T any](p *T) (T, bool) {
	if p == nil {
		var zero T
		return zero, false
	}
	return *p, true
}

// Object is any stored Neutron object with standard attributes.
type Object interface {
	model.Object
	std() *Std
}

// Translation records the native objects a Neutron object's translation
// wrote ("kind/id") with a hash of their translated form, so that a later
// translation removes what it no longer wants and rewrites only what
// changed. It is kept apart from the Neutron object, which lists decode
// thousands of times, and read only when that object is rewritten.
type Translation struct {
	model.Meta
	Owned map[string]string `json:"owned"`
}

// Project records that a project has used the Neutron API: it anchors the
// project's objects (see Std.ProjectRef), names its default security group
// and holds its quota overrides. Its id derives from the project id, which
// is any string a Keystone issues.
type Project struct {
	model.Meta
	ProjectID      string         `json:"project_id" nagare:"required,unique"`
	DefaultGroupID string         `json:"default_group_id,omitempty"`
	Quotas         map[string]int `json:"quotas,omitempty"`
}

// Network is a Neutron network; it translates to a bridge of the same id.
type Network struct {
	Std
	AdminStateUp        bool   `json:"admin_state_up"`
	Shared              bool   `json:"shared"`
	External            bool   `json:"router_external"`
	MTU                 int    `json:"mtu"`
	NetworkType         string `json:"network_type"`
	PhysicalNetwork     string `json:"physical_network,omitempty"`
	SegmentationID      int    `json:"segmentation_id,omitempty"`
	PortSecurityEnabled bool   `json:"port_security_enabled"`
	// Segment is unique: one network per VXLAN/GRE id, per VLAN on a
	// physical network, per flat physical network.
	Segment         string `json:"segment,omitempty" nagare:"unique"`
	DNSDomain       string `json:"dns_domain,omitempty"`
	VLANTransparent bool   `json:"vlan_transparent,omitempty"`
	// ExternalTargeted: the network is external only for the projects its
	// access_as_external policies name (no wildcard policy).
	ExternalTargeted bool   `json:"external_targeted,omitempty"`
	QoSPolicyID      string `json:"qos_policy_id,omitempty" nagare:"ref=neutron-qos-policy,ondelete=restrict"`
}

// Pool is an allocation pool of a subnet.
type Pool struct {
	Start netip.Addr `json:"start"`
	End   netip.Addr `json:"end"`
}

// Route is a subnet's host route or a router's static route.
type Route struct {
	Destination netip.Prefix `json:"destination"`
	NextHop     netip.Addr   `json:"nexthop"`
}

// Subnet is a Neutron subnet; an IPv4 one translates to a DHCP subnet of the
// same id on its network's bridge.
type Subnet struct {
	Std
	NetworkID       string       `json:"network_id" nagare:"ref=neutron-network,ondelete=restrict,required,parent"`
	IPVersion       int          `json:"ip_version"`
	CIDR            netip.Prefix `json:"cidr"`
	GatewayIP       netip.Addr   `json:"gateway_ip,omitzero"`
	AllocationPools []Pool       `json:"allocation_pools,omitempty"`
	DNSNameservers  []netip.Addr `json:"dns_nameservers,omitempty"`
	HostRoutes      []Route      `json:"host_routes,omitempty"`
	EnableDHCP      bool         `json:"enable_dhcp"`
	IPv6RAMode      string       `json:"ipv6_ra_mode,omitempty"`
	IPv6AddressMode string       `json:"ipv6_address_mode,omitempty"`
	// ServiceTypes are the device owners whose ports take addresses here
	// (subnet-service-types; none: any port).
	ServiceTypes []string `json:"service_types,omitempty"`
	SubnetPoolID string   `json:"subnetpool_id,omitempty" nagare:"ref=neutron-subnetpool,ondelete=restrict"`
}

// FixedIP is one address of a port.
type FixedIP struct {
	SubnetID  string     `json:"subnet_id"`
	IPAddress netip.Addr `json:"ip_address"`
}

// AddressPair is an allowed address pair: an address or prefix (and MAC)
// the port may send from besides its own.
type AddressPair struct {
	IPAddress  netip.Prefix `json:"ip_address"`
	MACAddress packet.MAC   `json:"mac_address"`
}

// Port is a Neutron port; it translates to a bridge port of the same id.
type Port struct {
	Std
	NetworkID           string        `json:"network_id" nagare:"ref=neutron-network,ondelete=restrict,required,parent"`
	MACAddress          packet.MAC    `json:"mac_address" nagare:"unique=network_id"`
	FixedIPs            []FixedIP     `json:"fixed_ips,omitempty"`
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs,omitempty"`
	PortSecurityEnabled bool          `json:"port_security_enabled"`
	SecurityGroups      []string      `json:"security_groups,omitempty" nagare:"ref=neutron-security-group,ondelete=restrict"`
	DeviceID            string        `json:"device_id,omitempty"`
	DeviceOwner         string        `json:"device_owner,omitempty"`
	// RouterID names the router of an interface or gateway port: deleting
	// the router is refused while it has interfaces.
	RouterID      string          `json:"router_id,omitempty" nagare:"ref=neutron-router,ondelete=restrict"`
	AdminStateUp  bool            `json:"admin_state_up"`
	BindingHostID string          `json:"binding_host_id,omitempty"`
	VNICType      string          `json:"binding_vnic_type"`
	Profile       json.RawMessage `json:"binding_profile,omitempty"`
	VIFType       string          `json:"binding_vif_type"`
	Status        string          `json:"status"`
	ExtraDHCPOpts []ExtraDHCPOpt  `json:"extra_dhcp_opts,omitempty"`
	DNSName       string          `json:"dns_name,omitempty"`
	Trusted       *bool           `json:"trusted,omitempty"`
	QoSPolicyID   string          `json:"qos_policy_id,omitempty" nagare:"ref=neutron-qos-policy,ondelete=restrict"`
	// ExtraGateway marks a router's gateway port other than its
	// compatibility gateway (external-gateway-multihoming): no default
	// route through it.
	ExtraGateway bool `json:"extra_gateway,omitempty"`
}

// IPAllocation is one address in use in a subnet. Its id derives from the
// subnet and the address, and the address is unique in the subnet, so two
// ports racing for one address collide in etcd.
type IPAllocation struct {
	model.Meta
	SubnetID  string     `json:"subnet_id" nagare:"ref=neutron-subnet,ondelete=restrict,required"`
	PortID    string     `json:"port_id" nagare:"ref=neutron-port,ondelete=cascade,required,parent"`
	IPAddress netip.Addr `json:"ip_address" nagare:"required,unique=subnet_id"`
}

// Router is a Neutron router; it translates to a router of the same id
// with pre- and post-routing chains for NAT.
type Router struct {
	Std
	AdminStateUp     bool    `json:"admin_state_up"`
	GatewayNetworkID string  `json:"gw_network_id,omitempty" nagare:"ref=neutron-network,ondelete=restrict"`
	GatewayPortID    string  `json:"gw_port_id,omitempty" nagare:"ref=neutron-port,ondelete=nullify"`
	EnableSNAT       bool    `json:"enable_snat"`
	Routes           []Route `json:"routes,omitempty"`
}

// FloatingIP is a Neutron floating IP: an address of an external network
// (held by a port of owner network:floatingip) statically NATed to a fixed
// address behind a router.
type FloatingIP struct {
	Std
	FloatingNetworkID string     `json:"floating_network_id" nagare:"ref=neutron-network,ondelete=restrict,required"`
	FloatingSubnetID  string     `json:"floating_subnet_id,omitempty"`
	FloatingIPAddress netip.Addr `json:"floating_ip_address"`
	FloatingPortID    string     `json:"floating_port_id,omitempty" nagare:"ref=neutron-port,ondelete=restrict"`
	PortID            string     `json:"port_id,omitempty" nagare:"ref=neutron-port,ondelete=restrict"`
	FixedIPAddress    netip.Addr `json:"fixed_ip_address,omitzero"`
	RouterID          string     `json:"router_id,omitempty" nagare:"ref=neutron-router,ondelete=restrict"`
	Status            string     `json:"status"`
	DNSName           string     `json:"dns_name,omitempty"`
	DNSDomain         string     `json:"dns_domain,omitempty"`
}

// SecurityGroup is a Neutron security group; it translates to an ingress
// and an egress chain and an IP address group of its members' addresses.
type SecurityGroup struct {
	Std
	Stateful  bool `json:"stateful"`
	IsDefault bool `json:"is_default,omitempty"`
}

// SecurityGroupRule is one rule of a security group.
type SecurityGroupRule struct {
	Std
	SecurityGroupID string       `json:"security_group_id" nagare:"ref=neutron-security-group,ondelete=cascade,required,parent"`
	Direction       string       `json:"direction"`
	Ethertype       string       `json:"ethertype"`
	Protocol        string       `json:"protocol,omitempty"`
	PortRangeMin    *int         `json:"port_range_min,omitempty"`
	PortRangeMax    *int         `json:"port_range_max,omitempty"`
	RemoteIPPrefix  netip.Prefix `json:"remote_ip_prefix,omitzero"`
	RemoteGroupID   string       `json:"remote_group_id,omitempty" nagare:"ref=neutron-security-group,ondelete=cascade"`
	// RemoteAddressGroupID names an address group whose prefixes are the
	// rule's remote.
	RemoteAddressGroupID string `json:"remote_address_group_id,omitempty" nagare:"ref=neutron-address-group,ondelete=restrict"`
	// Fingerprint is unique within the group: Neutron refuses a rule
	// identical to an existing one.
	Fingerprint string `json:"fingerprint" nagare:"unique=security_group_id"`
}

// PortForwarding forwards a protocol port of a floating IP to an address
// and port behind the router.
type PortForwarding struct {
	Std
	FloatingIPID      string     `json:"floatingip_id" nagare:"ref=neutron-floatingip,ondelete=cascade,required,parent"`
	InternalPortID    string     `json:"internal_port_id" nagare:"ref=neutron-port,ondelete=restrict,required"`
	InternalIPAddress netip.Addr `json:"internal_ip_address"`
	// InternalPort and ExternalPort start the ranges that InternalPortEnd
	// and ExternalPortEnd end (0: one port).
	InternalPort    int    `json:"internal_port"`
	InternalPortEnd int    `json:"internal_port_end,omitempty"`
	ExternalPort    int    `json:"external_port"`
	ExternalPortEnd int    `json:"external_port_end,omitempty"`
	Protocol        string `json:"protocol"`
	// ExternalKey ("tcp/8080", the first external port) is unique per
	// floating IP.
	ExternalKey string `json:"external_key" nagare:"unique=floatingip_id"`
}

// InternalRange is the forwarding's internal ports (first, last).
func (pf *PortForwarding) InternalRange() (int, int) {
	return pf.InternalPort, max(pf.InternalPort, pf.InternalPortEnd)
}

// ExternalRange is the forwarding's external ports (first, last).
func (pf *PortForwarding) ExternalRange() (int, int) {
	return pf.ExternalPort, max(pf.ExternalPort, pf.ExternalPortEnd)
}

var (
	ProjectKind           = model.RegisterInternal("neutron-project", "neutron-projects", "A project that used the Neutron API.", &Project{}, nil)
	NetworkKind           = model.RegisterInternal("neutron-network", "neutron-networks", "A Neutron network.", &Network{}, nil)
	SubnetKind            = model.RegisterInternal("neutron-subnet", "neutron-subnets", "A Neutron subnet.", &Subnet{}, nil)
	SecurityGroupKind     = model.RegisterInternal("neutron-security-group", "neutron-security-groups", "A Neutron security group.", &SecurityGroup{}, nil)
	SecurityGroupRuleKind = model.RegisterInternal("neutron-security-group-rule", "neutron-security-group-rules", "A rule of a Neutron security group.", &SecurityGroupRule{}, nil)
	RouterKind            = model.RegisterInternal("neutron-router", "neutron-routers", "A Neutron router.", &Router{}, nil)
	PortKind              = model.RegisterInternal("neutron-port", "neutron-ports", "A Neutron port.", &Port{}, nil)
	IPAllocationKind      = model.RegisterInternal("neutron-ip-allocation", "neutron-ip-allocations", "An address in use in a Neutron subnet.", &IPAllocation{}, nil)
	FloatingIPKind        = model.RegisterInternal("neutron-floatingip", "neutron-floatingips", "A Neutron floating IP.", &FloatingIP{}, nil)
	PortForwardingKind    = model.RegisterInternal("neutron-port-forwarding", "neutron-port-forwardings", "A port forwarding of a floating IP.", &PortForwarding{}, nil)
	TranslationKind       = model.RegisterInternal("neutron-translation", "neutron-translations", "The native objects a Neutron object's translation wrote.", &Translation{}, nil)
)

// namespace derives the ids of objects whose identity is a tuple: the
// native objects a translation writes (so a translation is a pure function
// of the Neutron objects, and recomputing it names the same objects), IP
// allocations, projects.
var namespace = uuid.MustParse("0b6a3f3e-8f0e-4a8e-9a59-5c1d2e7f4a10")

// DerivedID is the id of the object named by parts.
func DerivedID(parts ...string) string {
	return uuid.NewSHA1(namespace, []byte(strings.Join(parts, "\x00"))).String()
}

func projectObjectID(projectID string) string { return DerivedID("project", projectID) }

// resourceName is the Neutron resource a kind stores ("security_group" for
// neutron-security-group), as policy actions and messages name it.
func resourceName(k *model.Kind) string {
	return strings.ReplaceAll(strings.TrimPrefix(k.Name, "neutron-"), "-", "_")
}

func allocationID(subnetID string, ip netip.Addr) string {
	return DerivedID("ip", subnetID, ip.String())
}

// Device owners with a meaning here (neutron_lib.constants).
const (
	OwnerRouterInterface = "network:router_interface"
	OwnerRouterGateway   = "network:router_gateway"
	OwnerFloatingIP      = "network:floatingip"
	OwnerDHCP            = "network:dhcp"
	ownerNetworkPrefix   = "network:"
)
