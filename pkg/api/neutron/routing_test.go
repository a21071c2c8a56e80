package neutron_test

import (
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/agents"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgp/peers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgp/speakers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgpvpns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/segments"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// TestSegmentsAgentsBGP: extra segments (a VLAN one is an uplink port of
// the network's bridge); agents derived from the registered hosts; BGP
// speakers scheduled on them and the routes they would announce; BGP VPNs
// and their associations; the input Neutron refuses.
func TestSegmentsAgentsBGP(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	n, err := networks.Create(ctx, c, networks.CreateOpts{Name: "multi"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	seg, err := segments.Create(ctx, c, segments.CreateOpts{NetworkID: n.ID, NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: 42}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	up, err := e.srv.Store().Get(ctx, model.PortKind, neutron.DerivedID("segment-port", seg.ID))
	if err != nil || up.(*model.Port).PhysicalVLAN != 42 || up.(*model.Port).BridgeID != n.ID {
		t.Fatalf("the VLAN segment's uplink port: %+v %v", up, err)
	}
	all, err := segments.List(c, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ss, _ := segments.ExtractSegments(all); len(ss) != 2 {
		t.Errorf("segments: %+v, want the network's first and the VLAN one", ss)
	}

	// A host (as an agent registers it) shows as two agents.
	if err := e.native("POST", "/api/v1/hosts", `{"name": "gw1"}`); err != nil {
		t.Fatal(err)
	}
	pages, err := agents.List(c, agents.ListOpts{AgentType: "BGP Dynamic Routing Agent"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	as, _ := agents.ExtractAgents(pages)
	if len(as) != 1 || as[0].Host != "gw1" || as[0].Binary != "nagare-agent" || as[0].Alive {
		t.Fatalf("BGP agents: %+v", as)
	}
	bgpAgent := as[0].ID

	// A speaker on the external network announces the router's tenant
	// subnet and its floating IP, next hop the router's gateway.
	yes := true
	ext, err := networks.Create(ctx, c, external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "ext"}, External: &yes}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: ext.ID, IPVersion: 4, CIDR: "203.0.113.0/24"}).Extract(); err != nil {
		t.Fatal(err)
	}
	ten, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.80.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: ten.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	vm, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: ten.ID}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	fip, err := floatingips.Create(ctx, c, floatingips.CreateOpts{FloatingNetworkID: ext.ID, PortID: vm.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := speakers.Create(ctx, c, speakers.CreateOpts{Name: "s", LocalAS: "64512", IPVersion: 4, AdvertiseTenantNetworks: true, AdvertiseFloatingIPHostRoutes: true}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := speakers.AddGatewayNetwork(ctx, c, sp.ID, speakers.AddGatewayNetworkOpts{NetworkID: ext.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	rp, err := speakers.GetAdvertisedRoutes(c, sp.ID).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := speakers.ExtractAdvertisedRoutes(rp)
	gw := r.GatewayInfo.ExternalFixedIPs[0].IPAddress
	want := map[string]bool{"10.80.0.0/24 " + gw: true, fip.FloatingIP + "/32 " + gw: true}
	if len(routes) != 2 {
		t.Errorf("advertised routes %+v", routes)
	}
	for _, rt := range routes {
		if !want[rt.Destination+" "+rt.NextHop] {
			t.Errorf("advertised %s via %s, want %v", rt.Destination, rt.NextHop, want)
		}
	}
	peer, err := peers.Create(ctx, c, peers.CreateOpts{Name: "p", PeerIP: "192.0.2.1", RemoteAS: 65001, AuthType: "md5", Password: "x"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := speakers.AddBGPPeer(ctx, c, sp.ID, speakers.AddBGPPeerOpts{BGPPeerID: peer.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := agents.ScheduleBGPSpeaker(ctx, c, bgpAgent, agents.ScheduleBGPSpeakerOpts{SpeakerID: sp.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if a, err := agents.Get(ctx, c, bgpAgent).Extract(); err != nil || a.Configurations["bgp_speakers"] != float64(1) {
		t.Errorf("agent after scheduling: %+v %v", a, err)
	}
	dup, err := peers.Create(ctx, c, peers.CreateOpts{Name: "dup", PeerIP: "192.0.2.1", RemoteAS: 65002, AuthType: "none"}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	v, err := bgpvpns.Create(ctx, c, bgpvpns.CreateOpts{Name: "vpn", RouteTargets: []string{"64512:1"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bgpvpns.CreateNetworkAssociation(ctx, c, v.ID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: n.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got, err := bgpvpns.Get(ctx, c, v.ID).Extract(); err != nil || len(got.Networks) != 1 || got.Networks[0] != n.ID {
		t.Errorf("VPN's networks: %+v %v", got, err)
	}
	l2, err := bgpvpns.Create(ctx, c, bgpvpns.CreateOpts{Name: "l2", Type: "l2"}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	e.refused([]refusal{
		{"segment without its physical network", "POST", "/v2.0/segments", `{"segment": {"network_id": "` + n.ID + `", "network_type": "vlan", "segmentation_id": 7}}`, 400, "InvalidInput", "physical_network required"},
		{"segment in use", "POST", "/v2.0/segments", `{"segment": {"network_id": "` + n.ID + `", "network_type": "vlan", "physical_network": "physnet1", "segmentation_id": 42}}`, 409, "VlanIdInUse", "The VLAN 42 on physical network physnet1 is in use"},
		{"deleting a network's first segment", "DELETE", "/v2.0/segments/" + neutron.FirstSegmentID(n.ID), "", 409, "SegmentInUse", "cannot be deleted"},
		{"AS number out of range", "POST", "/v2.0/bgp-speakers", `{"bgp_speaker": {"local_as": 0, "ip_version": 4}}`, 400, "HTTPBadRequest", "'0' is not in range 1 through 4294967295"},
		{"MD5 without a password", "POST", "/v2.0/bgp-peers", `{"bgp_peer": {"peer_ip": "192.0.2.9", "remote_as": 65000, "auth_type": "md5"}}`, 400, "InvalidBgpPeerMd5Authentication", "A password must be supplied when using auth_type md5."},
		{"second peer at one address", "PUT", "/v2.0/bgp-speakers/" + sp.ID + "/add_bgp_peer", `{"bgp_peer_id": "` + dup.ID + `"}`, 409, "DuplicateBgpPeerIpException", "is already configured to peer with a BGP Peer at 192.0.2.1"},
		{"removing a peer it has not", "PUT", "/v2.0/bgp-speakers/" + sp.ID + "/remove_bgp_peer", `{"bgp_peer_id": "` + dup.ID + `"}`, 404, "BgpSpeakerPeerNotAssociated", "is not associated with BGP speaker"},
		{"second speaker on an agent", "POST", "/v2.0/agents/" + bgpAgent + "/bgp-drinstances", `{"bgp_speaker_id": "` + sp.ID + `"}`, 409, "DrAgentAssociationError", "is already associated to a BGP speaker"},
		{"scheduling on an L2 agent", "POST", "/v2.0/agents/" + neutron.DerivedID("agent", "0b5d2a5e-0000-4000-8000-000000000000", "x") + "/bgp-drinstances", `{"bgp_speaker_id": "` + sp.ID + `"}`, 404, "DrAgentInvalid", "is invalid or has been disabled"},
		{"bad route target", "POST", "/v2.0/bgpvpn/bgpvpns", `{"bgpvpn": {"route_targets": ["64512"]}}`, 400, "HTTPBadRequest", "does not match a route target"},
		{"network associated twice", "POST", "/v2.0/bgpvpn/bgpvpns/" + v.ID + "/network_associations", `{"network_association": {"network_id": "` + n.ID + `"}}`, 400, "BGPVPNNetAssocAlreadyExists", "is already associated to BGPVPN"},
		{"router with an l2 VPN", "POST", "/v2.0/bgpvpn/bgpvpns/" + l2.ID + "/router_associations", `{"router_association": {"router_id": "` + r.ID + `"}}`, 400, "BGPVPNRouterAssociationNotSupported", "does not support router associations"},
	})
	member, _ := e.project("bgp-member")
	if _, err := speakers.Create(ctx, member, speakers.CreateOpts{Name: "x", LocalAS: "1", IPVersion: 4}).Extract(); err == nil {
		t.Error("a member created a BGP speaker")
	}
}
