package neutron

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// invalid defaults a translated object and says why it is invalid ("" if
// it is not).
func invalid(o model.Object) string {
	model.ApplyDefaults(o)
	if err := model.Validate(o); err != nil {
		return "INVALID " + err.Error()
	}
	return ""
}

// summary renders translated objects compactly, one line each, so tables
// can state what a translation must produce.
func summary(objs []model.Object) []string {
	return eachLine(objs, func(o model.Object) string {
		switch x := o.(type) {
		case *model.Bridge:
			return "bridge " + x.ID[:8] + " " + string(x.State)
		case *model.Port:
			s := "port "
			if x.RouterID != "" {
				s += "router " + x.Address.String() + " " + x.Network.String()
			} else {
				s += "bridge"
			}
			if x.VLAN != 0 {
				s += " vlan " + strconv.Itoa(int(x.VLAN))
			}
			if x.PhysicalNetwork != "" {
				s += " uplink " + x.PhysicalNetwork
			}
			if x.PhysicalVLAN != 0 {
				s += " tag " + strconv.Itoa(int(x.PhysicalVLAN))
			}
			if x.HostID != "" {
				s += " bound " + x.InterfaceName
			}
			if x.PeerID != "" {
				s += " linked"
			}
			if x.InboundFilterID != "" || x.Secured() {
				s += " filtered"
			}
			return s
		case *model.Route:
			s := "route " + x.Dst.String()
			if x.Gateway.IsValid() {
				s += " via " + x.Gateway.String()
			}
			return s
		case *model.Chain:
			return "chain " + x.Name + " " + strconv.Itoa(len(x.RuleIDs))
		case *model.Rule:
			s := "rule " + string(x.Type)
			if x.Src.IsValid() {
				s += " src " + x.Src.String()
			}
			if x.Dst.IsValid() {
				s += " dst " + x.Dst.String()
			}
			if !x.ARPSHA.IsZero() {
				s += " arp-sha " + x.ARPSHA.String()
			}
			if x.NDTarget.IsValid() {
				s += " nd-target " + x.NDTarget.String()
			}
			if len(x.Targets) > 0 {
				s += " to " + x.Targets[0].String()
			}
			return s
		case *model.DHCPSubnet:
			s := "dhcp " + x.Subnet.String() + " gw " + x.Gateway.String() + " mtu " + strconv.Itoa(int(x.MTU))
			if x.Disabled {
				s += " disabled"
			}
			return s
		case *model.DHCPHost:
			return "dhcp-host " + x.Address.String() + " " + x.MAC.String()
		case *model.IPAddrGroup:
			return "ipg"
		case *model.IPAddrGroupAddr:
			return "ipg-addr " + x.Address.String()
		default:
			return model.KindOf(o).Name
		}
	})
}

// eachLine renders each translated object with line, or says why it is
// invalid.
func eachLine(objs []model.Object, line func(model.Object) string) []string {
	var out []string
	for _, o := range objs {
		if bad := invalid(o); bad != "" {
			out = append(out, bad)
		} else {
			out = append(out, line(o))
		}
	}
	return out
}

func want(t *testing.T, name string, got []model.Object, lines ...string) {
	t.Helper()
	s := summary(got)
	if strings.Join(s, "\n") != strings.Join(lines, "\n") {
		t.Errorf("%s:\n got: %q\nwant: %q", name, s, lines)
	}
	seen := map[string]bool{}
	for _, o := range got {
		k := ownedKey(o)
		if seen[k] {
			t.Errorf("%s: %s twice", name, k)
		}
		seen[k] = true
	}
}

const (
	netID  = "11111111-1111-4111-8111-111111111111"
	subID  = "22222222-2222-4222-8222-222222222222"
	portID = "33333333-3333-4333-8333-333333333333"
	rtrID  = "44444444-4444-4444-8444-444444444444"
	sgID   = "55555555-5555-4555-8555-555555555555"
	hostID = "66666666-6666-4666-8666-666666666666"
)

func TestTranslateNetwork(t *testing.T) {
	mk := func(typ, phys string, seg int, up bool) *Network {
		n := &Network{NetworkType: typ, PhysicalNetwork: phys, SegmentationID: seg, AdminStateUp: up}
		n.ID = netID
		return n
	}
	want(t, "vxlan", TranslateNetwork(mk("vxlan", "", 42, true)), "bridge 11111111 up")
	want(t, "down", TranslateNetwork(mk("vxlan", "", 42, false)), "bridge 11111111 down")
	want(t, "flat", TranslateNetwork(mk("flat", "physnet1", 0, true)), "bridge 11111111 up", "port bridge uplink physnet1")
	// A VLAN network's bridge is untagged inside: the segmentation id is
	// the uplink's tag on the wire, not a native access-port VLAN (whose
	// frames would leave untagged, and only for bridge VLAN 100).
	want(t, "vlan", TranslateNetwork(mk("vlan", "physnet1", 100, true)), "bridge 11111111 up", "port bridge uplink physnet1 tag 100")
}

func TestTranslateSubnet(t *testing.T) {
	n := &Network{MTU: 1450}
	mk := func(cidr, gw string, dhcp bool, routes ...Route) *Subnet {
		s := &Subnet{NetworkID: netID, CIDR: netip.MustParsePrefix(cidr), EnableDHCP: dhcp, HostRoutes: routes}
		s.ID = subID
		if gw != "" {
			s.GatewayIP = netip.MustParseAddr(gw)
		}
		if s.CIDR.Addr().Is4() {
			s.IPVersion = 4
		} else {
			s.IPVersion = 6
		}
		return s
	}
	want(t, "v4", TranslateSubnet(mk("10.0.0.0/24", "10.0.0.1", true), n), "dhcp 10.0.0.0/24 gw 10.0.0.1 mtu 1450")
	want(t, "no dhcp", TranslateSubnet(mk("10.0.0.0/24", "10.0.0.1", false), n), "dhcp 10.0.0.0/24 gw 10.0.0.1 mtu 1450 disabled")
	want(t, "no gateway", TranslateSubnet(mk("10.0.0.0/24", "", true), n), "dhcp 10.0.0.0/24 gw invalid IP mtu 1450")
	want(t, "gateway outside", TranslateSubnet(mk("10.0.0.0/24", "192.0.2.1", true), n), "dhcp 10.0.0.0/24 gw invalid IP mtu 1450")
	want(t, "v6", TranslateSubnet(mk("2001:db8::/64", "2001:db8::1", true), n))
	d := TranslateSubnet(mk("10.0.0.0/24", "10.0.0.1", true, Route{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParseAddr("10.0.0.254")}), n)[0].(*model.DHCPSubnet)
	if len(d.Opt121Routes) != 2 || d.Opt121Routes[1].Destination.Bits() != 0 {
		t.Errorf("host routes: want the route and the default route in option 121, got %v", d.Opt121Routes)
	}
}

func vmPort() *Port {
	p := &Port{NetworkID: netID, MACAddress: packet.MAC{0xfa, 0x16, 0x3e, 1, 2, 3}, AdminStateUp: true, PortSecurityEnabled: true, VNICType: "normal",
		FixedIPs: []FixedIP{{SubnetID: subID, IPAddress: netip.MustParseAddr("10.0.0.5")}}, SecurityGroups: []string{sgID}}
	p.ID = portID
	return p
}

func subnets() map[string]*Subnet {
	s := &Subnet{NetworkID: netID, CIDR: netip.MustParsePrefix("10.0.0.0/24"), IPVersion: 4, GatewayIP: netip.MustParseAddr("10.0.0.1")}
	s.ID = subID
	return map[string]*Subnet{subID: s}
}

func group(stateful bool) *SecurityGroup {
	g := &SecurityGroup{Stateful: stateful}
	g.ID = sgID
	return g
}

func TestTranslatePort(t *testing.T) {
	if got := InterfaceName("08111e47-e7a8-4c27-9a3b-1d2c3e4f5a6b"); got != "tap08111e47-e7" {
		t.Errorf("InterfaceName = %q, want tap08111e47-e7 (Nova's tap + 11 characters)", got)
	}
	p := vmPort()
	want(t, "unbound VM port", TranslatePort(PortInput{Port: p, Subnets: subnets(), Groups: []*SecurityGroup{group(true)}}),
		"port bridge filtered", "dhcp-host 10.0.0.5 fa:16:3e:01:02:03")
	// Port security by reference: sources (its address and its MAC's
	// link-local address), its group's chains and address group; no chain,
	// rule or address object of its own.
	bp := TranslatePort(PortInput{Port: p, Subnets: subnets(), Groups: []*SecurityGroup{group(true)}})[0].(*model.Port)
	if got := fmt.Sprint(bp.Sources); got != "[fa:16:3e:01:02:03=10.0.0.5/32 fa:16:3e:01:02:03=fe80::f816:3eff:fe01:203/128]" {
		t.Errorf("sources: %s", got)
	}
	if !bp.Stateful || !slices.Equal(bp.EgressChainIDs, []string{sgEgressChainID(sgID)}) || !slices.Equal(bp.IngressChainIDs, []string{sgIngressChainID(sgID)}) {
		t.Errorf("a stateful group's port: stateful %v, egress %v, ingress %v", bp.Stateful, bp.EgressChainIDs, bp.IngressChainIDs)
	}
	if !slices.Equal(bp.IPAddrGroupIDs, []string{sgAddrGroupID(sgID)}) || fmt.Sprint(bp.MemberAddrs) != "[10.0.0.5]" {
		t.Errorf("membership: groups %v addresses %v", bp.IPAddrGroupIDs, bp.MemberAddrs)
	}
	if bp.InboundFilterID != "" || bp.OutboundFilterID != "" {
		t.Errorf("a secured port has chains of its own: %q %q", bp.InboundFilterID, bp.OutboundFilterID)
	}
	bound := TranslatePort(PortInput{Port: p, Subnets: subnets(), Groups: []*SecurityGroup{group(false)}, HostID: hostID})
	if s := summary(bound)[0]; s != "port bridge bound tap33333333-33 filtered" {
		t.Errorf("bound port: %q", s)
	}
	if bound[0].(*model.Port).Stateful {
		t.Errorf("a stateless group's port is stateful")
	}
	// The same group twice is one reference (the model refuses a list
	// naming an id twice).
	twice := TranslatePort(PortInput{Port: p, Subnets: subnets(), Groups: []*SecurityGroup{group(true), group(true)}})
	if want(t, "group twice", twice, "port bridge filtered", "dhcp-host 10.0.0.5 fa:16:3e:01:02:03"); len(twice[0].(*model.Port).EgressChainIDs) != 1 {
		t.Errorf("group twice: egress %v", twice[0].(*model.Port).EgressChainIDs)
	}
	none := TranslatePort(PortInput{Port: p, Subnets: subnets()})[0].(*model.Port)
	if !none.Secured() || len(none.EgressChainIDs) != 0 || len(none.IPAddrGroupIDs) != 0 || len(none.MemberAddrs) != 0 {
		t.Errorf("a filtered port without groups sends nothing but what port security passes: %+v", none)
	}
	d := vmPort()
	d.VNICType = "direct"
	if s := summary(TranslatePort(PortInput{Port: d, Subnets: subnets(), HostID: hostID}))[0]; strings.Contains(s, "bound") {
		t.Errorf("a direct (SR-IOV) port is not bound to a tap: %q", s)
	}
	open := vmPort()
	open.PortSecurityEnabled, open.SecurityGroups = false, nil
	want(t, "no port security", TranslatePort(PortInput{Port: open, Subnets: subnets()}), "port bridge", "dhcp-host 10.0.0.5 fa:16:3e:01:02:03")
	pairs := vmPort()
	pairs.AllowedAddressPairs = []AddressPair{{IPAddress: netip.MustParsePrefix("10.0.0.100/32")}, {IPAddress: netip.MustParsePrefix("192.168.0.0/24"), MACAddress: packet.MAC{2, 0, 0, 0, 0, 9}},
		{IPAddress: netip.MustParsePrefix("2001:db8::100/128")}}
	pp := TranslatePort(PortInput{Port: pairs, Subnets: subnets(), Groups: []*SecurityGroup{group(true)}})[0].(*model.Port)
	if got := fmt.Sprint(pp.Sources); got != "[fa:16:3e:01:02:03=10.0.0.5/32 fa:16:3e:01:02:03=fe80::f816:3eff:fe01:203/128 "+
		"fa:16:3e:01:02:03=10.0.0.100/32 02:00:00:00:00:09=192.168.0.0/24 fa:16:3e:01:02:03=2001:db8::100/128]" {
		t.Errorf("allowed address pairs: sources %s", got)
	}
	if got := fmt.Sprint(pp.MemberAddrs); got != "[10.0.0.5 10.0.0.100 2001:db8::100]" {
		t.Errorf("allowed address pairs: single addresses join the groups, got %s", got)
	}
	itf := vmPort()
	itf.DeviceOwner, itf.RouterID, itf.PortSecurityEnabled, itf.SecurityGroups = OwnerRouterInterface, rtrID, false, nil
	itf.FixedIPs[0].IPAddress = netip.MustParseAddr("10.0.0.1")
	want(t, "router interface", TranslatePort(PortInput{Port: itf, Subnets: subnets()}),
		"port bridge linked", "port router 10.0.0.1 10.0.0.0/24 linked", "route 10.0.0.0/24")
	gw := vmPort()
	gw.DeviceOwner, gw.RouterID, gw.PortSecurityEnabled, gw.SecurityGroups = OwnerRouterGateway, rtrID, false, nil
	gw.FixedIPs[0].IPAddress = netip.MustParseAddr("10.0.0.7")
	want(t, "router gateway", TranslatePort(PortInput{Port: gw, Subnets: subnets()}),
		"port bridge linked", "port router 10.0.0.7 10.0.0.0/24 linked", "route 10.0.0.0/24", "route 0.0.0.0/0 via 10.0.0.1")
	fip := vmPort()
	fip.DeviceOwner = OwnerFloatingIP
	want(t, "floating IP port", TranslatePort(PortInput{Port: fip, Subnets: subnets()}))
}

func TestTranslateSecurityGroup(t *testing.T) {
	n := func(v int) *int { return &v }
	rules := []*SecurityGroupRule{
		{Direction: "ingress", Ethertype: "IPv4", Protocol: "tcp", PortRangeMin: n(22), PortRangeMax: n(22), RemoteIPPrefix: netip.MustParsePrefix("192.0.2.0/24")},
		{Direction: "ingress", Ethertype: "IPv4", RemoteGroupID: sgID},
		{Direction: "egress", Ethertype: "IPv6"},
		{Direction: "ingress", Ethertype: "IPv4", Protocol: "icmp", PortRangeMin: n(8), PortRangeMax: n(0)},
	}
	objs := TranslateSecurityGroup(group(true), rules, nil)
	want(t, "group", objs, "ipg", "chain security group "+sgID+" ingress 3", "rule accept src 192.0.2.0/24", "rule accept", "rule accept",
		"chain security group "+sgID+" egress 1", "rule accept")
	ssh := objs[2].(*model.Rule)
	if ssh.Proto != 6 || ssh.DstPort != (model.PortRange{Start: 22, End: 22}) || ssh.EtherType != etherIPv4 {
		t.Errorf("tcp/22 rule: %+v", ssh.Condition)
	}
	if objs[3].(*model.Rule).IPAddrGroupSrcID != sgAddrGroupID(sgID) {
		t.Errorf("remote group rule does not match the group's address group")
	}
	icmp := objs[4].(*model.Rule)
	if icmp.Proto != 1 || icmp.SrcPort.Start != 8 || icmp.DstPort.Start != 0 || icmp.DstPort.IsZero() == false && icmp.DstPort.End != 0 {
		t.Errorf("icmp type 8 code 0: %+v", icmp.Condition)
	}
	if objs[6].(*model.Rule).EtherType != etherIPv6 {
		t.Errorf("egress IPv6 rule: wrong ethertype")
	}
}

func TestTranslateRouter(t *testing.T) {
	r := &Router{AdminStateUp: true, EnableSNAT: true, Routes: []Route{{netip.MustParsePrefix("172.16.0.0/16"), netip.MustParseAddr("10.0.0.254")}}}
	r.ID = rtrID
	fip := &FloatingIP{PortID: portID, FloatingIPAddress: netip.MustParseAddr("203.0.113.10"), FixedIPAddress: netip.MustParseAddr("10.0.0.5")}
	pf := &PortForwarding{InternalIPAddress: netip.MustParseAddr("10.0.0.6"), InternalPort: 22, ExternalPort: 2222, Protocol: "tcp"}
	in := RouterInput{Router: r, GatewayPortID: routerPortID("gw"), GatewayIP: netip.MustParseAddr("203.0.113.2"),
		Interfaces:      []Interface{{routerPortID(portID), netip.MustParsePrefix("10.0.0.0/24")}},
		FloatingIPs:     []*FloatingIP{fip},
		PortForwardings: []PortForwardingNAT{{pf, netip.MustParseAddr("203.0.113.11")}}}
	want(t, "router", TranslateRouter(in), "router",
		"chain router "+rtrID+" pre-routing 3", "rule dnat dst 203.0.113.11/32 to 10.0.0.6:22", "rule dnat dst 203.0.113.10/32 to 10.0.0.5", "rule rev_snat dst 203.0.113.2/32",
		"chain router "+rtrID+" post-routing 3", "rule rev_dnat src 10.0.0.6/32", "rule snat src 10.0.0.5/32 to 203.0.113.10", "rule snat src 203.0.113.2/32 to 203.0.113.2:1024-65535",
		"route 172.16.0.0/16 via 10.0.0.254")
	r.EnableSNAT = false
	in.FloatingIPs, in.PortForwardings = nil, nil
	want(t, "no snat", TranslateRouter(in), "router", "chain router "+rtrID+" pre-routing 0", "chain router "+rtrID+" post-routing 0", "route 172.16.0.0/16 via 10.0.0.254")
	in.GatewayPortID = ""
	r.Routes = nil
	want(t, "no gateway", TranslateRouter(in), "router", "chain router "+rtrID+" pre-routing 0", "chain router "+rtrID+" post-routing 0")
}
