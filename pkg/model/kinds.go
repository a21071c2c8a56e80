package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/packet"
)

// The registry, in dependency order (a kind is declared after the kinds it references
// where possible, which is also the order the OpenAPI document lists them in).
var (
	HostKind             = register("host", "hosts", "A hypervisor or gateway running nagare-agent.", &Host{}, nil)
	TunnelZoneKind       = register("tunnel-zone", "tunnel-zones", "Hosts that reach each other over one encapsulation.", &TunnelZone{}, nil)
	TunnelZoneMemberKind = register("tunnel-zone-member", "tunnel-zone-members", "Where a host's tunnels end in a zone.", &TunnelZoneMember{}, checkTunnelZoneMember)
	ChainKind            = register("chain", "chains", "An ordered list of rules.", &Chain{}, nil)
	BridgeKind           = register("bridge", "bridges", "A virtual L2 switch.", &Bridge{}, nil)
	LoadBalancerKind     = register("load-balancer", "load-balancers", "An L4 load balancer.", &LoadBalancer{}, nil)
	RouterKind           = register("router", "routers", "A virtual L3 router.", &Router{}, nil)
	QoSPolicyKind        = register("qos-policy", "qos-policies", "Rate limits and DSCP marking of ports.", &QoSPolicy{}, nil)
	PortKind             = register("port", "ports", "A port of a bridge or router.", &Port{}, checkPort)
	MirrorKind           = register("mirror", "mirrors", "A copy of a port's traffic to a port or a remote tunnel endpoint.", &Mirror{}, checkMirror)
	RouteKind            = register("route", "routes", "A route of a router.", &Route{}, checkRoute)
	BGPPeerKind          = register("bgp-peer", "bgp-peers", "A BGP session of a router on one of its uplink ports.", &BGPPeer{}, checkBGPPeer)
	BGPNetworkKind       = register("bgp-network", "bgp-networks", "A prefix a router's BGP uplinks announce.", &BGPNetwork{}, checkBGPNetwork)
	RuleKind             = register("rule", "rules", "A rule of a chain.", &Rule{}, checkRule)
	PortGroupKind        = register("port-group", "port-groups", "A named group of ports.", &PortGroup{}, nil)
	PortGroupMemberKind  = register("port-group-member", "port-group-members", "A port in a port group.", &PortGroupMember{}, nil)
	IPAddrGroupKind      = register("ip-address-group", "ip-address-groups", "A named set of addresses.", &IPAddrGroup{}, nil)
	IPAddrGroupAddrKind  = register("ip-address-group-address", "ip-address-group-addresses", "An address in an IP address group.", &IPAddrGroupAddr{}, nil)
	DHCPSubnetKind       = register("dhcp-subnet", "dhcp-subnets", "DHCP service for one subnet of a bridge.", &DHCPSubnet{}, checkDHCPSubnet)
	DHCPHostKind         = register("dhcp-host", "dhcp-hosts", "A fixed DHCP address for one MAC.", &DHCPHost{}, nil)
	HealthMonitorKind    = register("health-monitor", "health-monitors", "How agents check pool members.", &HealthMonitor{}, nil)
	PoolKind             = register("pool", "pools", "Backends a load balancer spreads over.", &Pool{}, nil)
	PoolMemberKind       = register("pool-member", "pool-members", "One backend of a pool.", &PoolMember{}, nil)
	VIPKind              = register("vip", "vips", "A balanced address and port on a load balancer.", &VIP{}, checkVIP)
)

// normalize brings values to canonical form before validation: prefixes are
// masked, a route's unset source becomes "any" of its destination's family.
func normalize(o Object) {
	switch x := o.(type) {
	case *Port:
		if x.Network.IsValid() {
			x.Network = x.Network.Masked()
		}
	case *Route:
		x.Dst = maskValid(x.Dst)
		x.Src = maskValid(x.Src)
		if !x.Src.IsValid() && x.Dst.IsValid() {
			x.Src = netip.PrefixFrom(zeroOf(x.Dst.Addr()), 0)
		}
	case *Rule:
		x.Src, x.Dst, x.NDTarget = maskValid(x.Src), maskValid(x.Dst), maskValid(x.NDTarget)
		if x.Type.IsNAT() && x.FlowAction == "" {
			x.FlowAction = "accept"
		}
	case *BGPNetwork:
		x.Network = maskValid(x.Network)
	case *DHCPSubnet:
		x.Subnet = maskValid(x.Subnet)
		if !x.ServerAddress.IsValid() {
			x.ServerAddress = x.Gateway
		}
	}
}

func maskValid(p netip.Prefix) netip.Prefix {
	if p.IsValid() {
		return p.Masked()
	}
	return p
}

func zeroOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func checkTunnelZoneMember(o Object) error {
	m := o.(*TunnelZoneMember)
	if !m.Address.IsValid() || m.Address.IsUnspecified() || m.Address.IsMulticast() {
		return fieldErr("address", "%q is not a usable unicast address", m.Address)
	}
	return nil
}

// checkPortSecurity: port security and address-group membership are a
// bridge port's (a VM's); the chains judge what passed anti-spoofing, so
// they need sources.
func checkPortSecurity(p *Port) error {
	switch {
	case p.BridgeID == "" && p.Secured():
		return fieldErr("sources", "port security is a bridge port's: a router port has no sources")
	case p.BridgeID == "" && len(p.IPAddrGroupIDs) > 0:
		return fieldErr("ip_addr_group_ids", "only bridge ports join IP address groups")
	case !p.Secured() && len(p.EgressChainIDs) > 0:
		return fieldErr("egress_chain_ids", "the chains of port security need sources (MAC=PREFIX) to filter what the port sends")
	case !p.Secured() && len(p.IngressChainIDs) > 0:
		return fieldErr("ingress_chain_ids", "the chains of port security need sources (MAC=PREFIX)")
	case !p.Secured() && p.Stateful:
		return fieldErr("stateful", "stateful is part of port security: set sources (MAC=PREFIX) too")
	case len(p.MemberAddrs) > 0 && len(p.IPAddrGroupIDs) == 0:
		return fieldErr("member_addresses", "member addresses need the IP address groups they belong to (ip_addr_group_ids)")
	}
	return nil
}

func checkPort(o Object) error {
	p := o.(*Port)
	switch {
	case p.BridgeID == "" && p.RouterID == "":
		return fieldErr("bridge_id", "a port belongs to a bridge or a router: set bridge_id or router_id")
	case p.BridgeID != "" && p.RouterID != "":
		return fieldErr("router_id", "a port belongs to one device: set bridge_id or router_id, not both")
	case (p.HostID == "") != (p.InterfaceName == ""):
		if p.HostID == "" {
			return fieldErr("host_id", "a binding needs both host_id and interface_name")
		}
		return fieldErr("interface_name", "a binding needs both host_id and interface_name")
	case p.HostID != "" && p.PeerID != "":
		return fieldErr("peer_id", "a port is either bound to an interface or linked to a peer, not both")
	case p.PeerID != "" && p.PeerID == p.ID:
		return fieldErr("peer_id", "a port cannot be its own peer")
	case (p.ParentID == "") != (p.ParentVLAN == 0):
		return fieldErr("parent_vlan", "a trunk subport needs both parent_id and parent_vlan")
	case p.ParentID != "" && (p.BridgeID == "" || p.HostID != "" || p.PeerID != "" || p.ParentID == p.ID):
		return fieldErr("parent_id", "a trunk subport is a bridge port reached through another port's interface: it is neither bound nor linked, and not its own parent")
	}
	if err := checkPhysical(p); err != nil {
		return err
	}
	if p.InterfaceName != "" && !validIfName(p.InterfaceName) {
		return fieldErr("interface_name", "%q is not a Linux interface name (1-15 characters, no '/', ':' or spaces)", p.InterfaceName)
	}
	if p.MAC.IsMulticast() {
		return fieldErr("mac", "%s is a multicast address", p.MAC)
	}
	if err := checkPortSecurity(p); err != nil {
		return err
	}
	if p.BridgeID != "" {
		if p.Address.IsValid() || p.Network.IsValid() {
			return fieldErr("address", "bridge ports have no address; addresses belong to router ports")
		}
		return nil
	}
	if p.VLAN != 0 {
		return fieldErr("vlan", "only bridge ports carry a VLAN")
	}
	if p.Address.IsValid() != p.Network.IsValid() {
		if p.Address.IsValid() {
			return fieldErr("network", "a router port address needs its network (net)")
		}
		return fieldErr("address", "a router port network needs the port's address")
	}
	if p.Address.IsValid() && !p.Network.Contains(p.Address) {
		return fieldErr("address", "%s is not inside network %s", p.Address, p.Network)
	}
	return nil
}

// checkPhysical checks a physical-network uplink: a bridge port that is not
// linked to a peer, named in the mapping syntax's alphabet.
func checkPhysical(p *Port) error {
	if p.PhysicalNetwork == "" {
		if p.PhysicalVLAN != 0 {
			return fieldErr("physical_vlan", "a VLAN on the physical network needs physical_network")
		}
		return nil
	}
	switch {
	case p.BridgeID == "":
		return fieldErr("physical_network", "only bridge ports are uplinks to a physical network")
	case p.PeerID != "":
		return fieldErr("physical_network", "an uplink to a physical network is bound by an agent, not linked to a peer")
	case p.VLAN != 0:
		return fieldErr("vlan", "an uplink carries the bridge's untagged traffic; its tag on the wire is physical_vlan")
	case !ValidPhysicalNetwork(p.PhysicalNetwork):
		return fieldErr("physical_network", "%q is not a physical network name (1-64 characters, no ',', ':' or spaces)", p.PhysicalNetwork)
	}
	return nil
}

// ValidPhysicalNetwork reports whether s can name a physical network in
// the agents' mapping syntax ("physnet1:eth1,physnet2:eth2").
func ValidPhysicalNetwork(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ',' || c == ':' || c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func checkMirror(o Object) error {
	m := o.(*Mirror)
	switch {
	case (m.DestPortID == "") == !m.RemoteIP.IsValid():
		return fieldErr("dest_port_id", "a mirror sends its copies to a port or to a remote address, one of the two")
	case m.RemoteIP.IsValid() && m.Encap == "":
		return fieldErr("encap", "a remote mirror needs an encapsulation (gre or erspan)")
	case m.DestPortID == m.PortID:
		return fieldErr("dest_port_id", "a port cannot be its own mirror")
	}
	if _, err := ParseVLANSet(m.VLANs); err != nil {
		return fieldErr("vlans", "%v", err)
	}
	return nil
}

// ParseVLANSet reads a set of VLANs ("10,20-30"; "" is none).
func ParseVLANSet(s string) ([][2]uint16, error) {
	if s == "" {
		return nil, nil
	}
	var out [][2]uint16
	for _, part := range strings.Split(s, ",") {
		lo, hi, ranged := strings.Cut(part, "-")
		if !ranged {
			hi = lo
		}
		a, err1 := strconv.ParseUint(lo, 10, 12)
		b, err2 := strconv.ParseUint(hi, 10, 12)
		if err1 != nil || err2 != nil || a > b || b > 4095 {
			return nil, fmt.Errorf("%q is not a VLAN or a range of VLANs", part)
		}
		out = append(out, [2]uint16{uint16(a), uint16(b)})
	}
	return out, nil
}

func checkRoute(o Object) error {
	r := o.(*Route)
	if r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return fieldErr("src", "source %s and destination %s are of different families", r.Src, r.Dst)
	}
	if r.Gateway.IsValid() && r.Gateway.Is4() != r.Dst.Addr().Is4() {
		return fieldErr("gateway", "gateway %s is %s but destination %s is not", r.Gateway, FamilyOf(r.Gateway), r.Dst)
	}
	if r.Type == RouteNormal && r.PortID == "" {
		return fieldErr("port_id", "a normal route needs its egress port")
	}
	return nil
}

func checkRule(o Object) error {
	r := o.(*Rule)
	if r.Type == RuleJump && r.JumpChainID == "" {
		return fieldErr("jump_chain_id", "a jump rule needs the chain to jump to")
	}
	if r.Type != RuleJump && r.JumpChainID != "" {
		return fieldErr("jump_chain_id", "only jump rules name a chain to jump to")
	}
	if r.JumpChainID != "" && r.JumpChainID == r.ChainID {
		return fieldErr("jump_chain_id", "a chain cannot jump to itself")
	}
	if (r.Type == RuleSNAT || r.Type == RuleDNAT) && len(r.Targets) == 0 {
		return fieldErr("targets", "a %s rule needs at least one target", r.Type)
	}
	if !(r.Type == RuleSNAT || r.Type == RuleDNAT) && len(r.Targets) > 0 {
		return fieldErr("targets", "only snat and dnat rules have targets")
	}
	if !r.Type.IsNAT() && r.FlowAction != "" {
		return fieldErr("flow_action", "only NAT rules have a flow action")
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return fieldErr("dst", "source %s and destination %s are of different families", r.Src, r.Dst)
	}
	if r.NDTarget.IsValid() && !r.NDTarget.Addr().Is6() {
		return fieldErr("nd_target", "%s is not IPv6; neighbor discovery targets are IPv6 addresses", r.NDTarget)
	}
	if r.Proto != packet.IPProtoTCP && r.Proto != packet.IPProtoUDP && r.Proto != packet.IPProtoICMPv4 && r.Proto != packet.IPProtoICMPv6 && r.Proto != packet.IPProtoSCTP &&
		(!r.SrcPort.IsZero() || !r.DstPort.IsZero()) {
		return fieldErr("proto", "ports can only be matched with proto 6 (tcp), 17 (udp), 132 (sctp) or 1/58 (icmp type/code)")
	}
	return nil
}

func checkDHCPSubnet(o Object) error {
	d := o.(*DHCPSubnet)
	if !d.Subnet.Addr().Is4() {
		return fieldErr("subnet", "DHCP subnets are IPv4 (DHCPv6 is not served yet)")
	}
	if d.Gateway.IsValid() && !d.Subnet.Contains(d.Gateway) {
		return fieldErr("gateway", "%s is outside subnet %s", d.Gateway, d.Subnet)
	}
	if d.ServerAddress.IsValid() && !d.ServerAddress.Is4() {
		return fieldErr("server_address", "%s is not IPv4", d.ServerAddress)
	}
	if d.MTU != 0 && d.MTU < 68 {
		return fieldErr("mtu", "%d is below the IPv4 minimum of 68", d.MTU)
	}
	return nil
}

func checkVIP(o Object) error {
	v := o.(*VIP)
	if v.Address.IsUnspecified() || v.Address.IsMulticast() {
		return fieldErr("address", "%s is not a usable unicast address", v.Address)
	}
	return nil
}

func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == ':' || c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
