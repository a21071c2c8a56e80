package neutron_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/attributestags"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/portforwarding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/quotas"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
	"github.com/nagare/nagare/pkg/packet"
)

// networkExt is a network as gophercloud reads it with the extensions.
type networkExt struct {
	networks.Network
	external.NetworkExternalExt
	provider.NetworkProviderExt
	portsecurity.PortSecurityExt
	MTU int `json:"mtu"`
}

type portExt struct {
	ports.Port
	portsbinding.PortsBindingExt
	portsecurity.PortSecurityExt
}

// TestResources drives every resource through gophercloud's networking
// packages: create, read, list, update and delete, with the extensions'
// attributes, and checks the native topology each write produced.
func TestResources(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	store := e.srv.Store()

	exts, err := extensions.List(c).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := extensions.ExtractExtensions(exts)
	var aliases []string
	for _, x := range all {
		aliases = append(aliases, x.Alias)
	}
	for _, want := range []string{"router", "external-net", "provider", "binding", "security-group", "quotas", "standard-attr-tag", "revision-if-match", "floating-ip-port-forwarding", "extraroute"} {
		if !slices.Contains(aliases, want) {
			t.Errorf("extension %s not listed (%v)", want, aliases)
		}
	}

	// Networks: a tenant VXLAN network and an external flat provider network.
	var n networkExt
	err = networks.Create(ctx, c, networks.CreateOpts{Name: "net1", Description: "the first"}).ExtractInto(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n.Status != "ACTIVE" || n.MTU != 1450 || !n.PortSecurityEnabled || n.RevisionNumber != 1 || n.NetworkType != "vxlan" || n.CreatedAt.IsZero() {
		t.Errorf("new network: %+v", n)
	}
	if b, err := store.Get(ctx, model.BridgeKind, n.ID); err != nil || b.(*model.Bridge).Name != "net1" {
		t.Errorf("network %s has no bridge of the same id: %v", n.ID, err)
	}
	var ext networkExt
	err = networks.Create(ctx, c, provider.CreateOptsExt{
		CreateOptsBuilder: external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public"}, External: ptr(true)},
		Segments:          []provider.Segment{{NetworkType: "flat", PhysicalNetwork: "physnet1"}},
	}).ExtractInto(&ext)
	if err != nil {
		t.Fatal(err)
	}
	if !ext.External || ext.NetworkType != "flat" || ext.PhysicalNetwork != "physnet1" || ext.MTU != 1500 {
		t.Errorf("external network: %+v", ext)
	}
	var vl networkExt
	err = networks.Create(ctx, c, provider.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "vlan100"},
		Segments: []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: 100}}}).ExtractInto(&vl)
	if err != nil || vl.SegmentationID != "100" {
		t.Fatalf("vlan network: %+v %v", vl, err)
	}
	if ps, _, _ := store.List(ctx, model.PortKind, "bridge_id", vl.ID); len(ps) != 1 || ps[0].(*model.Port).PhysicalVLAN != 100 ||
		ps[0].(*model.Port).PhysicalNetwork != "physnet1" || ps[0].(*model.Port).VLAN != 0 {
		t.Errorf("vlan network: want one uplink bridge port on physnet1 tagged 100, got %v", ps)
	}
	up, err := networks.Update(ctx, c, n.ID, networks.UpdateOpts{Name: ptr("net-one"), AdminStateUp: ptr(false)}).Extract()
	if err != nil || up.Name != "net-one" || up.AdminStateUp || up.RevisionNumber != 2 {
		t.Errorf("network update: %+v %v", up, err)
	}
	if b, _ := store.Get(ctx, model.BridgeKind, n.ID); b.(*model.Bridge).State != model.StateDown {
		t.Errorf("admin_state_up false does not take the bridge down")
	}
	_, _ = networks.Update(ctx, c, n.ID, networks.UpdateOpts{AdminStateUp: ptr(true)}).Extract()

	// Subnets: IPv4 with pools, DNS and host routes; IPv6 SLAAC.
	sub, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, Name: "sub1", IPVersion: 4, CIDR: "10.0.0.0/24",
		AllocationPools: []subnets.AllocationPool{{Start: "10.0.0.10", End: "10.0.0.200"}},
		DNSNameservers:  []string{"192.0.2.53"},
		HostRoutes:      []subnets.HostRoute{{DestinationCIDR: "10.9.0.0/16", NextHop: "10.0.0.254"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if sub.GatewayIP != "10.0.0.1" || !sub.EnableDHCP || len(sub.AllocationPools) != 1 || sub.DNSNameservers[0] != "192.0.2.53" {
		t.Errorf("subnet: %+v", sub)
	}
	d, err := store.Get(ctx, model.DHCPSubnetKind, sub.ID)
	if err != nil || d.(*model.DHCPSubnet).Gateway.String() != "10.0.0.1" || d.(*model.DHCPSubnet).MTU != 1450 || len(d.(*model.DHCPSubnet).Opt121Routes) != 2 {
		t.Errorf("subnet %s has no matching DHCP subnet: %+v %v", sub.ID, d, err)
	}
	v6, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 6, CIDR: "2001:db8::/64",
		IPv6AddressMode: "slaac", IPv6RAMode: "slaac"}).Extract()
	if err != nil || v6.GatewayIP != "2001:db8::1" {
		t.Fatalf("IPv6 subnet: %+v %v", v6, err)
	}
	extSub, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: ext.ID, IPVersion: 4, CIDR: "203.0.113.0/24", EnableDHCP: ptr(false)}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	sub2, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.1.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	su, err := subnets.Update(ctx, c, sub.ID, subnets.UpdateOpts{Name: ptr("sub-one"), DNSNameservers: &[]string{"192.0.2.54", "192.0.2.55"}}).Extract()
	if err != nil || su.Name != "sub-one" || len(su.DNSNameservers) != 2 {
		t.Errorf("subnet update: %+v %v", su, err)
	}

	// Security groups: the project's default group exists; a new one with a rule.
	sgs, _ := groups.List(c, groups.ListOpts{Name: "default"}).AllPages(ctx)
	defaults, _ := groups.ExtractGroups(sgs)
	if len(defaults) != 1 || len(defaults[0].Rules) != 4 {
		t.Fatalf("default security group: %+v", defaults)
	}
	sg, err := groups.Create(ctx, c, groups.CreateOpts{Name: "web", Description: "web servers"}).Extract()
	if err != nil || len(sg.Rules) != 2 {
		t.Fatalf("security group: %+v %v", sg, err)
	}
	rule, err := rules.Create(ctx, c, rules.CreateOpts{SecGroupID: sg.ID, Direction: rules.DirIngress, EtherType: rules.EtherType4,
		Protocol: rules.ProtocolTCP, PortRangeMin: 80, PortRangeMax: 443, RemoteIPPrefix: "198.51.100.0/24"}).Extract()
	if err != nil || rule.PortRangeMin != 80 || rule.RemoteIPPrefix != "198.51.100.0/24" {
		t.Fatalf("rule: %+v %v", rule, err)
	}
	remote, err := rules.Create(ctx, c, rules.CreateOpts{SecGroupID: sg.ID, Direction: rules.DirIngress, EtherType: rules.EtherType4, RemoteGroupID: defaults[0].ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := store.Get(ctx, model.ChainKind, neutron.DerivedID("sg-ingress", sg.ID)); err != nil || len(ch.(*model.Chain).RuleIDs) != 2 {
		t.Errorf("group %s's ingress chain: %v %v", sg.ID, ch, err)
	}

	// Ports: an address, generated MAC, groups, address pairs, binding.
	var p portExt
	err = ports.Create(ctx, c, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID, Name: "vm1",
		FixedIPs:            []ports.IP{{SubnetID: sub.ID, IPAddress: "10.0.0.50"}},
		SecurityGroups:      &[]string{sg.ID, defaults[0].ID},
		AllowedAddressPairs: []ports.AddressPair{{IPAddress: "10.0.0.99"}},
		DeviceID:            "instance-1", DeviceOwner: "compute:nova"},
		HostID: "compute-1"}).ExtractInto(&p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.MACAddress, "fa:16:3e:") || len(p.FixedIPs) != 2 || p.VIFType != "binding_failed" || p.VNICType != "normal" {
		t.Errorf("port: %+v", p)
	}
	for _, ip := range p.FixedIPs {
		if ip.SubnetID == v6.ID {
			mac, _ := packet.ParseMAC(p.MACAddress)
			eui := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]})
			if ip.IPAddress != eui.String() {
				t.Errorf("SLAAC address %s, want %s", ip.IPAddress, eui)
			}
		}
	}
	// Registering the host (an agent's job) and updating the port binds it.
	host, err := store.Create(ctx, &model.Host{Name: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	err = ports.Update(ctx, c, p.ID, portsbinding.UpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{Name: ptr("vm1b")}, HostID: ptr("compute-1")}).ExtractInto(&p)
	if err != nil || p.VIFType != "tap" || p.Status != "ACTIVE" || p.VIFDetails["port_filter"] != true {
		t.Errorf("bound port: %+v %v", p, err)
	}
	np, err := store.Get(ctx, model.PortKind, p.ID)
	if err != nil || np.(*model.Port).HostID != host.GetMeta().ID || np.(*model.Port).InterfaceName != "tap"+p.ID[:11] || np.(*model.Port).BridgeID != n.ID {
		t.Errorf("native port: %+v %v", np, err)
	}
	var direct portExt
	err = ports.Create(ctx, c, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID},
		VNICType: "direct", Profile: map[string]any{"capabilities": []string{"switchdev"}}, HostID: "compute-1"}).ExtractInto(&direct)
	if err != nil || direct.VNICType != "direct" || direct.VIFType != "hw_veb" || direct.Profile["capabilities"] == nil {
		t.Errorf("direct port: %+v %v", direct, err)
	}
	var open portExt
	err = ports.Create(ctx, c, portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID, SecurityGroups: &[]string{}},
		PortSecurityEnabled: ptr(false)}).ExtractInto(&open)
	if err != nil || open.PortSecurityEnabled || len(open.SecurityGroups) != 0 {
		t.Errorf("port without port security: %+v %v", open, err)
	}
	pu, err := ports.Update(ctx, c, p.ID, ports.UpdateOpts{SecurityGroups: &[]string{sg.ID}, FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: "10.0.0.51"}}}).Extract()
	if err != nil || len(pu.SecurityGroups) != 1 || len(pu.FixedIPs) != 2 || pu.FixedIPs[0].IPAddress != "10.0.0.51" { // and its SLAAC address
		t.Errorf("port update: %+v %v", pu, err)
	}

	// Routers: gateway, interfaces by subnet and by port, static routes.
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r1", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if r.GatewayInfo.NetworkID != ext.ID || r.GatewayInfo.EnableSNAT == nil || !*r.GatewayInfo.EnableSNAT || len(r.GatewayInfo.ExternalFixedIPs) != 1 {
		t.Errorf("router gateway: %+v", r.GatewayInfo)
	}
	itf, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sub.ID}).Extract()
	if err != nil || itf.SubnetID != sub.ID {
		t.Fatalf("add interface: %+v %v", itf, err)
	}
	ip, err := ports.Get(ctx, c, itf.PortID).Extract()
	if err != nil || ip.DeviceOwner != "network:router_interface" || ip.FixedIPs[0].IPAddress != "10.0.0.1" || ip.DeviceID != r.ID {
		t.Errorf("interface port: %+v %v", ip, err)
	}
	p2, _ := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: sub2.ID}}}).Extract()
	itf2, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{PortID: p2.ID}).Extract()
	if err != nil || itf2.PortID != p2.ID {
		t.Fatalf("add interface by port: %+v %v", itf2, err)
	}
	ru, err := routers.Update(ctx, c, r.ID, routers.UpdateOpts{Routes: &[]routers.Route{{DestinationCIDR: "172.16.0.0/16", NextHop: "10.0.0.254"}}}).Extract()
	if err != nil || len(ru.Routes) != 1 {
		t.Errorf("static routes: %+v %v", ru, err)
	}
	var extra int
	objs, _, _ := store.List(ctx, model.RouteKind, "router_id", r.ID)
	for _, o := range objs {
		if o.(*model.Route).Dst.String() == "172.16.0.0/16" && o.(*model.Route).Gateway.String() == "10.0.0.254" {
			extra++
		}
	}
	if extra != 1 {
		t.Errorf("static route not on the native router (%d routes)", len(objs))
	}

	// Floating IPs: allocate, associate, disassociate; port forwarding.
	fip, err := floatingips.Create(ctx, c, floatingips.CreateOpts{FloatingNetworkID: ext.ID}).Extract()
	if err != nil || fip.Status != "DOWN" || fip.PortID != "" {
		t.Fatalf("floating IP: %+v %v", fip, err)
	}
	fa, err := floatingips.Update(ctx, c, fip.ID, floatingips.UpdateOpts{PortID: &p.ID}).Extract()
	if err != nil || fa.PortID != p.ID || fa.FixedIP != "10.0.0.51" || fa.RouterID != r.ID || fa.Status != "ACTIVE" {
		t.Errorf("associate: %+v %v", fa, err)
	}
	pre, _ := store.Get(ctx, model.ChainKind, neutron.DerivedID("router-pre", r.ID))
	if n := len(pre.(*model.Chain).RuleIDs); n != 2 { // FIP DNAT, gateway rev_snat
		t.Errorf("router pre-routing rules: %d, want 2", n)
	}
	fd, err := floatingips.Update(ctx, c, fip.ID, floatingips.UpdateOpts{PortID: new(string)}).Extract()
	if err != nil || fd.PortID != "" || fd.Status != "DOWN" {
		t.Errorf("disassociate: %+v %v", fd, err)
	}
	pf, err := portforwarding.Create(ctx, c, fip.ID, portforwarding.CreateOpts{InternalPortID: p.ID, InternalIPAddress: "10.0.0.51",
		InternalPort: 22, ExternalPort: 2222, Protocol: "tcp"}).Extract()
	if err != nil || pf.ExternalPort != 2222 {
		t.Fatalf("port forwarding: %+v %v", pf, err)
	}
	pfs, _ := portforwarding.List(c, portforwarding.ListOpts{}, fip.ID).AllPages(ctx)
	if all, _ := portforwarding.ExtractPortForwardings(pfs); len(all) != 1 {
		t.Errorf("port forwardings: %v", all)
	}
	if err := portforwarding.Delete(ctx, c, fip.ID, pf.ID).ExtractErr(); err != nil {
		t.Error(err)
	}

	// Quotas.
	q, err := quotas.Get(ctx, c, n.ProjectID).Extract()
	if err != nil || q.Port != 500 || q.Network != 100 {
		t.Errorf("quotas: %+v %v", q, err)
	}
	q2, err := quotas.Update(ctx, c, n.ProjectID, quotas.UpdateOpts{Port: ptr(1000)}).Extract()
	if err != nil || q2.Port != 1000 {
		t.Errorf("quota update: %+v %v", q2, err)
	}
	qd, err := quotas.GetDetail(ctx, c, n.ProjectID).Extract()
	if err != nil || qd.Network.Used != 3 || qd.Port.Limit != 1000 {
		t.Errorf("quota details: %+v %v", qd, err)
	}

	// Tags.
	if _, err := attributestags.ReplaceAll(ctx, c, "networks", n.ID, attributestags.ReplaceAllOpts{Tags: []string{"blue", "red"}}).Extract(); err != nil {
		t.Error(err)
	}
	if err := attributestags.Add(ctx, c, "networks", n.ID, "green").ExtractErr(); err != nil {
		t.Error(err)
	}
	if err := attributestags.Delete(ctx, c, "networks", n.ID, "red").ExtractErr(); err != nil {
		t.Error(err)
	}
	if tags, err := attributestags.List(ctx, c, "networks", n.ID).Extract(); err != nil || strings.Join(tags, ",") != "blue,green" {
		t.Errorf("tags: %v %v", tags, err)
	}
	if ok, err := attributestags.Confirm(ctx, c, "networks", n.ID, "red").Extract(); err != nil || ok {
		t.Errorf("removed tag still confirmed: %v %v", ok, err)
	}

	// Deleting: everything goes, in the order Neutron allows.
	wantError(t, "delete a network with ports", networks.Delete(ctx, c, n.ID).ExtractErr(), 409, "NetworkInUse")
	must(t, floatingips.Delete(ctx, c, fip.ID).ExtractErr())
	_, err = routers.Update(ctx, c, r.ID, routers.UpdateOpts{Routes: &[]routers.Route{}}).Extract()
	must(t, err)
	_, err = routers.RemoveInterface(ctx, c, r.ID, routers.RemoveInterfaceOpts{SubnetID: sub.ID}).Extract()
	must(t, err)
	_, err = routers.RemoveInterface(ctx, c, r.ID, routers.RemoveInterfaceOpts{PortID: p2.ID}).Extract()
	must(t, err)
	must(t, routers.Delete(ctx, c, r.ID).ExtractErr())
	for _, id := range []string{p.ID, direct.ID, open.ID} {
		must(t, ports.Delete(ctx, c, id).ExtractErr())
	}
	must(t, rules.Delete(ctx, c, remote.ID).ExtractErr())
	must(t, rules.Delete(ctx, c, rule.ID).ExtractErr())
	must(t, groups.Delete(ctx, c, sg.ID).ExtractErr())
	for _, id := range []string{sub.ID, sub2.ID, v6.ID, extSub.ID} {
		must(t, subnets.Delete(ctx, c, id).ExtractErr())
	}
	for _, id := range []string{n.ID, ext.ID, vl.ID} {
		must(t, networks.Delete(ctx, c, id).ExtractErr())
	}
	for _, k := range []*model.Kind{model.BridgeKind, model.PortKind, model.RouterKind, model.RouteKind, model.DHCPSubnetKind, model.DHCPHostKind, model.IPAddrGroupAddrKind} {
		if objs, _, _ := store.List(ctx, k, "", ""); len(objs) != 0 {
			t.Errorf("%d %s(s) left after deleting everything", len(objs), k.Name)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
