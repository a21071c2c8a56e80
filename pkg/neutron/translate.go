package neutron

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// Translation: pure functions from Neutron objects to the native objects
// that implement them, with ids derived from the Neutron ids (DerivedID),
// so that translating again names the same objects and reconcile can
// rewrite only what changed. Order matters: an object comes after the
// objects it references (a chain before its rules, a bridge port before
// the router port linked to it).

// Ids of the native objects.
func routerPortID(portID string) string { return DerivedID("router-port", portID) }
func physnetPortID(netID string) string { return DerivedID("physnet-port", netID) }
func sgIngressChainID(sg string) string { return DerivedID("sg-ingress", sg) }
func sgEgressChainID(sg string) string  { return DerivedID("sg-egress", sg) }
func sgAddrGroupID(sg string) string    { return DerivedID("sg-ipg", sg) }
func routerPreChainID(r string) string  { return DerivedID("router-pre", r) }
func routerPostChainID(r string) string { return DerivedID("router-post", r) }

// InterfaceName is the tap device Nova (os-vif) creates for a port: "tap"
// and the first 11 characters of the port id, e.g. tap08111e47-e7.
func InterfaceName(portID string) string { return "tap" + portID[:11] }

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherARP  = 0x0806
)

func state(up bool) model.State {
	if up {
		return model.StateUp
	}
	return model.StateDown
}

func etherOf(a netip.Addr) uint16 {
	if a.Is4() {
		return etherIPv4
	}
	return etherIPv6
}

// TranslateNetwork: a network is a bridge of the same id. A flat or VLAN
// network on a physical network also gets the port through which it
// reaches the outside, marked with the physical network (and, for a VLAN
// network, the segmentation id as the tag on the wire): one alive agent
// whose --physical-interface-mappings name the physical network binds it
// to that interface, or to its VLAN subinterface (pkg/agent/uplink).
// The bridge itself carries the network untagged: the port is not a
// native VLAN access port (model.Port.VLAN), whose frames would leave
// untagged and only for bridge VLAN N.
func TranslateNetwork(n *Network) []model.Object {
	objs := []model.Object{&model.Bridge{Meta: model.Meta{ID: n.ID}, Name: n.Name, State: state(n.AdminStateUp), TenantID: n.ProjectID}}
	if (n.NetworkType == "flat" || n.NetworkType == "vlan") && n.PhysicalNetwork != "" {
		p := &model.Port{Meta: model.Meta{ID: physnetPortID(n.ID)}, BridgeID: n.ID, State: model.StateUp, PhysicalNetwork: n.PhysicalNetwork}
		if n.NetworkType == "vlan" {
			p.PhysicalVLAN = uint16(n.SegmentationID)
		}
		objs = append(objs, p)
	}
	return objs
}

// TranslateSubnet: an IPv4 subnet is a DHCP subnet of the same id on its
// network's bridge, disabled when enable_dhcp is off (its hosts still feed
// ARP suppression once enabled). IPv6 subnets have no native DHCP (the
// native model serves DHCPv4 only): they translate to nothing.
func TranslateSubnet(s *Subnet, n *Network) []model.Object {
	if !s.CIDR.Addr().Is4() {
		return nil
	}
	d := &model.DHCPSubnet{Meta: model.Meta{ID: s.ID}, BridgeID: s.NetworkID, Subnet: s.CIDR, DNSServers: s.DNSNameservers, Disabled: !s.EnableDHCP}
	if s.GatewayIP.IsValid() && s.CIDR.Contains(s.GatewayIP) {
		d.Gateway = s.GatewayIP
		d.ServerAddress = s.GatewayIP
	} else {
		// No gateway on the subnet: answer from its first address, as
		// Neutron's DHCP port usually has it.
		d.ServerAddress = s.CIDR.Addr().Next()
	}
	if n != nil && n.MTU >= 68 && n.MTU <= 65535 {
		d.MTU = uint16(n.MTU)
	}
	for _, r := range s.HostRoutes {
		if r.Destination.Addr().Is4() && r.NextHop.Is4() {
			d.Opt121Routes = append(d.Opt121Routes, model.Opt121Route{Destination: r.Destination, Gateway: r.NextHop})
		}
	}
	if len(d.Opt121Routes) > 0 && d.Gateway.IsValid() {
		// Clients that get option 121 ignore the router option (RFC 3442);
		// Neutron's DHCP agent adds the default route for the same reason.
		d.Opt121Routes = append(d.Opt121Routes, model.Opt121Route{Destination: netip.MustParsePrefix("0.0.0.0/0"), Gateway: d.Gateway})
	}
	return []model.Object{d}
}

// PortInput is what a port's translation reads besides the port.
type PortInput struct {
	Port    *Port
	Subnets map[string]*Subnet // the port's network's subnets, by id
	Groups  []*SecurityGroup   // the port's security groups, in the port's order
	// HostID is the native host the port is bound to ("" when unbound or
	// when binding:host_id names no registered host).
	HostID string
	// QoSPolicyID is the QoS policy the port's traffic is under (its own
	// or its network's).
	QoSPolicyID string
	// ParentID and ParentVLAN: the port is a trunk subport reached through
	// port ParentID's interface, tagged ParentVLAN.
	ParentID   string
	ParentVLAN uint16
	// FirewallGroupID is the firewall group filtering a router interface
	// port ("" none).
	FirewallGroupID string
}

// Bound reports whether a port's translation binds it to a host
// interface: a normal VNIC on a registered host. Direct and macvtap VNICs
// are SR-IOV virtual functions that bypass the virtual switch.
func (in *PortInput) Bound() bool {
	return in.HostID != "" && in.Port.VNICType == "normal" && in.ParentID == ""
}

// Filtered reports whether security groups and anti-spoofing apply.
func (p *Port) Filtered() bool {
	return p.PortSecurityEnabled && !strings.HasPrefix(p.DeviceOwner, ownerNetworkPrefix)
}

func isRouterPort(p *Port) bool {
	return p.RouterID != "" && (p.DeviceOwner == OwnerRouterInterface || p.DeviceOwner == OwnerRouterGateway)
}

// TranslatePort: a port is a bridge port of the same id, bound to
// tap<id[:11]> on its host when binding:host_id names one. A router
// interface or gateway port is linked to a router port carrying its
// address, with the route to its subnet (and, for a gateway, the default
// route through the subnet's gateway). A port with port security gets the
// native port's (portSecurity): anti-spoofing and its groups' chains and
// address groups, by reference; its IPv4 addresses get DHCP host entries
// (also used for ARP suppression). A floating IP's port has no native
// form: its address lives in the router's NAT rules.
//
// Ports translated before port security was native own three chains of
// their own (portInChainID, portEgChainID, portOutChainID) and an address
// object per address and group; they keep working as they are (the
// chains are ordinary chains) until MigratePortFilters or their next
// update translates them again.
func TranslatePort(in PortInput) []model.Object {
	p := in.Port
	if p.DeviceOwner == OwnerFloatingIP {
		return nil
	}
	var objs []model.Object
	bp := &model.Port{Meta: model.Meta{ID: p.ID}, BridgeID: p.NetworkID, State: state(p.AdminStateUp), MAC: p.MACAddress, QoSPolicyID: in.QoSPolicyID}
	objs = append(objs, bp)
	if in.Bound() {
		bp.HostID, bp.InterfaceName = in.HostID, InterfaceName(p.ID)
	}
	bp.ParentID, bp.ParentVLAN = in.ParentID, in.ParentVLAN
	if isRouterPort(p) {
		side := routerSide(p, in.Subnets, bp)
		if fw := in.FirewallGroupID; fw != "" {
			// The router filters what enters it through the port with the
			// group's ingress chain, what leaves by it with the egress one.
			rp := side[0].(*model.Port)
			rp.InboundFilterID, rp.OutboundFilterID = fwgIngressChainID(fw), fwgEgressChainID(fw)
		}
		objs = append(objs, side...)
	}
	if p.Filtered() {
		portSecurity(bp, p, in.Groups)
	}
	// A router's ports ask DHCP nothing, and the agent's DHCP refuses a
	// host on the subnet's gateway address: they get no host entry (their
	// addresses are known from the router ports).
	done := map[string]bool{}
	for _, f := range p.FixedIPs {
		s := in.Subnets[f.SubnetID]
		if s == nil || !s.CIDR.Addr().Is4() || done[s.ID] || isRouterPort(p) {
			continue
		}
		done[s.ID] = true
		objs = append(objs, &model.DHCPHost{Meta: model.Meta{ID: DerivedID("dhcp-host", p.ID, s.ID)}, DHCPSubnetID: s.ID,
			Name: p.Hostname(f.IPAddress), MAC: p.MACAddress, Address: f.IPAddress, Options: DHCPOptions(p.ExtraDHCPOpts)})
	}
	return objs
}

// hostAddrs are the single addresses a port may source: its fixed IPs
// and the host addresses of its allowed address pairs.
func hostAddrs(p *Port) []netip.Addr {
	var out []netip.Addr
	for _, f := range p.FixedIPs {
		if !slices.Contains(out, f.IPAddress) {
			out = append(out, f.IPAddress)
		}
	}
	for _, a := range p.AllowedAddressPairs {
		if a.IPAddress.IsSingleIP() && !slices.Contains(out, a.IPAddress.Addr()) {
			out = append(out, a.IPAddress.Addr())
		}
	}
	return out
}

// routerSide is the router port an interface or gateway port is linked
// to, and its routes.
func routerSide(p *Port, subnets map[string]*Subnet, bp *model.Port) []model.Object {
	var fip *FixedIP
	for i := range p.FixedIPs {
		f := &p.FixedIPs[i]
		if subnets[f.SubnetID] == nil {
			continue
		}
		// One address per router port: IPv4 first (the native router port
		// carries one address).
		if fip == nil || (f.IPAddress.Is4() && !fip.IPAddress.Is4()) {
			fip = f
		}
	}
	rpID := routerPortID(p.ID)
	rp := &model.Port{Meta: model.Meta{ID: rpID}, RouterID: p.RouterID, State: state(p.AdminStateUp), MAC: p.MACAddress, PeerID: p.ID}
	bp.PeerID = rpID
	objs := []model.Object{rp}
	if fip == nil {
		return objs
	}
	s := subnets[fip.SubnetID]
	rp.Address, rp.Network = fip.IPAddress, s.CIDR
	objs = append(objs, &model.Route{Meta: model.Meta{ID: DerivedID("route", p.ID, s.ID)}, RouterID: p.RouterID,
		Type: model.RouteNormal, Dst: s.CIDR, PortID: rpID, Weight: 100})
	if p.DeviceOwner == OwnerRouterGateway && !p.ExtraGateway && s.GatewayIP.IsValid() && s.CIDR.Contains(s.GatewayIP) {
		objs = append(objs, &model.Route{Meta: model.Meta{ID: DerivedID("gw-route", p.ID, s.ID)}, RouterID: p.RouterID,
			Type: model.RouteNormal, Dst: netip.PrefixFrom(zero(s.GatewayIP), 0), Gateway: s.GatewayIP, PortID: rpID, Weight: 100})
	}
	return objs
}

func zero(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func chain(id, name, tenant string, rules []*model.Rule) []model.Object {
	c := &model.Chain{Meta: model.Meta{ID: id}, Name: name, TenantID: tenant}
	objs := []model.Object{c}
	for i, r := range rules {
		r.ID = DerivedID("rule", id, fmt.Sprint(i))
		r.ChainID = id
		if r.Type.IsNAT() {
			r.FlowAction = "accept"
		}
		c.RuleIDs = append(c.RuleIDs, r.ID)
		objs = append(objs, r)
	}
	return objs
}

func single(port uint16) model.PortRange { return model.PortRange{Start: port, End: port} }

// portSecurity gives a filtered port's native port its security by
// reference (model.Port.Sources; the simulation compiles it, see
// pkg/sim/portsec.go): the sources it may send from — each fixed IP and
// the link-local address of its MAC, from its MAC; each allowed address
// pair, from the pair's MAC or its own — its groups' chains (stateful if
// any group is), and its single addresses (fixed IPs, single-address
// pairs) as members of its groups' address groups, which remote_group_id
// rules match. A port joining groups thus writes no chain, rule or
// address object: the groups' chains and address sets are shared.
func portSecurity(bp *model.Port, p *Port, groups []*SecurityGroup) {
	mac := p.MACAddress
	for _, f := range p.FixedIPs {
		bp.Sources = append(bp.Sources, model.PortSource{MAC: mac, Prefix: netip.PrefixFrom(f.IPAddress, f.IPAddress.BitLen())})
	}
	bp.Sources = append(bp.Sources, model.PortSource{MAC: mac, Prefix: netip.PrefixFrom(linkLocal(mac), 128)})
	for _, a := range p.AllowedAddressPairs {
		m := a.MACAddress
		if m.IsZero() {
			m = mac
		}
		bp.Sources = append(bp.Sources, model.PortSource{MAC: m, Prefix: a.IPAddress.Masked()})
	}
	for i, g := range groups {
		if slices.ContainsFunc(groups[:i], func(x *SecurityGroup) bool { return x.ID == g.ID }) {
			continue
		}
		bp.Stateful = bp.Stateful || g.Stateful
		bp.EgressChainIDs = append(bp.EgressChainIDs, sgEgressChainID(g.ID))
		bp.IngressChainIDs = append(bp.IngressChainIDs, sgIngressChainID(g.ID))
		bp.IPAddrGroupIDs = append(bp.IPAddrGroupIDs, sgAddrGroupID(g.ID))
	}
	if bp.MemberAddrs = hostAddrs(p); len(bp.MemberAddrs) == 0 || len(bp.IPAddrGroupIDs) == 0 {
		bp.MemberAddrs, bp.IPAddrGroupIDs = nil, nil
	}
}

// linkLocal is the EUI-64 link-local address of a MAC, the IPv6 source a
// VM uses before it has another.
func linkLocal(m packet.MAC) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: m[0] ^ 2, 9: m[1], 10: m[2], 11: 0xff, 12: 0xfe, 13: m[3], 14: m[4], 15: m[5]})
}

// protocolNumbers are the names Neutron takes for protocol.
var protocolNumbers = map[string]uint8{
	"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "icmpv6": 58, "igmp": 2,
	"ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}

// protoNumber is the IP protocol of a rule's protocol ("" and "any": none).
func protoNumber(p string) (uint8, bool) {
	if p == "" || p == "any" {
		return 0, false
	}
	if n, ok := protocolNumbers[p]; ok {
		return n, true
	}
	var n int
	if _, err := fmt.Sscan(p, &n); err == nil && n >= 0 && n <= 255 {
		return uint8(n), true
	}
	return 0, false
}

// TranslateSecurityGroup: a group is an ingress chain and an egress chain
// of accept rules, one per group rule, that the member ports' chains jump
// to, and an address group of its members' addresses that rules naming it
// as remote_group_id match against.
//
// A rule whose remote is an address group is one native rule per prefix
// of the group of the rule's family (none: it matches nothing).
func TranslateSecurityGroup(g *SecurityGroup, rules []*SecurityGroupRule, addressGroups map[string]*AddressGroup) []model.Object {
	var ing, eg []*model.Rule
	for _, r := range rules {
		if id := r.RemoteAddressGroupID; id != "" {
			ag := addressGroups[id]
			if ag == nil {
				continue
			}
			for _, p := range ag.Addresses {
				if p.Addr().Is4() != (r.Ethertype != "IPv6") {
					continue
				}
				x := *r
				x.RemoteAddressGroupID, x.RemoteIPPrefix = "", p
				nr := groupRule(&x)
				if r.Direction == "ingress" {
					ing = append(ing, nr)
				} else {
					eg = append(eg, nr)
				}
			}
			continue
		}
		nr := groupRule(r)
		if r.Direction == "ingress" {
			ing = append(ing, nr)
		} else {
			eg = append(eg, nr)
		}
	}
	objs := []model.Object{&model.IPAddrGroup{Meta: model.Meta{ID: sgAddrGroupID(g.ID)}, Name: "security group " + g.ID, TenantID: g.ProjectID}}
	objs = append(objs, chain(sgIngressChainID(g.ID), "security group "+g.ID+" ingress", g.ProjectID, ing)...)
	return append(objs, chain(sgEgressChainID(g.ID), "security group "+g.ID+" egress", g.ProjectID, eg)...)
}

// groupRule is a security group rule's native accept rule.
func groupRule(r *SecurityGroupRule) *model.Rule {
	nr := &model.Rule{Type: model.RuleAccept}
	c := &nr.Condition
	if r.Ethertype == "IPv6" {
		c.EtherType = etherIPv6
	} else {
		c.EtherType = etherIPv4
	}
	if n, ok := protoNumber(r.Protocol); ok {
		c.Proto = n
		lo, hi := r.PortRangeMin, r.PortRangeMax
		switch n {
		case 1, 58: // ICMP type and code
			if lo != nil {
				c.SrcPort = single(uint16(*lo))
			}
			if hi != nil {
				c.DstPort = single(uint16(*hi))
			}
		case 6, 17, 132:
			if lo != nil {
				h := *lo
				if hi != nil {
					h = *hi
				}
				c.DstPort = model.PortRange{Start: uint16(*lo), End: uint16(h)}
			}
		}
	}
	if r.Direction == "ingress" {
		c.Src = r.RemoteIPPrefix
		if r.RemoteGroupID != "" {
			c.IPAddrGroupSrcID = sgAddrGroupID(r.RemoteGroupID)
		}
	} else {
		c.Dst = r.RemoteIPPrefix
		if r.RemoteGroupID != "" {
			c.IPAddrGroupDstID = sgAddrGroupID(r.RemoteGroupID)
		}
	}
	return nr
}

// RouterInput is what a router's translation reads besides the router.
type RouterInput struct {
	Router *Router
	// Gateway: the router port of the gateway and its address (invalid
	// when the router has no gateway).
	GatewayPortID string
	GatewayIP     netip.Addr
	// Interfaces are the router's connected subnets: router port and
	// prefix, gateway included (static routes resolve their next hop
	// against them).
	Interfaces []Interface
	// FloatingIPs associated through this router, and the port
	// forwardings of its floating IPs.
	FloatingIPs     []*FloatingIP
	PortForwardings []PortForwardingNAT
}

// Interface is a router port and the subnet it is on.
type Interface struct {
	RouterPortID string
	Prefix       netip.Prefix
}

// PortForwardingNAT is a port forwarding with its floating address.
type PortForwardingNAT struct {
	*PortForwarding
	FloatingIP netip.Addr
}

// TranslateRouter: a router is a router of the same id whose pre-routing
// chain holds the floating IPs' and port forwardings' DNAT and the gateway
// SNAT's reverse rule, and whose post-routing chain holds the floating
// IPs' SNAT, the port forwardings' reverse DNAT and, with enable_snat, the gateway's SNAT of everything else leaving through
// the gateway port. Static routes become routes through the router port
// connected to their next hop.
func TranslateRouter(in RouterInput) []model.Object {
	r := in.Router
	pre, post := routerPreChainID(r.ID), routerPostChainID(r.ID)
	objs := []model.Object{&model.Router{Meta: model.Meta{ID: r.ID}, Name: r.Name, State: state(r.AdminStateUp), TenantID: r.ProjectID,
		InboundFilterID: pre, OutboundFilterID: post}}
	var preRules, postRules []*model.Rule
	gw := in.GatewayPortID
	if gw != "" {
		host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
		to := func(a netip.Addr, port int) []model.NATTarget {
			t := model.NATTarget{AddrFrom: a, AddrTo: a}
			if port > 0 {
				t.Ports = single(uint16(port))
			}
			return []model.NATTarget{t}
		}
		for _, pf := range in.PortForwardings {
			// A range forwards port by port (N-N: by offset, as ML2/OVN's
			// one load balancer per port does), or all to one port (1-N).
			proto, _ := protoNumber(pf.Protocol)
			il, ih := pf.InternalRange()
			el, eh := pf.ExternalRange()
			span := func(lo, hi int) model.PortRange { return model.PortRange{Start: uint16(lo), End: uint16(hi)} }
			dnat := model.NATTarget{AddrFrom: pf.InternalIPAddress, AddrTo: pf.InternalIPAddress, Ports: span(il, ih)}
			if ih > il {
				dnat.Base = uint16(el)
			}
			preRules = append(preRules, &model.Rule{Type: model.RuleDNAT, Targets: []model.NATTarget{dnat},
				Condition: model.Condition{EtherType: etherOf(pf.FloatingIP), Dst: host(pf.FloatingIP), Proto: proto, DstPort: span(el, eh)}})
			// Replies leave through the DNAT's own binding (rev_dnat),
			// never a new SNAT: an SNAT to the external range would pick
			// any free port of it (9081 for a connection to 9080) and,
			// for one port, refuse a second client while the first is
			// connected.
			postRules = append(postRules, &model.Rule{Type: model.RuleRevDNAT,
				Condition: model.Condition{EtherType: etherOf(pf.InternalIPAddress), Src: host(pf.InternalIPAddress), Proto: proto,
					SrcPort: span(il, ih), OutPortIDs: []string{gw}}})
		}
		for _, f := range in.FloatingIPs {
			if f.PortID == "" || !f.FixedIPAddress.IsValid() {
				continue
			}
			preRules = append(preRules, &model.Rule{Type: model.RuleDNAT, Targets: to(f.FixedIPAddress, 0),
				Condition: model.Condition{EtherType: etherOf(f.FloatingIPAddress), Dst: host(f.FloatingIPAddress)}})
			postRules = append(postRules, &model.Rule{Type: model.RuleSNAT, Targets: to(f.FloatingIPAddress, 0),
				Condition: model.Condition{EtherType: etherOf(f.FixedIPAddress), Src: host(f.FixedIPAddress), OutPortIDs: []string{gw}}})
		}
		if r.EnableSNAT && in.GatewayIP.IsValid() {
			preRules = append(preRules, &model.Rule{Type: model.RuleRevSNAT,
				Condition: model.Condition{EtherType: etherOf(in.GatewayIP), Dst: host(in.GatewayIP), InPortIDs: []string{gw}}})
			postRules = append(postRules, &model.Rule{Type: model.RuleSNAT,
				Targets:   []model.NATTarget{{AddrFrom: in.GatewayIP, AddrTo: in.GatewayIP, Ports: model.PortRange{Start: 1024, End: 65535}}},
				Condition: model.Condition{EtherType: etherOf(in.GatewayIP), OutPortIDs: []string{gw}, Src: host(in.GatewayIP), InvSrc: true}})
		}
	}
	objs = append(objs, chain(pre, "router "+r.ID+" pre-routing", r.ProjectID, preRules)...)
	objs = append(objs, chain(post, "router "+r.ID+" post-routing", r.ProjectID, postRules)...)
	for _, rt := range r.Routes {
		for _, itf := range in.Interfaces {
			if itf.Prefix.Contains(rt.NextHop) {
				objs = append(objs, &model.Route{Meta: model.Meta{ID: DerivedID("extraroute", r.ID, rt.Destination.String(), rt.NextHop.String())},
					RouterID: r.ID, Type: model.RouteNormal, Dst: rt.Destination, Gateway: rt.NextHop, PortID: itf.RouterPortID, Weight: 100})
				break
			}
		}
	}
	return objs
}
