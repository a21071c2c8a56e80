package model

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// The native topology. Struct tags are the schema: `json` names the API
// field, `nagare` carries the rest (see schema.go for the tag grammar). The
// order of fields is the order the CLI prints them in.

// Meta is embedded by every object.
type Meta struct {
	ID string `json:"id" nagare:"ro,doc=UUID; chosen by the server unless given on create"`
	// Revision is the etcd modification revision of the stored object. Send
	// it back on update (or in If-Match) to fail with 409 if someone else
	// wrote in between.
	Revision int64 `json:"revision,omitempty" nagare:"ro,doc=store revision; send it back on update for compare-and-swap"`
}

// GetMeta gives generic code access to the common fields.
func (m *Meta) GetMeta() *Meta { return m }

// Object is any stored object of the native topology.
type Object interface {
	GetMeta() *Meta
}

// State is the administrative state of a device or port.
type State string

const (
	StateUp   State = "up"
	StateDown State = "down"
)

// Host is a hypervisor or gateway running nagare-agent. Agents create and
// refresh their own record; Alive is derived from the agent's etcd lease.
type Host struct {
	Meta
	Name string `json:"name" nagare:"cli=name,required,unique,doc=host name as the agent registered it"`
	// Alive comes before Addresses so that `list host` prints
	// midonet-cli's columns first: name, alive, then the rest.
	Alive     bool         `json:"alive" nagare:"cli=alive,ro,derived,doc=true while the host's agent holds its lease"`
	Addresses []netip.Addr `json:"addresses,omitempty" nagare:"cli=addresses,doc=addresses of the host's interfaces"`
	// PhysicalNetworks are the physical networks the agent maps to host
	// interfaces (--physical-interface-mappings); the agent writes them.
	PhysicalNetworks []string `json:"physical_networks,omitempty" nagare:"cli=physical-networks,doc=physical networks the agent maps to interfaces (it writes them)"`
}

// TunnelType is the encapsulation of a tunnel zone.
type TunnelType string

const (
	TunnelVXLAN TunnelType = "vxlan"
	TunnelGRE   TunnelType = "gre"
	TunnelVTEP  TunnelType = "vtep"
)

// TunnelZone is a set of hosts that reach each other over one encapsulation.
type TunnelZone struct {
	Meta
	Name string     `json:"name" nagare:"cli=name,required,unique"`
	Type TunnelType `json:"type" nagare:"cli=type,enum=vxlan|gre|vtep,default=vxlan"`
}

// TunnelZoneMember says where a host's tunnels end inside a zone.
type TunnelZoneMember struct {
	Meta
	TunnelZoneID string     `json:"tunnel_zone_id" nagare:"cli=zone,ref=tunnel-zone,ondelete=cascade,required,parent"`
	HostID       string     `json:"host_id" nagare:"cli=host,ref=host,ondelete=cascade,required,unique=tunnel_zone_id"`
	Address      netip.Addr `json:"address" nagare:"cli=address,required,doc=underlay address of the host's tunnel endpoint"`
}

// Bridge is a virtual L2 switch.
type Bridge struct {
	Meta
	Name             string `json:"name,omitempty" nagare:"cli=name"`
	State            State  `json:"state" nagare:"cli=state,enum=up|down,default=up"`
	TenantID         string `json:"tenant_id,omitempty" nagare:"cli=tenant"`
	InboundFilterID  string `json:"inbound_filter_id,omitempty" nagare:"cli=infilter,ref=chain,ondelete=restrict"`
	OutboundFilterID string `json:"outbound_filter_id,omitempty" nagare:"cli=outfilter,ref=chain,ondelete=restrict"`
}

// Router is a virtual L3 router.
type Router struct {
	Meta
	Name             string `json:"name,omitempty" nagare:"cli=name"`
	State            State  `json:"state" nagare:"cli=state,enum=up|down,default=up"`
	TenantID         string `json:"tenant_id,omitempty" nagare:"cli=tenant"`
	InboundFilterID  string `json:"inbound_filter_id,omitempty" nagare:"cli=infilter,ref=chain,ondelete=restrict,doc=pre-routing chain"`
	OutboundFilterID string `json:"outbound_filter_id,omitempty" nagare:"cli=outfilter,ref=chain,ondelete=restrict,doc=post-routing chain"`
	LoadBalancerID   string `json:"load_balancer_id,omitempty" nagare:"cli=load-balancer,ref=load-balancer,ondelete=nullify"`
	// ASN is the router's autonomous system on its BGP uplinks (bgp.go).
	ASN uint32 `json:"asn,omitempty" nagare:"cli=asn,doc=autonomous system number the router's BGP uplinks speak as (0: no BGP)"`
}

// Port belongs to exactly one bridge or router. It is exterior when bound to
// a host interface (HostID + InterfaceName) and interior when linked to a
// peer port; never both.
type Port struct {
	Meta
	BridgeID         string       `json:"bridge_id,omitempty" nagare:"cli=device,ref=bridge,ondelete=restrict,parent"`
	RouterID         string       `json:"router_id,omitempty" nagare:"cli=device,ref=router,ondelete=restrict,parent"`
	State            State        `json:"state" nagare:"cli=state,enum=up|down,default=up"`
	InboundFilterID  string       `json:"inbound_filter_id,omitempty" nagare:"cli=infilter,ref=chain,ondelete=restrict"`
	OutboundFilterID string       `json:"outbound_filter_id,omitempty" nagare:"cli=outfilter,ref=chain,ondelete=restrict"`
	VLAN             uint16       `json:"vlan,omitempty" nagare:"cli=vlan,max=4094,doc=802.1Q VLAN of a bridge port (0 = untagged)"`
	MAC              packet.MAC   `json:"mac,omitzero" nagare:"cli=mac,doc=router ports get a random locally administered MAC when unset"`
	Address          netip.Addr   `json:"address,omitzero" nagare:"cli=address,doc=router port address"`
	Network          netip.Prefix `json:"network,omitzero" nagare:"cli=net,doc=router port subnet; must contain address"`
	PeerID           string       `json:"peer_id,omitempty" nagare:"cli=peer,ref=port,ondelete=nullify,doc=interior link; kept symmetric by the server"`
	HostID           string       `json:"host_id,omitempty" nagare:"cli=host,ref=host,ondelete=nullify,doc=binding: host of the interface"`
	InterfaceName    string       `json:"interface_name,omitempty" nagare:"cli=interface,unique=host_id,doc=binding: interface name on the host"`
	TunnelKey        uint32       `json:"tunnel_key,omitempty" nagare:"cli=tunnel-key,ro,unique,doc=24-bit key naming this port in tunnel headers"`
	// PhysicalNetwork makes a bridge port the bridge's uplink to a
	// physical network: one alive agent that maps the physical network
	// binds it (host_id, interface_name) to its interface, or to the VLAN
	// subinterface of PhysicalVLAN. See pkg/agent/uplink.
	PhysicalNetwork string `json:"physical_network,omitempty" nagare:"cli=physical-network,doc=uplink to this physical network; an agent mapping it binds the port"`
	PhysicalVLAN    uint16 `json:"physical_vlan,omitempty" nagare:"cli=physical-vlan,max=4094,doc=802.1Q VLAN of the uplink on the physical network (0 = untagged)"`
	QoSPolicyID     string `json:"qos_policy_id,omitempty" nagare:"cli=qos-policy,ref=qos-policy,ondelete=nullify,doc=rate limits and DSCP marking of the port's traffic"`
	// A trunk subport (a VLAN-aware VM's): frames tagged ParentVLAN on the
	// interface of port ParentID enter through this port, untagged, and
	// what leaves by this port goes out that interface tagged ParentVLAN.
	ParentID   string `json:"parent_id,omitempty" nagare:"cli=parent,ref=port,ondelete=nullify,doc=trunk subport: the parent port whose interface carries this port's traffic tagged parent_vlan"`
	ParentVLAN uint16 `json:"parent_vlan,omitempty" nagare:"cli=parent-vlan,max=4094,doc=trunk subport: the 802.1Q VLAN of its traffic on the parent's interface"`
	// Port security (Neutron's port security with its security groups;
	// OVN's port_security with port groups and address sets), by
	// reference: a port's filter is built in (pkg/sim/portsec.go) and
	// names its groups' chains, so a port costs no chain or rule objects
	// of its own. With Sources set, what the port sends must come from one
	// of them (ARP and neighbor advertisements may claim only their
	// addresses), DHCP requests and neighbor and router solicitations
	// pass, router advertisements do not, and the rest passes only if one
	// of EgressChainIDs accepts it; what it receives passes if it is ARP,
	// a DHCP reply or neighbor discovery, or if one of IngressChainIDs
	// accepts it. With Stateful, return traffic of tracked connections
	// passes both ways.
	Sources         []PortSource `json:"sources,omitempty" nagare:"cli=sources,doc=port security: MAC=PREFIX pairs the port may send from; setting any turns the port's built-in filter on"`
	EgressChainIDs  []string     `json:"egress_chain_ids,omitempty" nagare:"cli=egress-chains,ref=chain,ondelete=restrict,doc=port security: chains any of which may accept what the port sends"`
	IngressChainIDs []string     `json:"ingress_chain_ids,omitempty" nagare:"cli=ingress-chains,ref=chain,ondelete=restrict,doc=port security: chains any of which may accept what the port receives"`
	Stateful        bool         `json:"stateful,omitempty" nagare:"cli=stateful,doc=port security: return traffic of tracked connections passes"`
	// MemberAddrs are members of every group in IPAddrGroupIDs while the
	// port exists: a security group's address set, which its rules naming
	// it as remote group match, costs a port one key, not one per address.
	MemberAddrs    []netip.Addr `json:"member_addresses,omitempty" nagare:"cli=member-addresses,doc=addresses the port puts in its ip-address-groups"`
	IPAddrGroupIDs []string     `json:"ip_addr_group_ids,omitempty" nagare:"cli=ip-address-groups,ref=ip-address-group,ondelete=restrict,doc=IP address groups the port's member-addresses belong to"`
}

// Secured reports whether the port's built-in filter (port security) is on.
func (p *Port) Secured() bool { return len(p.Sources) > 0 }

// IsRouterPort reports whether the port belongs to a router.
func (p *Port) IsRouterPort() bool { return p.RouterID != "" }

// DeviceID is the bridge or router the port belongs to.
func (p *Port) DeviceID() string {
	if p.RouterID != "" {
		return p.RouterID
	}
	return p.BridgeID
}

// Bound reports whether the port is exterior (bound to a host interface).
func (p *Port) Bound() bool { return p.HostID != "" }

// RouteType says what a matching route does.
type RouteType string

const (
	RouteNormal    RouteType = "normal"
	RouteBlackhole RouteType = "blackhole"
	RouteReject    RouteType = "reject"
)

// Route is a router's route. Longest prefix wins; among equal prefixes the
// lowest weight wins, and equal weights spread flows (ECMP).
type Route struct {
	Meta
	RouterID string       `json:"router_id" nagare:"cli=router,ref=router,ondelete=cascade,required,parent"`
	Type     RouteType    `json:"type" nagare:"cli=type,enum=normal|blackhole|reject,default=normal"`
	Src      netip.Prefix `json:"src,omitzero" nagare:"cli=src,doc=source prefix; default any of dst's family"`
	Dst      netip.Prefix `json:"dst" nagare:"cli=dst,required"`
	Gateway  netip.Addr   `json:"gateway,omitzero" nagare:"cli=gw,doc=next hop; unset means the destination is on-link"`
	PortID   string       `json:"port_id,omitempty" nagare:"cli=port,ref=port,ondelete=cascade,doc=egress port; required for normal routes"`
	Weight   uint32       `json:"weight" nagare:"cli=weight,default=100,max=65535"`
	// Learned routes are not stored: a gateway's agent publishes what its
	// BGP peers announce under its lease, and readers (the API, the
	// agents' mirrors) show them as routes with Learned set (bgp.go).
	Learned bool `json:"learned,omitempty" nagare:"cli=learned,ro,derived,doc=learned from a BGP peer; not stored, gone with the peer or its gateway"`
}

// Chain is an ordered list of rules.
type Chain struct {
	Meta
	Name     string   `json:"name,omitempty" nagare:"cli=name"`
	TenantID string   `json:"tenant_id,omitempty" nagare:"cli=tenant"`
	RuleIDs  []string `json:"rule_ids,omitempty" nagare:"ro,ref=rule,ondelete=nullify,nocli,doc=rules in evaluation order"`
}

// RuleType is what a rule does when its condition matches.
type RuleType string

const (
	RuleAccept   RuleType = "accept"
	RuleDrop     RuleType = "drop"
	RuleReject   RuleType = "reject"
	RuleContinue RuleType = "continue"
	RuleJump     RuleType = "jump"
	RuleReturn   RuleType = "return"
	RuleSNAT     RuleType = "snat"
	RuleDNAT     RuleType = "dnat"
	RuleRevSNAT  RuleType = "rev_snat"
	RuleRevDNAT  RuleType = "rev_dnat"
)

// IsNAT reports whether the rule translates addresses.
func (t RuleType) IsNAT() bool {
	return t == RuleSNAT || t == RuleDNAT || t == RuleRevSNAT || t == RuleRevDNAT
}

// Condition is what a rule matches. Every condition that has an Inv* twin
// can be negated (the CLI writes "src !10.0.0.0/8"). Unset conditions match
// anything.
type Condition struct {
	InPortIDs         []string     `json:"in_port_ids,omitempty" nagare:"cli=in-ports,ref=port,ondelete=nullify,inv=inv_in_ports"`
	InvInPorts        bool         `json:"inv_in_ports,omitempty" nagare:"nocli"`
	OutPortIDs        []string     `json:"out_port_ids,omitempty" nagare:"cli=out-ports,ref=port,ondelete=nullify,inv=inv_out_ports"`
	InvOutPorts       bool         `json:"inv_out_ports,omitempty" nagare:"nocli"`
	PortGroupID       string       `json:"port_group_id,omitempty" nagare:"cli=port-group,ref=port-group,ondelete=restrict,inv=inv_port_group"`
	InvPortGroup      bool         `json:"inv_port_group,omitempty" nagare:"nocli"`
	IPAddrGroupSrcID  string       `json:"ip_addr_group_src_id,omitempty" nagare:"cli=ip-address-group-src,ref=ip-address-group,ondelete=restrict,inv=inv_ip_addr_group_src"`
	InvIPAddrGroupSrc bool         `json:"inv_ip_addr_group_src,omitempty" nagare:"nocli"`
	IPAddrGroupDstID  string       `json:"ip_addr_group_dst_id,omitempty" nagare:"cli=ip-address-group-dst,ref=ip-address-group,ondelete=restrict,inv=inv_ip_addr_group_dst"`
	InvIPAddrGroupDst bool         `json:"inv_ip_addr_group_dst,omitempty" nagare:"nocli"`
	EtherType         uint16       `json:"ethertype,omitempty" nagare:"cli=ethertype,inv=inv_ethertype"`
	InvEtherType      bool         `json:"inv_ethertype,omitempty" nagare:"nocli"`
	SrcMAC            packet.MAC   `json:"src_mac,omitzero" nagare:"cli=src-mac,inv=inv_src_mac"`
	InvSrcMAC         bool         `json:"inv_src_mac,omitempty" nagare:"nocli"`
	DstMAC            packet.MAC   `json:"dst_mac,omitzero" nagare:"cli=dst-mac,inv=inv_dst_mac"`
	InvDstMAC         bool         `json:"inv_dst_mac,omitempty" nagare:"nocli"`
	Src               netip.Prefix `json:"src,omitzero" nagare:"cli=src,inv=inv_src"`
	InvSrc            bool         `json:"inv_src,omitempty" nagare:"nocli"`
	Dst               netip.Prefix `json:"dst,omitzero" nagare:"cli=dst,inv=inv_dst"`
	InvDst            bool         `json:"inv_dst,omitempty" nagare:"nocli"`
	Proto             uint8        `json:"proto,omitempty" nagare:"cli=proto,inv=inv_proto,doc=IP protocol number (6 tcp, 17 udp, 1 icmp)"`
	InvProto          bool         `json:"inv_proto,omitempty" nagare:"nocli"`
	TOS               uint8        `json:"tos,omitempty" nagare:"cli=tos"`
	SrcPort           PortRange    `json:"src_port,omitzero" nagare:"cli=src-port,inv=inv_src_port,doc=L4 source port or range; ICMP type"`
	InvSrcPort        bool         `json:"inv_src_port,omitempty" nagare:"nocli"`
	DstPort           PortRange    `json:"dst_port,omitzero" nagare:"cli=dst-port,inv=inv_dst_port,doc=L4 destination port or range; ICMP code"`
	InvDstPort        bool         `json:"inv_dst_port,omitempty" nagare:"nocli"`
	FragmentPolicy    string       `json:"fragment_policy,omitempty" nagare:"cli=fragment-policy,enum=any|header|nonheader|unfragmented"`
	Flow              string       `json:"flow,omitempty" nagare:"cli=flow,enum=fwd-flow|return-flow,doc=match only the forward or only the return direction of tracked connections"`
	CTState           string       `json:"ct_state,omitempty" nagare:"cli=ct-state,enum=new|established|related|invalid,inv=inv_ct_state,doc=connection-tracking state: new; established (seen both ways); related (an ICMP error about a tracked connection); invalid. Untracked packets (not IP; neighbor discovery) match none"`
	InvCTState        bool         `json:"inv_ct_state,omitempty" nagare:"nocli"`
	ARPSHA            packet.MAC   `json:"arp_sha,omitzero" nagare:"cli=arp-sha,inv=inv_arp_sha,doc=sender hardware address inside an ARP payload; a frame that is not ARP does not match"`
	InvARPSHA         bool         `json:"inv_arp_sha,omitempty" nagare:"nocli"`
	NDTarget          netip.Prefix `json:"nd_target,omitzero" nagare:"cli=nd-target,inv=inv_nd_target,doc=IPv6 target address of a neighbor solicitation or advertisement; any other frame does not match"`
	InvNDTarget       bool         `json:"inv_nd_target,omitempty" nagare:"nocli"`
}

// Rule is one entry of a chain.
type Rule struct {
	Meta
	ChainID string `json:"chain_id" nagare:"cli=chain,ref=chain,ondelete=cascade,required,parent"`
	Condition
	Position    int         `json:"position,omitempty" nagare:"cli=pos,min=0,doc=1-based place in the chain; on create inserts there (default: append)"`
	Type        RuleType    `json:"type" nagare:"cli=type,required,enum=accept|drop|reject|continue|jump|return|snat|dnat|rev_snat|rev_dnat"`
	FlowAction  string      `json:"flow_action,omitempty" nagare:"cli=action,enum=accept|continue|return,doc=what a NAT rule does after translating"`
	JumpChainID string      `json:"jump_chain_id,omitempty" nagare:"cli=jump-to,ref=chain,ondelete=restrict"`
	Targets     []NATTarget `json:"targets,omitempty" nagare:"cli=target,doc=NAT targets IP[-IP][:PORT[-PORT]]"`
}

// QoSPolicy limits and marks the traffic of the ports that name it: a
// token bucket per direction and a DSCP rewrite of what the port sends.
// Egress is what the port's VM sends, ingress what it receives (Neutron's
// directions).
type QoSPolicy struct {
	Meta
	Name             string `json:"name,omitempty" nagare:"cli=name"`
	TenantID         string `json:"tenant_id,omitempty" nagare:"cli=tenant"`
	EgressMaxKbps    uint32 `json:"egress_max_kbps,omitempty" nagare:"cli=egress-max-kbps,doc=rate limit of what the port sends, kbit/s (0: none)"`
	EgressBurstKbit  uint32 `json:"egress_burst_kbit,omitempty" nagare:"cli=egress-burst-kbit,doc=bucket size of the egress limit, kbit (0: 80% of a second at the rate)"`
	IngressMaxKbps   uint32 `json:"ingress_max_kbps,omitempty" nagare:"cli=ingress-max-kbps,doc=rate limit of what the port receives, kbit/s (0: none)"`
	IngressBurstKbit uint32 `json:"ingress_burst_kbit,omitempty" nagare:"cli=ingress-burst-kbit,doc=bucket size of the ingress limit, kbit (0: 80% of a second at the rate)"`
	MarkDSCP         bool   `json:"mark_dscp,omitempty" nagare:"cli=mark-dscp,doc=rewrite the DSCP of the IP packets the port sends"`
	DSCPMark         uint8  `json:"dscp_mark,omitempty" nagare:"cli=dscp,max=63,doc=the DSCP value written with mark-dscp"`
}

// Mirror copies the frames of a port to a destination: "in" those the
// port delivers to its interface (what a VM receives), "out" those that
// enter by it (what the VM sends), or both. The destination is another
// port (a tap service's), which gets each copy as the mirrored port's
// interface saw it, or a remote address, GRE-encapsulated (transparent
// Ethernet, Key as the GRE key) or ERSPAN type II (Key's low 10 bits as
// the session ID), sent from the underlay address of the host the
// mirrored port is bound on.
// VLANs, when set, limits the copies to frames of those VLANs
// ("10,20-30").
type Mirror struct {
	Meta
	Name       string     `json:"name,omitempty" nagare:"cli=name"`
	TenantID   string     `json:"tenant_id,omitempty" nagare:"cli=tenant"`
	PortID     string     `json:"port_id" nagare:"cli=port,required,ref=port,ondelete=cascade,doc=the mirrored port"`
	Direction  string     `json:"direction" nagare:"cli=direction,enum=in|out|both,default=both,doc=in: what the port delivers to its interface, out: what enters by it"`
	DestPortID string     `json:"dest_port_id,omitempty" nagare:"cli=dest-port,ref=port,ondelete=cascade,doc=the port the copies leave by"`
	RemoteIP   netip.Addr `json:"remote_ip,omitzero" nagare:"cli=remote-ip,doc=the tunnel endpoint the copies are sent to (instead of a port)"`
	Encap      string     `json:"encap,omitempty" nagare:"cli=encap,enum=gre|erspan,doc=the encapsulation towards remote-ip"`
	Key        uint32     `json:"key,omitempty" nagare:"cli=key,doc=GRE key or ERSPAN session ID (its low 10 bits) towards remote-ip"`
	VLANs      string     `json:"vlans,omitempty" nagare:"cli=vlans,doc=mirror only frames of these VLANs (10,20-30)"`
}

// PortGroup groups ports for rule conditions; stateful groups share flow
// state among their members (asymmetric paths).
type PortGroup struct {
	Meta
	Name     string `json:"name,omitempty" nagare:"cli=name"`
	TenantID string `json:"tenant_id,omitempty" nagare:"cli=tenant"`
	Stateful bool   `json:"stateful,omitempty" nagare:"cli=stateful"`
}

// PortGroupMember puts a port in a port group.
type PortGroupMember struct {
	Meta
	PortGroupID string `json:"port_group_id" nagare:"cli=group,ref=port-group,ondelete=cascade,required,parent"`
	PortID      string `json:"port_id" nagare:"cli=port,ref=port,ondelete=cascade,required,unique=port_group_id"`
}

// IPAddrGroup is a named set of addresses for rule conditions.
type IPAddrGroup struct {
	Meta
	Name     string `json:"name,omitempty" nagare:"cli=name"`
	TenantID string `json:"tenant_id,omitempty" nagare:"cli=tenant"`
}

// IPAddrGroupAddr is one address of an IP address group.
type IPAddrGroupAddr struct {
	Meta
	IPAddrGroupID string     `json:"ip_addr_group_id" nagare:"cli=group,ref=ip-address-group,ondelete=cascade,required,parent"`
	Address       netip.Addr `json:"address" nagare:"cli=address,required,unique=ip_addr_group_id"`
}

// DHCPSubnet makes the agents answer DHCP on a bridge for one subnet.
type DHCPSubnet struct {
	Meta
	BridgeID      string        `json:"bridge_id" nagare:"cli=bridge,ref=bridge,ondelete=cascade,required,parent"`
	Gateway       netip.Addr    `json:"gateway,omitzero" nagare:"cli=gw,doc=default router handed to clients"`
	ServerAddress netip.Addr    `json:"server_address,omitzero" nagare:"cli=server,doc=address the DHCP server answers from; default the gateway"`
	DNSServers    []netip.Addr  `json:"dns_servers,omitempty" nagare:"cli=dns-servers"`
	Subnet        netip.Prefix  `json:"subnet" nagare:"cli=subnet,required,unique=bridge_id"`
	MTU           uint16        `json:"mtu,omitempty" nagare:"cli=interface-mtu,max=65535,doc=interface MTU option; default the overlay MTU"`
	Opt121Routes  []Opt121Route `json:"opt121_routes,omitempty" nagare:"cli=opt121-routes,doc=classless static routes DEST=GW"`
	Disabled      bool          `json:"disabled,omitempty" nagare:"cli=disabled"`
}

// DHCPHost is a fixed address for one MAC inside a DHCP subnet.
type DHCPHost struct {
	Meta
	DHCPSubnetID string       `json:"dhcp_subnet_id" nagare:"cli=subnet-id,ref=dhcp-subnet,ondelete=cascade,required,parent"`
	Name         string       `json:"name,omitempty" nagare:"cli=name"`
	MAC          packet.MAC   `json:"mac" nagare:"cli=mac,required,unique=dhcp_subnet_id"`
	Address      netip.Addr   `json:"address" nagare:"cli=address,required,unique=dhcp_subnet_id"`
	Options      []DHCPOption `json:"options,omitempty" nagare:"cli=options,doc=extra options for this host CODE=VALUE (they replace the subnet's of the same code)"`
}

// LoadBalancer is an L4 load balancer whose VIPs live on a router.
type LoadBalancer struct {
	Meta
	Name     string `json:"name,omitempty" nagare:"cli=name"`
	State    State  `json:"state" nagare:"cli=state,enum=up|down,default=up"`
	TenantID string `json:"tenant_id,omitempty" nagare:"cli=tenant"`
}

// Pool is a set of members that VIPs balance over.
type Pool struct {
	Meta
	LoadBalancerID  string `json:"load_balancer_id" nagare:"cli=load-balancer,ref=load-balancer,ondelete=cascade,required,parent"`
	Protocol        string `json:"protocol" nagare:"cli=protocol,enum=tcp|udp,default=tcp"`
	Method          string `json:"lb_method" nagare:"cli=lb-method,enum=round_robin|weighted,default=weighted"`
	HealthMonitorID string `json:"health_monitor_id,omitempty" nagare:"cli=health-monitor,ref=health-monitor,ondelete=nullify"`
	State           State  `json:"state" nagare:"cli=state,enum=up|down,default=up"`
}

// PoolMember is one backend of a pool.
type PoolMember struct {
	Meta
	PoolID       string     `json:"pool_id" nagare:"cli=pool,ref=pool,ondelete=cascade,required,parent"`
	Address      netip.Addr `json:"address" nagare:"cli=address,required"`
	ProtocolPort uint16     `json:"protocol_port" nagare:"cli=port,required,min=1,max=65535"`
	Weight       uint16     `json:"weight" nagare:"cli=weight,default=1,max=256"`
	State        State      `json:"state" nagare:"cli=state,enum=up|down,default=up"`
	Status       string     `json:"status,omitempty" nagare:"cli=status,ro,derived,doc=health as seen by the monitors: up, down or no_monitor"`
}

// Health statuses of a pool member (PoolMember.Status), written by the
// agents' health monitors under /nagare/v1/state/pool-member/<host>/<id>. Only
// MemberDown takes a member out of balancing: a member nobody has checked
// yet ("") is used, like one whose pool has no monitor.
const (
	MemberUp        = "up"
	MemberDown      = "down"
	MemberNoMonitor = "no_monitor"
)

// VIP is an address and port on a load balancer's router that is balanced over a pool.
type VIP struct {
	Meta
	LoadBalancerID     string     `json:"load_balancer_id" nagare:"cli=load-balancer,ref=load-balancer,ondelete=cascade,required,parent"`
	PoolID             string     `json:"pool_id" nagare:"cli=pool,ref=pool,ondelete=cascade,required"`
	Address            netip.Addr `json:"address" nagare:"cli=address,required"`
	ProtocolPort       uint16     `json:"protocol_port" nagare:"cli=port,required,min=1,max=65535"`
	SessionPersistence string     `json:"session_persistence,omitempty" nagare:"cli=persistence,enum=source_ip"`
}

// HealthMonitor checks pool members.
type HealthMonitor struct {
	Meta
	Name       string `json:"name,omitempty" nagare:"cli=name"`
	Type       string `json:"type" nagare:"cli=type,enum=tcp|http,default=tcp"`
	Delay      uint32 `json:"delay" nagare:"cli=delay,default=5,min=1,max=3600,doc=seconds between checks"`
	Timeout    uint32 `json:"timeout" nagare:"cli=timeout,default=5,min=1,max=3600,doc=seconds before a check fails"`
	MaxRetries uint32 `json:"max_retries" nagare:"cli=max-retries,default=3,min=1,max=10,doc=consecutive successes before a down member is up again"`
	// MaxRetriesDown defaults to 1, not Octavia's 3, so that a failed
	// member leaves rotation within two monitor intervals.
	MaxRetriesDown uint32 `json:"max_retries_down" nagare:"cli=max-retries-down,default=1,min=1,max=10,doc=consecutive failures before a member is down"`
	HTTPMethod     string `json:"http_method,omitempty" nagare:"cli=http-method,enum=GET|HEAD,default=GET"`
	URLPath        string `json:"url_path,omitempty" nagare:"cli=url-path,default=/"`
	ExpectedCodes  string `json:"expected_codes,omitempty" nagare:"cli=expected-codes,default=200"`
	State          State  `json:"state" nagare:"cli=state,enum=up|down,default=up"`
}
