//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fwgroups "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/fwaas_v2/groups"
	fwpolicies "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/fwaas_v2/policies"
	fwrules "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/fwaas_v2/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/extraroutes"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/policies"
	qosrules "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/rbacpolicies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/addressgroups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	sgrules "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/taas/tapmirrors"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/trunks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestNeutronExtensions: the data plane behind Neutron's extensions, with
// real traffic between VMs in namespaces on two hypervisors: extra DHCP
// options answered by the agent's DHCP (udhcpc); a trunk's subport (VLAN-
// tagged frames sent with a raw socket, this kernel making no VLAN
// interfaces); address groups in security group rules; extra routes;
// FWaaS v2 on a router interface; a network shared with another project
// by RBAC; QoS bandwidth limits (iperf3, egress and ingress) and DSCP
// marking (a capture); a tap service fed by a tap flow and GRE and ERSPAN
// tap mirrors (captures on the underlay).
func TestNeutronExtensions(t *testing.T) {
	t.Parallel()
	harness.Require(t, "udhcpc", "tcpdump", "busybox", "curl", "python3")
	e := newExtEnv(t)
	ctx, nc := e.ctx, e.nc
	a1 := e.vm("a1", e.hv1, e.port(ports.CreateOpts{NetworkID: e.netA, Name: "a1"}, e.hv1))
	a2p := e.port(ports.CreateOpts{NetworkID: e.netA, Name: "a2"}, e.hv2)
	a2 := e.vm("a2", e.hv2, a2p)
	a3p := e.port(ports.CreateOpts{NetworkID: e.netA, Name: "a3"}, e.hv2)
	a3 := e.vm("a3", e.hv2, a3p)
	a1.WaitPing(t, a2.Addr, 10*time.Second)

	t.Run("ExtraDHCPOptions", func(t *testing.T) { testExtraDHCPOpts(t, e) })
	t.Run("TrunkSubport", func(t *testing.T) { testTrunk(t, e) })
	t.Run("AddressGroups", func(t *testing.T) {
		ag, err := addressgroups.Create(ctx, nc, addressgroups.CreateOpts{Name: "pingers", Addresses: []string{a1.Addr + "/32"}}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		sg, err := groups.Create(ctx, nc, groups.CreateOpts{Name: "by-address-group"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sgrules.Create(ctx, nc, sgrules.CreateOpts{SecGroupID: sg.ID, Direction: sgrules.DirIngress, EtherType: sgrules.EtherType4,
			Protocol: sgrules.ProtocolICMP, RemoteAddressGroupID: ag.ID}).Extract(); err != nil {
			t.Fatal(err)
		}
		if _, err := ports.Update(ctx, nc, a2p.ID, ports.UpdateOpts{SecurityGroups: &[]string{sg.ID}}).Extract(); err != nil {
			t.Fatal(err)
		}
		mustPing(t, a1, a2.Addr, 3)
		mustNotPing(t, a3, a2.Addr)
		if _, err := addressgroups.AddAddresses(ctx, nc, ag.ID, addressgroups.UpdateAddressesOpts{Addresses: []string{a3.Addr}}).Extract(); err != nil {
			t.Fatal(err)
		}
		a3.WaitPing(t, a2.Addr, 5*time.Second)
		mustPing(t, a3, a2.Addr, 3)
		if _, err := ports.Update(ctx, nc, a2p.ID, ports.UpdateOpts{SecurityGroups: &[]string{defaultGroup(t, ctx, nc)}}).Extract(); err != nil {
			t.Fatal(err)
		}
	})

	// gw, on network B, answers for 10.99.5.1 besides its own address:
	// the next hop of an extra route. Its group admits ICMP and TCP from
	// anywhere (the other project's VM pings it too).
	open, err := groups.Create(ctx, nc, groups.CreateOpts{Name: "open"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []sgrules.RuleProtocol{sgrules.ProtocolICMP, sgrules.ProtocolTCP} {
		if _, err := sgrules.Create(ctx, nc, sgrules.CreateOpts{SecGroupID: open.ID, Direction: sgrules.DirIngress, EtherType: sgrules.EtherType4,
			Protocol: proto, RemoteIPPrefix: "0.0.0.0/0"}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	gwp := e.port(ports.CreateOpts{NetworkID: e.netB, Name: "gw", SecurityGroups: &[]string{open.ID},
		AllowedAddressPairs: []ports.AddressPair{{IPAddress: "10.99.5.0/24"}}}, e.hv2)
	gw := e.vm("gw", e.hv2, gwp, "10.99.5.1/32")
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "hello"), []byte("hello through the firewall\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	background(t, gw.NS, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	a1.WaitPing(t, gw.Addr, 10*time.Second)

	t.Run("ExtraRoutes", func(t *testing.T) {
		route := []routers.Route{{DestinationCIDR: "10.99.5.0/24", NextHop: gw.Addr}}
		if _, err := extraroutes.Add(ctx, nc, e.router, extraroutes.Opts{Routes: &route}).Extract(); err != nil {
			t.Fatal(err)
		}
		a1.WaitPing(t, "10.99.5.1", 5*time.Second)
		mustPing(t, a1, "10.99.5.1", 3)
		if _, err := extraroutes.Remove(ctx, nc, e.router, extraroutes.Opts{Routes: &route}).Extract(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		mustNotPing(t, a1, "10.99.5.1")
	})

	t.Run("FWaaSOnRouterPort", func(t *testing.T) {
		web, err := fwrules.Create(ctx, nc, fwrules.CreateOpts{Protocol: fwrules.ProtocolTCP, Action: fwrules.ActionAllow, DestinationPort: "8080"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		pol, err := fwpolicies.Create(ctx, nc, fwpolicies.CreateOpts{Name: "web-only", FirewallRules: []string{web.ID}}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		itf := routerInterface(t, e, e.subA)
		g, err := fwgroups.Create(ctx, nc, fwgroups.CreateOpts{Name: "a-side", IngressFirewallPolicyID: pol.ID, Ports: []string{itf}}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		mustNotPing(t, a1, gw.Addr)
		if out, err := fetch(a1.NS, "http://"+gw.Addr+":8080/hello"); err != nil || !strings.Contains(out, "hello through the firewall") {
			t.Fatalf("a1 → gw:8080 through the firewall group: %v\n%s", err, out)
		}
		mustPing(t, a1, a2.Addr, 2) // bridged: no router port on the way
		if _, err := fwgroups.Update(ctx, nc, g.ID, fwgroups.UpdateOpts{Ports: &[]string{}}).Extract(); err != nil {
			t.Fatal(err)
		}
		a1.WaitPing(t, gw.Addr, 5*time.Second)
	})

	t.Run("RBACSharedNetwork", func(t *testing.T) {
		demo, demoProject := e.project("demo")
		if _, err := rbacpolicies.Create(ctx, nc, rbacpolicies.CreateOpts{Action: rbacpolicies.ActionAccessShared, ObjectType: "network",
			ObjectID: e.netB, TargetTenant: demoProject}).Extract(); err != nil {
			t.Fatal(err)
		}
		p, err := ports.Create(ctx, demo, ports.CreateOpts{NetworkID: e.netB, Name: "demo1"}).Extract()
		if err != nil {
			t.Fatalf("demo's port on the network shared with it: %v", err)
		}
		if _, err := ports.Update(ctx, nc, p.ID, portsbinding.UpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{}, HostID: ptrTo(e.hv1.Name)}).Extract(); err != nil {
			t.Fatal(err)
		}
		d := e.vm("demo1", e.hv1, p)
		d.WaitPing(t, gw.Addr, 10*time.Second)
		mustPing(t, d, gw.Addr, 3)
	})

	t.Run("QoS", func(t *testing.T) { testQoS(t, e, a1, a2) })
	t.Run("TapServiceAndMirrors", func(t *testing.T) { testTaps(t, e, a1, a2) })
}

// routerInterface is the router's interface port on a subnet.
func routerInterface(t *testing.T, e *extEnv, subnet string) string {
	t.Helper()
	pages, err := ports.List(e.nc, ports.ListOpts{DeviceID: e.router, DeviceOwner: "network:router_interface"}).AllPages(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ports.ExtractPorts(pages)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if len(p.FixedIPs) > 0 && p.FixedIPs[0].SubnetID == subnet {
			return p.ID
		}
	}
	t.Fatalf("no router interface on subnet %s: %+v", subnet, ps)
	return ""
}

// testExtraDHCPOpts: a port's extra_dhcp_opts override the subnet's
// options (the MTU) and add their own (an NTP server) in the agent's
// DHCP answers.
func testExtraDHCPOpts(t *testing.T, e *extEnv) {
	p := e.port(extraDHCPOpts(e.netA, "mtu=1400", "ntp-server=10.70.0.123"), e.hv1)
	vm := e.env.AddVM(t, e.hv1, "dhcp1", harness.VMConfig{MAC: p.MACAddress, Tap: "tap" + p.ID[:11]})
	lease := udhcpc(t, vm)
	want := fmt.Sprintf("bound ip=%s mask=24 router=10.70.0.1 mtu=1400 ", p.FixedIPs[0].IPAddress)
	if !strings.HasPrefix(lease, want) || !strings.Contains(lease, "ntpsrv=10.70.0.123") {
		t.Fatalf("DHCP lease %q, want it to start with %q and carry ntpsrv=10.70.0.123", lease, want)
	}
}

// testTrunk: a VLAN-aware VM's frames tagged 101 reach the subport's
// network (network B) as the subport's; the answers come back to the
// VM's interface tagged 101.
func testTrunk(t *testing.T, e *extEnv) {
	parent := e.port(ports.CreateOpts{NetworkID: e.netA, Name: "trunk-parent"}, e.hv1)
	sub, err := ports.Create(e.ctx, e.nc, ports.CreateOpts{NetworkID: e.netB, Name: "trunk-sub"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trunks.Create(e.ctx, e.nc, trunks.CreateOpts{Name: "t1", PortID: parent.ID,
		Subports: []trunks.Subport{{PortID: sub.ID, SegmentationType: "vlan", SegmentationID: 101}}}).Extract(); err != nil {
		t.Fatal(err)
	}
	tv := e.vm("trunkvm", e.hv1, parent)
	b1p := e.port(ports.CreateOpts{NetworkID: e.netB, Name: "b1"}, e.hv2)
	b1 := e.vm("b1", e.hv2, b1p)
	subIP := sub.FixedIPs[0].IPAddress
	atB1 := harness.StartCapture(t, b1.NS, "eth0", "icmp and src host "+subIP)
	atTrunk := harness.StartCapture(t, tv.NS, "eth0", "vlan 101 and icmp")
	sendTagged(t, tv, b1p.MACAddress, sub.MACAddress, 101, subIP, b1.Addr, 5)
	got := atB1.Stop(t)
	if len(got) == 0 {
		t.Fatalf("no echo request from the subport (%s, vlan 101 on %s) reached b1", subIP, tv.Name)
	}
	back := atTrunk.Stop(t)
	replies := 0
	for _, p := range back {
		if p.OuterSrc == netip.MustParseAddr(b1.Addr) {
			replies++
		}
	}
	if replies == 0 {
		t.Fatalf("b1's echo replies did not come back to the trunk's interface tagged 101: %v", back)
	}
	t.Logf("trunk: %d tagged echo requests in, %d tagged replies back (vlan 101 ↔ subport %s)", len(got), replies, subIP)
}

// extraDHCPOpts is a port create with extra DHCP options NAME=VALUE.
func extraDHCPOpts(network string, opts ...string) ports.CreateOptsBuilder {
	var x []extraDHCPOpt
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		x = append(x, extraDHCPOpt{k, v})
	}
	return extraDHCPCreate{ports.CreateOpts{NetworkID: network, Name: "dhcp1"}, x}
}

type extraDHCPOpt struct {
	Name  string `json:"opt_name"`
	Value string `json:"opt_value"`
}

type extraDHCPCreate struct {
	ports.CreateOpts
	opts []extraDHCPOpt
}

func (c extraDHCPCreate) ToPortCreateMap() (map[string]any, error) {
	m, err := c.CreateOpts.ToPortCreateMap()
	if err != nil {
		return nil, err
	}
	m["port"].(map[string]any)["extra_dhcp_opts"] = c.opts
	return m, nil
}

// testQoS: a bandwidth limit holds an iperf3 stream within 10 % of it,
// on what a VM sends (egress) and what it receives (ingress); a DSCP
// marking rule marks what the VM sends.
func testQoS(t *testing.T, e *extEnv, a1, a2 *harness.VM) {
	ctx, nc := e.ctx, e.nc
	attach := func(t *testing.T, portID, policy string) {
		t.Helper()
		if _, err := ports.Update(ctx, nc, portID, policies.PortUpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{}, QoSPolicyID: &policy}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("BandwidthLimits", func(t *testing.T) { testLimits(t, e, a1, a2, attach) })
	mark, err := policies.Create(ctx, nc, policies.CreateOpts{Name: "af31"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qosrules.CreateDSCPMarkingRule(ctx, nc, mark.ID, qosrules.CreateDSCPMarkingRuleOpts{DSCPMark: 26}).ExtractDSCPMarkingRule(); err != nil {
		t.Fatal(err)
	}
	attach(t, portOf(t, e, a1), mark.ID)
	time.Sleep(500 * time.Millisecond)
	capt := harness.StartCapture(t, a2.NS, "eth0", "icmp and src host "+a1.Addr+" and (ip[1] & 0xfc) == 104")
	mustPing(t, a1, a2.Addr, 3)
	if got := capt.Stop(t); len(got) < 3 {
		t.Fatalf("%d of 3 echo requests from %s arrived marked DSCP 26 (AF31)", len(got), a1.Name)
	}
	attach(t, portOf(t, e, a1), "")
}

// testTaps: a tap flow copies what a1 sends and receives to the tap
// service's port (a sink VM sees the echo requests and replies it takes
// no part in); a tap mirror sends a2's traffic GRE-encapsulated, one key
// per direction, and another a1's ERSPAN-encapsulated, to the underlay's
// collector address (10.99.0.254).
func testTaps(t *testing.T, e *extEnv, a1, a2 *harness.VM) {
	ctx, nc := e.ctx, e.nc
	sinkp := e.port(portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: e.netA, Name: "sink"},
		PortSecurityEnabled: ptrTo(false)}, e.hv2)
	sink := e.env.AddVM(t, e.hv2, "sink", harness.VMConfig{MAC: sinkp.MACAddress, Tap: "tap" + sinkp.ID[:11], MTU: e.mtu})
	var ts struct {
		TapService struct {
			ID string `json:"id"`
		} `json:"tap_service"`
	}
	if _, err := nc.Post(ctx, nc.ServiceURL("taas", "tap_services"), map[string]any{"tap_service": map[string]any{"name": "sink", "port_id": sinkp.ID}}, &ts, nil); err != nil {
		t.Fatal(err)
	}
	a1port := portOf(t, e, a1)
	if _, err := nc.Post(ctx, nc.ServiceURL("taas", "tap_flows"), map[string]any{"tap_flow": map[string]any{"tap_service_id": ts.TapService.ID,
		"source_port": a1port, "direction": "BOTH"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	a2port := portOf(t, e, a2)
	if _, err := tapmirrors.Create(ctx, nc, tapmirrors.CreateOpts{Name: "to-collector", PortID: a2port, MirrorType: tapmirrors.MirrorTypeGre,
		RemoteIP: "10.99.0.254", Directions: tapmirrors.Directions{In: 1001, Out: 1002}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := tapmirrors.Create(ctx, nc, tapmirrors.CreateOpts{Name: "erspan", PortID: a1port, MirrorType: tapmirrors.MirrorTypeErspanv1,
		RemoteIP: "10.99.0.254", Directions: tapmirrors.Directions{Out: 7}}).Extract(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	atSink := harness.StartCapture(t, sink.NS, "eth0", "icmp")
	atCollector := harness.StartCapture(t, e.env.Underlay, "br0", "proto gre and dst host 10.99.0.254")
	mustPing(t, a1, a2.Addr, 3)
	copies := atSink.Stop(t)
	requests, replies := 0, 0
	for _, p := range copies {
		switch {
		case p.OuterSrc.String() == a1.Addr && p.OuterDst.String() == a2.Addr:
			requests++
		case p.OuterSrc.String() == a2.Addr && p.OuterDst.String() == a1.Addr:
			replies++
		}
	}
	if requests < 3 || replies < 3 {
		t.Errorf("the tap service's port saw %d requests and %d replies of a1's 3 pings, want both: %v", requests, replies, copies)
	}
	keys := map[string]int{}
	for _, p := range atCollector.Stop(t) {
		if p.InnerProto == 1 {
			keys[fmt.Sprintf("%s %d %s→%s", p.Kind, p.Key, p.InnerSrc, p.InnerDst)]++
		}
	}
	for _, want := range []string{
		fmt.Sprintf("gre 1001 %s→%s", a1.Addr, a2.Addr), // what a2 receives
		fmt.Sprintf("gre 1002 %s→%s", a2.Addr, a1.Addr), // what a2 sends
		fmt.Sprintf("erspan 7 %s→%s", a1.Addr, a2.Addr), // what a1 sends
	} {
		if keys[want] < 3 {
			t.Errorf("the collector got %d copies %q, want 3 (all copies: %v)", keys[want], want, keys)
		}
	}
}

// portOf is the port of a VM's address.
func portOf(t *testing.T, e *extEnv, vm *harness.VM) string {
	t.Helper()
	pages, err := ports.List(e.nc, ports.ListOpts{FixedIPs: []ports.FixedIPOpts{{IPAddress: vm.Addr}}}).AllPages(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ports.ExtractPorts(pages)
	if err != nil || len(ps) != 1 {
		t.Fatalf("port of %s: %v %v", vm.Name, ps, err)
	}
	return ps[0].ID
}

// testLimits: a bandwidth limit holds an iperf3 stream within 10 % of it,
// on what a VM sends (egress) and what it receives (ingress).
func testLimits(t *testing.T, e *extEnv, a1, a2 *harness.VM, attach func(t *testing.T, portID, policy string)) {
	ctx, nc := e.ctx, e.nc
	const limit = 20000 // kbit/s
	for _, c := range []struct {
		direction string
		vm        *harness.VM
	}{{"egress", a1}, {"ingress", a2}} {
		pol, err := policies.Create(ctx, nc, policies.CreateOpts{Name: "limit-" + c.direction}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		// No burst: Neutron's default, 80% of a second at the rate, which
		// its documentation asks for TCP. The VMs keep their offloads, so
		// their TCP sends 64 KiB super-frames, and a policer (as OVS's and
		// OVN's are) with a burst of a few super-frames drops so many
		// that TCP holds at about half the limit; iperf3 leaves the first
		// second, the burst, out of its measure.
		if _, err := qosrules.CreateBandwidthLimitRule(ctx, nc, pol.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: limit,
			Direction: c.direction}).ExtractBandwidthLimitRule(); err != nil {
			t.Fatal(err)
		}
		p := portOf(t, e, c.vm)
		attach(t, p, pol.ID)
		time.Sleep(500 * time.Millisecond)
		got := rate(t, a1, a2, 5)
		t.Logf("QoS %s limit %d kbit/s on %s: iperf3 %s → %s received %.2f Mbit/s", c.direction, limit, c.vm.Name, a1.Name, a2.Name, got/1e6)
		if got < 0.9*limit*1000 || got > 1.1*limit*1000 {
			t.Errorf("%s limit of %d kbit/s: %.0f kbit/s, not within 10%%", c.direction, limit, got/1000)
		}
		attach(t, p, "")
	}
}
