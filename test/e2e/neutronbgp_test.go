//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgp/peers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgp/speakers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestNeutronBGP: BGP configured only through Neutron's BGP dynamic
// routing API drives a gateway's uplink speaker. The operator's
// provider router (native, as MidoNet's was) links the external network
// to one uplink on gw (hv2); a tenant router with a VM behind it (hv1)
// has its gateway on the external network and a floating IP.
//
//	vm (hv1) 10.90.0.0/24 ── tenant router ── public 172.24.4.0/24 ── provider ── eth1 of hv2 ── r1 (FRR, AS 65001)
//	                                            (Neutron)            (native)    192.168.21.2/24     192.0.2.10 on lo
//
// A speaker (local_as 64512) with public as gateway network and r1 as
// peer (auth_type md5, as r1 wants): the session comes up, r1 learns the tenant subnet and the
// floating IP, and r1's "internet" address reaches the VM through the
// floating IP. Removing the peer takes the session down.
func TestNeutronBGP(t *testing.T) {
	harness.Require(t, "vtysh")
	const password = "e2e-bgp-secret"
	const md5Key = "e2e-neutron-md5"
	env := harness.New(t, harness.Options{Hypervisors: 2, AdminPassword: password, InNamespace: []string{"hv2"}})
	hv1, gw := env.Host("hv1"), env.Host("hv2")
	env.MustCLI(t, "create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		env.MustCLI(t, "tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	ctx := context.Background()
	_, nc := env.Neutron(ctx, t, "admin", password, "admin")

	yes, no := true, false
	pub, err := networks.Create(ctx, nc, external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public"}, External: &yes}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: pub.ID, IPVersion: 4, CIDR: "172.24.4.0/24", GatewayIP: ptrTo("172.24.4.1"),
		EnableDHCP: &no, AllocationPools: []subnets.AllocationPool{{Start: "172.24.4.10", End: "172.24.4.250"}}}).Extract(); err != nil {
		t.Fatal(err)
	}
	priv, err := networks.Create(ctx, nc, networks.CreateOpts{Name: "private"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	psub, err := subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: priv.ID, IPVersion: 4, CIDR: "10.90.0.0/24", GatewayIP: ptrTo("10.90.0.1")}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	r, err := routers.Create(ctx, nc, routers.CreateOpts{Name: "tenant", GatewayInfo: &routers.GatewayInfo{NetworkID: pub.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routers.AddInterface(ctx, nc, r.ID, routers.AddInterfaceOpts{SubnetID: psub.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	// No port security: the test is about routes, not security groups.
	p, err := ports.Create(ctx, nc, portsbinding.CreateOptsExt{CreateOptsBuilder: portsecurity.PortCreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: priv.ID, Name: "vm"}, PortSecurityEnabled: &no}, HostID: hv1.Name}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	vm := env.AddVM(t, hv1, "vm", harness.VMConfig{MAC: p.MACAddress, Tap: "tap" + p.ID[:11],
		Addrs: []string{p.FixedIPs[0].IPAddress + "/24"}, Gateway: "10.90.0.1", MTU: env.UnderlayMTU - 50})
	fip, err := floatingips.Create(ctx, nc, floatingips.CreateOpts{FloatingNetworkID: pub.ID, PortID: p.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	// The operator's provider router: the external network's gateway
	// address, and one uplink bound to eth1 of the gateway host.
	var prov, ext, up struct {
		ID string `json:"id"`
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(env.Call("POST", "/api/v1/routers", map[string]any{"name": "provider"}, &prov))
	must(env.Call("POST", "/api/v1/ports", map[string]any{"router_id": prov.ID, "address": "172.24.4.1", "network": "172.24.4.0/24"}, &ext))
	must(env.Call("POST", "/api/v1/ports", map[string]any{"bridge_id": pub.ID, "peer_id": ext.ID}, nil))
	must(env.Call("POST", "/api/v1/ports", map[string]any{"router_id": prov.ID, "address": "192.168.21.2", "network": "192.168.21.0/24",
		"host_id": gw.ID, "interface_name": "eth1"}, &up))

	// r1: FRR on the uplink's wire, its "internet" address on lo.
	r1 := upstreamWire(t, env, gw, "192.168.21.1/24")
	frr := harness.StartFRR(t, r1, "", bfdProfile, "router bgp 65001\n bgp router-id 192.168.21.1\n bgp log-neighbor-changes\n"+
		" no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 1 3\n"+
		" neighbor 192.168.21.2 remote-as 64512\n neighbor 192.168.21.2 bfd profile fast\n neighbor 192.168.21.2 advertisement-interval 0\n"+
		" neighbor 192.168.21.2 password "+md5Key+"\n"+
		" address-family ipv4 unicast\n  network 192.0.2.0/24\n exit-address-family\n")

	// BGP through Neutron only.
	sp, err := speakers.Create(ctx, nc, speakers.CreateOpts{Name: "edge", LocalAS: "64512", IPVersion: 4,
		AdvertiseTenantNetworks: true, AdvertiseFloatingIPHostRoutes: true}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	// The session is signed (TCP MD5): Neutron's auth_type md5.
	peer, err := peers.Create(ctx, nc, peers.CreateOpts{Name: "r1", PeerIP: "192.168.21.1", RemoteAS: 65001, AuthType: "md5",
		Password: md5Key}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := speakers.AddGatewayNetwork(ctx, nc, sp.ID, speakers.AddGatewayNetworkOpts{NetworkID: pub.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := speakers.AddBGPPeer(ctx, nc, sp.ID, speakers.AddBGPPeerOpts{BGPPeerID: peer.ID}).Extract(); err != nil {
		t.Fatal(err)
	}

	// r1 learns what get_advertised_routes says, from the uplink.
	pages, err := speakers.GetAdvertisedRoutes(nc, sp.ID).AllPages(ctx)
	must(err)
	adv, err := speakers.ExtractAdvertisedRoutes(pages)
	must(err)
	want := map[string]bool{"10.90.0.0/24": true, fip.FloatingIP + "/32": true}
	if len(adv) != len(want) {
		t.Fatalf("advertised routes %+v, want %v", adv, want)
	}
	var rib string
	err = harness.Eventually(30*time.Second, func() error {
		rib, err = frr.Vtysh("show ip route bgp")
		if err != nil {
			return err
		}
		for _, a := range adv {
			if !want[a.Destination] {
				return fmt.Errorf("advertised %s, want %v", a.Destination, want)
			}
			if !strings.Contains(rib, a.Destination) || !strings.Contains(rib, "via 192.168.21.2") {
				return fmt.Errorf("r1 has no route to %s through the uplink", a.Destination)
			}
		}
		return nil
	})
	if err != nil {
		sum, _ := frr.Vtysh("show bgp summary")
		peersOut, _ := env.CLI("bgp-peer list")
		t.Fatalf("%v\n%s\n%s\n%s", err, rib, sum, peersOut)
	}
	t.Logf("r1's BGP routes:\n%s", rib)
	out, err := env.CLI("router " + prov.ID + " list bgp-peer")
	if err != nil || !strings.Contains(out, "status established") {
		t.Errorf("the provider router's session: %v\n%s", err, out)
	}
	t.Logf("router provider list bgp-peer:\n%s", out)

	// The internet reaches the VM through its floating IP (and the VM sees
	// the internet's own address: no NAT on the way in).
	src := &harness.VM{Name: "r1", NS: r1}
	src.WaitPing(t, fip.FloatingIP, 20*time.Second, "-I", serverAddr)
	if res := src.Ping(fip.FloatingIP, 5, "0.2", "-I", serverAddr); res.Received != 5 {
		t.Errorf("r1 → floating IP %s: %d/%d\n%s", fip.FloatingIP, res.Received, res.Sent, res.Output)
	}
	// And the VM reaches it, through the route the provider router
	// learned from r1.
	vm.WaitPing(t, serverAddr, 10*time.Second)

	// The session comes back after its link flaps.
	for i := range 3 {
		r1.MustRun(t, "ip", "link", "set", "eth0", "down")
		time.Sleep(3 * time.Second)
		r1.MustRun(t, "ip", "link", "set", "eth0", "up")
		start := time.Now()
		err = harness.Eventually(20*time.Second, func() error {
			rib, err = frr.Vtysh("show ip route bgp")
			if err != nil {
				return err
			}
			if !strings.Contains(rib, "10.90.0.0/24") {
				return fmt.Errorf("r1 has not learned the tenant subnet again")
			}
			return nil
		})
		if err != nil {
			sum, _ := frr.Vtysh("show bgp summary")
			t.Fatalf("link flap %d: %v\n%s", i+1, err, sum)
		}
		t.Logf("link flap %d: r1 learned the tenant subnet again %.1f s after the link came back", i+1, time.Since(start).Seconds())
	}

	// Removing the peer through Neutron ends the session: r1 forgets the
	// routes.
	must(speakers.RemoveBGPPeer(ctx, nc, sp.ID, speakers.RemoveBGPPeerOpts{BGPPeerID: peer.ID}).ExtractErr())
	err = harness.Eventually(15*time.Second, func() error {
		rib, err = frr.Vtysh("show ip route bgp")
		if err != nil {
			return err
		}
		if strings.Contains(rib, "10.90.0.0/24") {
			return fmt.Errorf("r1 still routes the tenant subnet through the uplink:\n%s", rib)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
