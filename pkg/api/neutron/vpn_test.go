package neutron_test

import (
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/vpnaas/endpointgroups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/vpnaas/ikepolicies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/vpnaas/ipsecpolicies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/vpnaas/services"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/vpnaas/siteconnections"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// TestVPN: IKE and IPsec policies, a service on a router with a gateway
// (its external address shown), endpoint groups and a site connection in
// either mode; neutron-vpnaas's refusals, including the router, interface
// and subnet its objects hold.
func TestVPN(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	yes := true
	ext, _ := e.network("ext", "203.0.113.0/24", true)
	n, sub := e.network("in", "10.7.0.0/24", false)
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sub.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	off, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.6.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	bare, err := routers.Create(ctx, c, routers.CreateOpts{Name: "bare"}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	ike, err := ikepolicies.Create(ctx, c, ikepolicies.CreateOpts{Name: "ike", AuthAlgorithm: ikepolicies.AuthAlgorithmSHA256,
		Lifetime: &ikepolicies.LifetimeCreateOpts{Units: "seconds", Value: 7200}}).Extract()
	if err != nil || ike.EncryptionAlgorithm != "aes-128" || ike.PFS != "group5" || ike.IKEVersion != "v1" || ike.Lifetime.Value != 7200 {
		t.Fatalf("IKE policy: %+v %v", ike, err)
	}
	ipsec, err := ipsecpolicies.Create(ctx, c, ipsecpolicies.CreateOpts{Name: "ipsec", AuthAlgorithm: ipsecpolicies.AuthAlgorithmAESCMAC}).Extract()
	if err != nil || ipsec.TransformProtocol != "esp" || ipsec.EncapsulationMode != "tunnel" || ipsec.Lifetime.Value != 3600 {
		t.Fatalf("IPsec policy: %+v %v", ipsec, err)
	}
	svc, err := services.Create(ctx, c, services.CreateOpts{Name: "vpn", RouterID: r.ID, AdminStateUp: &yes}).Extract()
	if err != nil || svc.ExternalV4IP == "" || svc.Status != "DOWN" {
		t.Fatalf("service: %+v %v", svc, err)
	}
	legacy, err := services.Create(ctx, c, services.CreateOpts{Name: "legacy", RouterID: r.ID, SubnetID: sub.ID, AdminStateUp: &yes}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	local, err := endpointgroups.Create(ctx, c, endpointgroups.CreateOpts{Name: "local", Type: endpointgroups.TypeSubnet, Endpoints: []string{sub.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := endpointgroups.Create(ctx, c, endpointgroups.CreateOpts{Name: "peer", Type: endpointgroups.TypeCIDR, Endpoints: []string{"10.8.0.0/24", "10.9.0.0/24"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := siteconnections.Create(ctx, c, siteconnections.CreateOpts{Name: "c", VPNServiceID: svc.ID, IKEPolicyID: ike.ID, IPSecPolicyID: ipsec.ID,
		PeerAddress: "198.51.100.1", PeerID: "198.51.100.1", PSK: "secret", LocalEPGroupID: local.ID, PeerEPGroupID: peer.ID}).Extract()
	if err != nil || conn.DPD.Action != "hold" || conn.DPD.Timeout != 120 || conn.MTU != 1500 || conn.RouteMode != "static" || conn.AuthMode != "psk" {
		t.Fatalf("connection: %+v %v", conn, err)
	}
	lconn, err := siteconnections.Create(ctx, c, siteconnections.CreateOpts{Name: "l", VPNServiceID: legacy.ID, IKEPolicyID: ike.ID, IPSecPolicyID: ipsec.ID,
		PeerAddress: "198.51.100.2", PeerID: "peer", PSK: "secret", PeerCIDRs: []string{"10.10.0.0/24"}}).Extract()
	if err != nil || len(lconn.PeerCIDRs) != 1 {
		t.Fatalf("legacy connection: %+v %v", lconn, err)
	}
	mtu := 1400
	if up, err := siteconnections.Update(ctx, c, conn.ID, siteconnections.UpdateOpts{MTU: mtu}).Extract(); err != nil || up.MTU != 1400 {
		t.Fatalf("connection update: %+v %v", up, err)
	}

	conn1 := func(extra string) string {
		return `{"ipsec_site_connection": {"vpnservice_id": "` + svc.ID + `", "ikepolicy_id": "` + ike.ID + `", "ipsecpolicy_id": "` + ipsec.ID +
			`", "peer_address": "198.51.100.1", "peer_id": "p", "psk": "s"` + extra + `}}`
	}
	groups := `, "local_ep_group_id": "` + local.ID + `", "peer_ep_group_id": "` + peer.ID + `"`
	e.refused([]refusal{
		{"bad encryption", "POST", "/v2.0/vpn/ikepolicies", `{"ikepolicy": {"encryption_algorithm": "rot13"}}`, 400, "HTTPBadRequest", "'rot13' is not in ['3des', 'aes-128'"},
		{"short lifetime", "POST", "/v2.0/vpn/ikepolicies", `{"ikepolicy": {"lifetime": {"value": 10}}}`, 400, "HTTPBadRequest", "'10' is too small - must be at least '60'"},
		{"lifetime units", "POST", "/v2.0/vpn/ipsecpolicies", `{"ipsecpolicy": {"lifetime": {"units": "kilobytes"}}}`, 400, "HTTPBadRequest", "'kilobytes' is not in ['seconds']"},
		{"lifetime keys", "POST", "/v2.0/vpn/ipsecpolicies", `{"ipsecpolicy": {"lifetime": {"hours": 1}}}`, 400, "HTTPBadRequest", "Unexpected keys supplied: hours"},
		{"IKE attribute on IPsec", "POST", "/v2.0/vpn/ipsecpolicies", `{"ipsecpolicy": {"ike_version": "v2"}}`, 400, "HTTPBadRequest", "Unrecognized attribute(s) 'ike_version'"},
		{"ah-esp", "POST", "/v2.0/vpn/ipsecpolicies", `{"ipsecpolicy": {"transform_protocol": "ah-esp"}}`, 400, "IpsecValidationFailure", "IPSec does not support IPsec Policy attribute transform_protocol with value 'ah-esp'"},
		{"policy in use", "PUT", "/v2.0/vpn/ikepolicies/" + ike.ID, `{"ikepolicy": {"name": "x"}}`, 409, "IKEPolicyInUse", "is in use by existing IPsecSiteConnection"},
		{"IPsec policy in use", "DELETE", "/v2.0/vpn/ipsecpolicies/" + ipsec.ID, "", 409, "IPsecPolicyInUse", "is in use by existing IPsecSiteConnection"},
		{"router without gateway", "POST", "/v2.0/vpn/vpnservices", `{"vpnservice": {"router_id": "` + bare.ID + `"}}`, 400, "RouterIsNotExternal", "has no external network gateway set"},
		{"subnet not on the router", "POST", "/v2.0/vpn/vpnservices", `{"vpnservice": {"router_id": "` + r.ID + `", "subnet_id": "` + off.ID + `"}}`, 400, "SubnetIsNotConnectedToRouter", "is not connected to Router"},
		{"service in use", "DELETE", "/v2.0/vpn/vpnservices/" + svc.ID, "", 409, "VPNServiceInUse", "is still in use"},
		{"no endpoints", "POST", "/v2.0/vpn/endpoint-groups", `{"endpoint_group": {"type": "cidr", "endpoints": []}}`, 400, "MissingEndpointForEndpointGroup", "No endpoints specified"},
		{"bad CIDR endpoint", "POST", "/v2.0/vpn/endpoint-groups", `{"endpoint_group": {"type": "cidr", "endpoints": ["10.0.0.1/24"]}}`, 400, "InvalidEndpointInEndpointGroup", "Invalid CIDR"},
		{"twice the endpoint", "POST", "/v2.0/vpn/endpoint-groups", `{"endpoint_group": {"type": "cidr", "endpoints": ["10.0.0.0/24", "10.0.0.0/24"]}}`, 400, "InvalidEndpointInEndpointGroup", "Endpoints have to be unique"},
		{"missing subnet", "POST", "/v2.0/vpn/endpoint-groups", `{"endpoint_group": {"type": "subnet", "endpoints": ["0b5d2a5e-0000-4000-8000-000000000000"]}}`, 400, "NonExistingSubnetInEndpointGroup", "in endpoint group does not exist"},
		{"group in use", "DELETE", "/v2.0/vpn/endpoint-groups/" + peer.ID, "", 400, "EndpointGroupInUse", "is in use and cannot be deleted"},
		{"no mode", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(""), 400, "MissingRequiredEndpointGroup", "Missing endpoint groups local and peer"},
		{"peer CIDRs with groups", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(`, "peer_cidrs": ["10.11.0.0/24"]` + groups), 400, "PeerCidrsInvalid", "Peer CIDRs cannot be specified"},
		{"groups swapped", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(`, "local_ep_group_id": "` + peer.ID + `", "peer_ep_group_id": "` + local.ID + `"`), 400, "WrongEndpointGroupType", "should be 'subnet'"},
		{"DPD timeout under interval", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(groups + `, "dpd": {"interval": 60, "timeout": 30}`), 400, "IPsecSiteConnectionDpdIntervalValueError", "dpd_timeout is equal to or less than dpd_interval"},
		{"bad DPD action", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(groups + `, "dpd": {"action": "panic"}`), 400, "HTTPBadRequest", "'panic' is not in ['clear'"},
		{"small MTU", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(groups + `, "mtu": 60`), 400, "IPsecSiteConnectionMtuError", "MTU 60 is too small for ipv4"},
		{"IPv6 peer, IPv4 gateway", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(groups + `, "peer_address": "2001:db8::1"`), 400, "ExternalNetworkHasNoSubnet", "external network has no IPv6 subnet"},
		{"peer name", "POST", "/v2.0/vpn/ipsec-site-connections", conn1(groups + `, "peer_address": "vpn.example"`), 400, "VPNPeerAddressNotResolved", "Peer address vpn.example cannot be resolved"},
		{"no PSK", "POST", "/v2.0/vpn/ipsec-site-connections", `{"ipsec_site_connection": {"vpnservice_id": "` + svc.ID + `"}}`, 400, "HTTPBadRequest", "not specified"},
		{"groups on a legacy service", "PUT", "/v2.0/vpn/ipsec-site-connections/" + lconn.ID, `{"ipsec_site_connection": {"local_ep_group_id": "` + local.ID + `"}}`, 400, "InvalidEndpointGroup", "Endpoint group local cannot be specified, when VPN Service has subnet specified"},
		{"gateway of a VPN router", "PUT", "/v2.0/routers/" + r.ID, `{"router": {"external_gateway_info": null}}`, 409, "RouterInUse", "is currently used by VPN services"},
		{"interface of a VPN subnet", "PUT", "/v2.0/routers/" + r.ID + "/remove_router_interface", `{"subnet_id": "` + sub.ID + `"}`, 409, "SubnetInUseByVPNService", "is used by VPNService " + legacy.ID},
	})
	// The subnet of an endpoint group is held even off the router.
	if err := siteconnections.Delete(ctx, c, lconn.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := services.Delete(ctx, c, legacy.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	e.refused([]refusal{
		{"interface of a connection's local subnet", "PUT", "/v2.0/routers/" + r.ID + "/remove_router_interface", `{"subnet_id": "` + sub.ID + `"}`, 409, "SubnetInUseByIPsecSiteConnection", "is used by ipsec site connection " + conn.ID},
	})
	for _, del := range []func() error{
		func() error { return siteconnections.Delete(ctx, c, conn.ID).ExtractErr() },
		func() error { return services.Delete(ctx, c, svc.ID).ExtractErr() },
		func() error {
			_, err := routers.RemoveInterface(ctx, c, r.ID, routers.RemoveInterfaceOpts{SubnetID: sub.ID}).Extract()
			return err
		},
	} {
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
	e.refused([]refusal{
		{"subnet of an endpoint group", "DELETE", "/v2.0/subnets/" + sub.ID, "", 409, "SubnetInUseByEndpointGroup", "is used by endpoint group " + local.ID},
	})
}
