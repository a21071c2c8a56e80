//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/portforwarding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/test/e2e/harness"
)

// The external world of TestNeutron: the "internet" namespace holds the
// external subnet's gateway address on a veth whose peer, ext0, lives in
// hv2's namespace; hv2's agent maps physnet1 to ext0.
const (
	inetAddr  = "172.24.4.1"
	extCIDR   = "172.24.4.0/24"
	tenCIDR   = "10.10.0.0/24"
	tenGW     = "10.10.0.1"
	physIface = "ext0"
	vlanCIDR  = "192.168.100.0/24"
	vlanInet  = "192.168.100.1"
)

// TestNeutron drives the Neutron API the way OpenStack would (gophercloud
// for the resources, the openstack CLI for the external network, password
// authentication) and checks real traffic between namespaces: a tenant
// network with DHCP and two ports bound on two hypervisors under the tap
// names os-vif gives them; a flat external network on physnet1, whose
// uplink one of the gateway agents (hv2, hv3) binds to its interface ext0;
// a router with SNAT; a floating IP; security groups; a VLAN provider
// network on the same physical network; the uplink's failover when its
// gateway's agent dies.
func TestNeutron(t *testing.T) {
	t.Parallel()
	harness.Require(t, "udhcpc", "tcpdump", "busybox", "curl")
	start := time.Now()
	const password = "e2e-admin-secret"
	mapping := []string{"--physical-interface-mappings", "physnet1:" + physIface}
	env := harness.New(t, harness.Options{Hypervisors: 3, AdminPassword: password,
		HostAgentArgs: map[string][]string{"hv2": mapping, "hv3": mapping}})
	hv1, hv2 := env.Host("hv1"), env.Host("hv2")
	gateways := []*harness.Hypervisor{hv2, env.Host("hv3")}
	env.MustCLI(t, "create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		env.MustCLI(t, "tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	// The internet: a namespace whose bridge eth0 links the gateways'
	// ext0 (physnet1's wire).
	inet := env.NewNS(t, "inet")
	inet.MustRun(t, "ip", "link", "add", "eth0", "type", "bridge")
	for _, g := range gateways {
		harness.Veth(t, inet, g.Name, g.NS, physIface)
		g.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf."+physIface+".disable_ipv6=1")
		g.NS.MustRun(t, "ip", "link", "set", physIface, "up")
		inet.MustRun(t, "ip", "link", "set", g.Name, "master", "eth0", "up")
	}
	inet.MustRun(t, "ip", "addr", "add", inetAddr+"/24", "dev", "eth0")
	inet.MustRun(t, "ip", "link", "set", "eth0", "up")

	ctx := context.Background()
	_, nc := env.Neutron(ctx, t, "admin", password, "admin")

	// Tenant network, DHCP subnet, two ports bound on hv1 and hv2.
	priv, err := networks.Create(ctx, nc, networks.CreateOpts{Name: "private"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	tsub, err := subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: priv.ID, Name: "private-v4", IPVersion: 4,
		CIDR: tenCIDR, GatewayIP: ptrTo(tenGW), EnableDHCP: ptrTo(true)}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	port := func(name, host string) *ports.Port {
		t.Helper()
		p, err := ports.Create(ctx, nc, portsbinding.CreateOptsExt{
			CreateOptsBuilder: ports.CreateOpts{NetworkID: priv.ID, Name: name}, HostID: host}).Extract()
		if err != nil {
			t.Fatalf("port %s: %v", name, err)
		}
		return p
	}
	p1, p2 := port("vm1", hv1.Name), port("vm2", hv2.Name)
	vm := func(h *harness.Hypervisor, name string, p *ports.Port) *harness.VM {
		t.Helper()
		// os-vif's name for the port's tap: "tap" + the first 11
		// characters of the port id.
		return env.AddVM(t, h, name, harness.VMConfig{MAC: p.MACAddress, Tap: "tap" + p.ID[:11]})
	}
	vm1, vm2 := vm(hv1, "vm1", p1), vm(hv2, "vm2", p2)
	ip1, ip2 := p1.FixedIPs[0].IPAddress, p2.FixedIPs[0].IPAddress
	t.Logf("set-up: %s (vm1 %s on hv1, vm2 %s on hv2)", time.Since(start).Round(time.Millisecond), ip1, ip2)

	t.Run("DHCPAndPing", func(t *testing.T) {
		for _, c := range []struct {
			vm   *harness.VM
			want string
		}{{vm1, ip1}, {vm2, ip2}} {
			lease := udhcpc(t, c.vm)
			want := fmt.Sprintf("ip=%s mask=24 router=%s mtu=%d ", c.want, tenGW, env.UnderlayMTU-50)
			if !strings.HasPrefix(lease, "bound "+want) {
				t.Fatalf("%s: DHCP lease %q, want it to start with %q", c.vm.Name, lease, "bound "+want)
			}
			c.vm.Addr = c.want
		}
		vm1.WaitPing(t, ip2, 10*time.Second)
		mustPing(t, vm1, ip2, 3)
		mustPing(t, vm2, ip1, 3)
	})
	if t.Failed() {
		return // the rest needs addressed VMs
	}

	// The external network, through the openstack CLI when it is
	// installed.
	extID := createExternal(t, env, nc)
	esub, err := subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: extID, Name: "public-v4", IPVersion: 4, CIDR: extCIDR,
		GatewayIP: ptrTo(inetAddr), EnableDHCP: ptrTo(false),
		AllocationPools: []subnets.AllocationPool{{Start: "172.24.4.10", End: "172.24.4.100"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	var uplink string               // the external network's uplink port
	var gateway *harness.Hypervisor // and the host that binds it
	t.Run("UplinkBoundOnGateway", func(t *testing.T) {
		uplink, gateway = boundUplink(t, env, extID, gateways, "")
		// Operators see the mappings with the hosts (nagare CLI).
		hosts := env.MustCLI(t, "host list")
		t.Logf("nagare host list:\n%s", hosts)
		for _, line := range strings.Split(hosts, "\n") {
			if strings.Contains(line, "name hv1 ") == strings.Contains(line, "physnet1") {
				t.Errorf("host list: only the gateways map physnet1:\n%s", hosts)
				break
			}
		}
	})
	if uplink == "" {
		return
	}

	r, err := routers.Create(ctx, nc, routers.CreateOpts{Name: "router1",
		GatewayInfo: &routers.GatewayInfo{NetworkID: extID, EnableSNAT: ptrTo(true)}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routers.AddInterface(ctx, nc, r.ID, routers.AddInterfaceOpts{SubnetID: tsub.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if len(r.GatewayInfo.ExternalFixedIPs) == 0 {
		t.Fatalf("router has no gateway address: %+v", r.GatewayInfo)
	}
	gwIP := r.GatewayInfo.ExternalFixedIPs[0].IPAddress
	t.Logf("external subnet %s, router gateway %s", esub.CIDR, gwIP)

	// The internet reaches the router's gateway address through the
	// uplink: ARP and echo answered by the router, no NAT involved.
	t.Run("InternetReachesGateway", func(t *testing.T) {
		waitPingNS(t, inet, gwIP, 10*time.Second)
	})

	// A TCP server on the internet side; the client's address is what
	// tcpdump sees.
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "hello"), []byte("hello from the internet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	background(t, inet, "busybox", "httpd", "-f", "-p", "8080", "-h", www)

	t.Run("SNAT", func(t *testing.T) {
		requireFlowState(t)
		defer traceIfFailed(t, env, "trace port %s src %s dst %s proto icmp", p2.ID, ip2, inetAddr)
		capt := harness.StartCapture(t, inet, "eth0", "ip and (icmp or tcp port 8080)")
		vm2.WaitPing(t, inetAddr, 10*time.Second)
		mustPing(t, vm2, inetAddr, 3)
		if out, err := fetch(vm2.NS, "http://"+inetAddr+":8080/hello"); err != nil || !strings.Contains(out, "hello from the internet") {
			t.Fatalf("vm2 → %s:8080 over TCP: %v\n%s", inetAddr, err, out)
		}
		srcs := srcAddrs(capt.Stop(t), inetAddr)
		if len(srcs) != 1 || srcs[0] != gwIP {
			t.Fatalf("the internet saw sources %v, want only the router's gateway %s", srcs, gwIP)
		}
	})

	fip, err := floatingips.Create(ctx, nc, floatingips.CreateOpts{FloatingNetworkID: extID, PortID: p1.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("floating IP %s → %s", fip.FloatingIP, ip1)
	background(t, vm1.NS, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	fipARP := func(t *testing.T) { floatingIPARP(t, nc, inet, fip.FloatingIP, r.ID) }

	// The default group admits only its own members: the internet cannot
	// reach vm1 by its floating IP until a rule admits it. The router
	// answers ARP for the floating IP all along, and only the rule changes
	// between the refusal here and FloatingIPInbound.
	t.Run("SecurityGroupBlocks", func(t *testing.T) {
		requireFlowState(t)
		fipARP(t)
		r := pingNS(inet, fip.FloatingIP, 3, "0.3")
		if r.Received != 0 {
			t.Fatalf("the default security group let the internet ping vm1:\n%s", r.Output)
		}
		if out, err := fetch(inet, "http://"+fip.FloatingIP+":8080/hello"); err == nil {
			t.Fatalf("the default security group let the internet connect to vm1:\n%s", out)
		}
	})

	sg := defaultGroup(t, ctx, nc)
	for _, proto := range []rules.RuleProtocol{rules.ProtocolICMP, rules.ProtocolTCP} {
		_, err := rules.Create(ctx, nc, rules.CreateOpts{Direction: rules.DirIngress, EtherType: rules.EtherType4,
			SecGroupID: sg, Protocol: proto, RemoteIPPrefix: "0.0.0.0/0"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("FloatingIPInbound", func(t *testing.T) {
		requireFlowState(t)
		defer traceIfFailed(t, env, "trace port %s src %s dst %s proto icmp", uplink, inetAddr, fip.FloatingIP)
		defer traceIfFailed(t, env, "trace port %s src %s dst %s arp", uplink, inetAddr, fip.FloatingIP)
		fipARP(t)
		waitPingNS(t, inet, fip.FloatingIP, 10*time.Second)
		if out, err := fetch(inet, "http://"+fip.FloatingIP+":8080/hello"); err != nil || !strings.Contains(out, "hello from the internet") {
			t.Fatalf("internet → %s:8080 (vm1) over TCP: %v\n%s", fip.FloatingIP, err, out)
		}
	})

	// Port forwarding of a range: a floating IP without a port forwards
	// tcp/9080-9081 to vm2's 8080-8081, port by port (vm1 has a floating
	// IP of its own, which Neutron does not combine with forwardings).
	t.Run("PortForwardingRange", func(t *testing.T) {
		requireFlowState(t)
		www2 := t.TempDir()
		if err := os.WriteFile(filepath.Join(www2, "hello"), []byte("hello from 8081\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		background(t, vm2.NS, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
		background(t, vm2.NS, "busybox", "httpd", "-f", "-p", "8081", "-h", www2)
		pfIP, err := floatingips.Create(ctx, nc, floatingips.CreateOpts{FloatingNetworkID: extID}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := portforwarding.Create(ctx, nc, pfIP.ID, portforwarding.CreateOpts{InternalPortID: p2.ID, InternalIPAddress: ip2,
			InternalPortRange: "8080:8081", ExternalPortRange: "9080:9081", Protocol: "tcp"}).Extract(); err != nil {
			t.Fatal(err)
		}
		defer traceIfFailed(t, env, "trace port %s src %s dst %s arp", uplink, inetAddr, pfIP.FloatingIP)
		defer traceIfFailed(t, env, "trace port %s src %s dst %s proto tcp dst-port 9080", uplink, inetAddr, pfIP.FloatingIP)
		// 9081 first: a reply translated by a fresh SNAT instead of the
		// DNAT's own binding left from the range's first free port,
		// 9080. Once the forwarding works, every further connection
		// must work at its first try, whatever the earlier ones left.
		want := map[string]string{"9080": "hello from the internet", "9081": "hello from 8081"}
		for i, port := range []string{"9081", "9080", "9081", "9080", "9080", "9081", "9081"} {
			get := func() error {
				out, err := fetch(inet, "http://"+pfIP.FloatingIP+":"+port+"/hello")
				if err != nil || !strings.Contains(out, want[port]) {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			}
			var err error
			if i == 0 {
				err = harness.Eventually(10*time.Second, get)
			} else {
				err = get()
			}
			if err != nil {
				t.Fatalf("internet → %s:%s (forwarded to vm2), connection %d: %v", pfIP.FloatingIP, port, i+1, err)
			}
		}
	})

	t.Run("FloatingIPOutbound", func(t *testing.T) {
		requireFlowState(t)
		defer traceIfFailed(t, env, "trace port %s src %s dst %s proto icmp", p1.ID, ip1, inetAddr)
		capt := harness.StartCapture(t, inet, "eth0", "ip and (icmp or tcp port 8080)")
		mustPing(t, vm1, inetAddr, 3)
		if out, err := fetch(vm1.NS, "http://"+inetAddr+":8080/hello"); err != nil || !strings.Contains(out, "hello from the internet") {
			t.Fatalf("vm1 → %s:8080 over TCP: %v\n%s", inetAddr, err, out)
		}
		srcs := srcAddrs(capt.Stop(t), inetAddr)
		if len(srcs) != 1 || srcs[0] != fip.FloatingIP {
			t.Fatalf("the internet saw vm1's traffic from %v, want only its floating IP %s", srcs, fip.FloatingIP)
		}
	})
	// A VLAN provider network on physnet1: its uplink is the gateway's
	// ext0.100, which the agent creates; the internet's eth0.100 answers.
	t.Run("VLANProviderNetwork", func(t *testing.T) {
		requireFlowState(t) // the default group admits the echo reply as a return flow
		if out, err := inet.Run("ip", "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "id", "100"); err != nil {
			t.Skipf("skipping: this kernel makes no 802.1Q VLAN interfaces, which the agent's VLAN uplinks are: %s", strings.TrimSpace(out))
		}
		inet.MustRun(t, "ip", "addr", "add", vlanInet+"/24", "dev", "eth0.100")
		inet.MustRun(t, "ip", "link", "set", "eth0.100", "up")
		vn, err := networks.Create(ctx, nc, provider.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "vlan100"},
			Segments: []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: 100}}}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		vs, err := subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: vn.ID, IPVersion: 4, CIDR: vlanCIDR,
			GatewayIP: ptrTo(vlanInet), EnableDHCP: ptrTo(false),
			AllocationPools: []subnets.AllocationPool{{Start: "192.168.100.10", End: "192.168.100.20"}}}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		_, g := boundUplink(t, env, vn.ID, gateways, physIface+".100")
		p, err := ports.Create(ctx, nc, portsbinding.CreateOptsExt{
			CreateOptsBuilder: ports.CreateOpts{NetworkID: vn.ID, Name: "vm3", FixedIPs: []ports.IP{{SubnetID: vs.ID}}}, HostID: hv1.Name}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		vm3 := env.AddVM(t, hv1, "vm3", harness.VMConfig{MAC: p.MACAddress, Tap: "tap" + p.ID[:11],
			Addrs: []string{p.FixedIPs[0].IPAddress + "/24"}, MTU: 1500})
		vm3.WaitPing(t, vlanInet, 10*time.Second)
		mustPing(t, vm3, vlanInet, 3)
		t.Logf("vm3 (hv1) ↔ %s over VLAN 100 through %s's %s.100", vlanInet, g.Name, physIface)
	})

	// The gateway's agent dies: once its lease ends, the other gateway
	// binds the uplink and vm1 reaches the internet again.
	t.Run("UplinkFailover", func(t *testing.T) {
		requireFlowState(t)
		other := gateways[0]
		if other == gateway {
			other = gateways[1]
		}
		killed := time.Now()
		gateway.KillAgent()
		boundUplink(t, env, extID, []*harness.Hypervisor{other}, physIface)
		moved := time.Since(killed)
		vm1.WaitPing(t, inetAddr, 20*time.Second)
		t.Logf("uplink moved from %s to %s %s after the agent's death; vm1 reached the internet again after %s (lease TTL 3 s; informational)",
			gateway.Name, other.Name, moved.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		mustPing(t, vm1, inetAddr, 3)
	})
	t.Logf("TestNeutron: %s in all", time.Since(start).Round(time.Millisecond))
}

func ptrTo[T any](v T) *T { return &v }

// boundUplink waits until the uplink of network netID is bound by one of
// the gateways, to iface (default ext0), and returns it and its host.
func boundUplink(t *testing.T, env *harness.Env, netID string, gateways []*harness.Hypervisor, iface string) (string, *harness.Hypervisor) {
	t.Helper()
	if iface == "" {
		iface = physIface
	}
	var ps []struct {
		ID              string `json:"id"`
		HostID          string `json:"host_id"`
		InterfaceName   string `json:"interface_name"`
		PhysicalNetwork string `json:"physical_network"`
	}
	var id string
	var host *harness.Hypervisor
	err := harness.Eventually(20*time.Second, func() error {
		if err := env.Call("GET", "/api/v1/ports?bridge_id="+netID, nil, &ps); err != nil {
			return err
		}
		for _, p := range ps {
			for _, g := range gateways {
				if p.PhysicalNetwork == "physnet1" && p.HostID == g.ID && p.InterfaceName == iface {
					id, host = p.ID, g
					return nil
				}
			}
		}
		return fmt.Errorf("no uplink of network %s bound to %s on a gateway among %+v", netID, iface, ps)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, host
}

// floatingIPARP checks that the internet resolves a floating IP: the
// router's gateway port answers ARP for the addresses it translates.
func floatingIPARP(t *testing.T, nc *gophercloud.ServiceClient, inet *harness.NS, fip, routerID string) {
	t.Helper()
	pages, err := ports.List(nc, ports.ListOpts{DeviceID: routerID, DeviceOwner: "network:router_gateway"}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := ports.ExtractPorts(pages)
	if err != nil || len(gw) != 1 {
		t.Fatalf("router gateway port: %v %v", gw, err)
	}
	var out string
	err = harness.Eventually(5*time.Second, func() error {
		pingNS(inet, fip, 1, "0.2")
		out, _ = inet.Run("ip", "neigh", "show", fip, "dev", "eth0")
		if !strings.Contains(out, "lladdr "+gw[0].MACAddress) {
			return fmt.Errorf("not resolved")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the internet cannot resolve the floating IP %s to the router's gateway MAC %s: neighbor %q", fip, gw[0].MACAddress, strings.TrimSpace(out))
	}
}

// traceIfFailed logs what the simulation does with a packet (the CLI's
// trace) when the test has failed, to show which hop refused it.
func traceIfFailed(t *testing.T, env *harness.Env, format string, args ...any) {
	if !t.Failed() {
		return
	}
	cmd := fmt.Sprintf(format, args...)
	out, err := env.CLI(cmd)
	t.Logf("nagare %s: %v\n%s", cmd, err, out)
}

// createExternal creates the flat external network on physnet1 with the
// openstack CLI (falling back to gophercloud without it) and returns its id.
func createExternal(t *testing.T, env *harness.Env, nc *gophercloud.ServiceClient) string {
	t.Helper()
	if _, err := exec.LookPath("openstack"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openstack", "network", "create", "--external", "--provider-network-type", "flat",
			"--provider-physical-network", "physnet1", "public", "-f", "json")
		cmd.Env = append(os.Environ(), append(env.CLIEnv(), "HOME="+t.TempDir())...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openstack network create: %v\n%s", err, out)
		}
		var n struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(out, &n); err != nil || n.ID == "" {
			t.Fatalf("openstack network create: no id in %s (%v)", out, err)
		}
		return n.ID
	}
	n, err := networks.Create(context.Background(), nc, provider.CreateOptsExt{
		CreateOptsBuilder: external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public"}, External: ptrTo(true)},
		Segments:          []provider.Segment{{NetworkType: "flat", PhysicalNetwork: "physnet1"}},
	}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}

func defaultGroup(t *testing.T, ctx context.Context, nc *gophercloud.ServiceClient) string {
	t.Helper()
	pages, err := groups.List(nc, groups.ListOpts{Name: "default"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := groups.ExtractGroups(pages)
	if err != nil || len(gs) != 1 {
		t.Fatalf("default security group: %v %v", gs, err)
	}
	return gs[0].ID
}

// udhcpc runs a DHCP client in the VM until it gets a lease, configures
// eth0 with it, and returns the "bound ..." line its script recorded.
func udhcpc(t *testing.T, vm *harness.VM) string {
	t.Helper()
	dir := t.TempDir()
	script, events := filepath.Join(dir, "script.sh"), filepath.Join(dir, "events")
	err := os.WriteFile(script, []byte(`#!/bin/sh
echo "$1 ip=$ip mask=$mask router=$router mtu=$mtu serverid=$serverid ntpsrv=$ntpsrv" >> `+events+`
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route replace default via "$router"
	;;
esac
exit 0
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = harness.Eventually(20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		out, err = vm.NS.Command(ctx, "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1",
			"-O", "mtu", "-O", "ntpsrv", "-s", script).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s: udhcpc got no lease: %v\n%s", vm.Name, err, out)
	}
	b, _ := os.ReadFile(events)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "bound ") {
			return line
		}
	}
	t.Fatalf("%s: udhcpc bound nothing:\n%s", vm.Name, b)
	return ""
}

func pingNS(ns *harness.NS, dst string, count int, interval string) harness.PingResult {
	return (&harness.VM{Name: ns.Name, NS: ns}).Ping(dst, count, interval)
}

func waitPingNS(t *testing.T, ns *harness.NS, dst string, timeout time.Duration) {
	t.Helper()
	vm := &harness.VM{Name: ns.Name, NS: ns}
	vm.WaitPing(t, dst, timeout)
	mustPing(t, vm, dst, 3)
}

func background(t *testing.T, ns *harness.NS, args ...string) *harness.Bg {
	t.Helper()
	return (&harness.VM{Name: ns.Name, NS: ns}).Background(t, args...)
}

// fetch fetches a URL from a namespace, retrying a refused connection
// briefly (the server may still be starting).
func fetch(ns *harness.NS, url string) (string, error) {
	var out []byte
	var err error
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err = ns.Command(ctx, "curl", "-sS", "--max-time", "3", url).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "refused") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	return string(out), err
}

// srcAddrs are the distinct source addresses of the captured packets sent
// to dst.
func srcAddrs(pkts []harness.Encap, dst string) []string {
	d := netip.MustParseAddr(dst)
	var out []string
	for _, p := range pkts {
		if p.OuterDst == d && !contains(out, p.OuterSrc.String()) {
			out = append(out, p.OuterSrc.String())
		}
	}
	return out
}
