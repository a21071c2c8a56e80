package neutron_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgp/peers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgp/speakers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
)

// mustNative creates a native object as the admin and returns its id.
func (e *env) mustNative(path, body string) string {
	e.t.Helper()
	st, doc := e.raw(e.admin, "POST", path, body)
	id, _ := doc["id"].(string)
	if st < 200 || st > 299 || id == "" {
		e.t.Fatalf("POST %s %s: %d %v", path, body, st, doc)
	}
	return id
}

// bgpState is what a router's native BGP model holds, as text.
type bgpState struct {
	asn      uint32
	networks []string // "prefix"
	peers    []string // "address asn port"
	routes   []string // "dst via gw port", the router's routes with a gateway
}

func (e *env) bgpState(router string) bgpState {
	e.t.Helper()
	st := e.srv.Store()
	o, err := st.Get(e.ctx, model.RouterKind, router)
	if err != nil {
		e.t.Fatal(err)
	}
	out := bgpState{asn: o.(*model.Router).ASN}
	ns, _, err := st.List(e.ctx, model.BGPNetworkKind, "router_id", router)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, n := range ns {
		out.networks = append(out.networks, n.(*model.BGPNetwork).Network.String())
	}
	ps, _, err := st.List(e.ctx, model.BGPPeerKind, "router_id", router)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range ps {
		p := p.(*model.BGPPeer)
		line := fmt.Sprintf("%s %d %s", p.Address, p.ASN, p.PortID)
		if p.Password != "" {
			line += " password " + p.Password
		}
		out.peers = append(out.peers, line)
	}
	rs, _, err := st.List(e.ctx, model.RouteKind, "router_id", router)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rs {
		if r := r.(*model.Route); r.Gateway.IsValid() {
			out.routes = append(out.routes, fmt.Sprintf("%s via %s %s", r.Dst, r.Gateway, r.PortID))
		}
	}
	slices.Sort(out.networks)
	slices.Sort(out.peers)
	slices.Sort(out.routes)
	return out
}

func sorted(xs ...string) []string { slices.Sort(xs); return xs }

// TestBGPSpeakerDrivesUplinks: a Neutron BGP speaker on an external
// network drives the native BGP model of the provider router linked into
// it: the router's ASN, a BGP peer on the uplink holding each peer's
// address, and the advertised routes as its BGP networks, with routes to
// them through the tenant routers' gateways. It follows the tenant side's
// changes, removes exactly what it wrote, leaves what a user wrote alone,
// and refuses what it cannot drive without writing anything.
func TestBGPSpeakerDrivesUplinks(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	yes := true
	ext, err := networks.Create(ctx, c, external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public"}, External: &yes}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: ext.ID, IPVersion: 4, CIDR: "172.24.4.0/24", GatewayIP: ptr("172.24.4.1"),
		AllocationPools: []subnets.AllocationPool{{Start: "172.24.4.10", End: "172.24.4.250"}}}).Extract(); err != nil {
		t.Fatal(err)
	}
	ten, err := networks.Create(ctx, c, networks.CreateOpts{Name: "tenant"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	sub1, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: ten.ID, IPVersion: 4, CIDR: "10.90.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	gw := r.GatewayInfo.ExternalFixedIPs[0].IPAddress
	if _, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sub1.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	vm, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: ten.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	fip, err := floatingips.Create(ctx, c, floatingips.CreateOpts{FloatingNetworkID: ext.ID, PortID: vm.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	// The provider router (native): linked into the external network's
	// bridge at its gateway address, with two uplinks.
	prov := e.mustNative("/api/v1/routers", `{"name": "provider"}`)
	extPort := e.mustNative("/api/v1/ports", `{"router_id": "`+prov+`", "address": "172.24.4.1", "network": "172.24.4.0/24"}`)
	e.mustNative("/api/v1/ports", `{"bridge_id": "`+ext.ID+`", "peer_id": "`+extPort+`"}`)
	up1 := e.mustNative("/api/v1/ports", `{"router_id": "`+prov+`", "address": "198.51.100.2", "network": "198.51.100.0/30"}`)
	up2 := e.mustNative("/api/v1/ports", `{"router_id": "`+prov+`", "address": "198.51.101.2", "network": "198.51.101.0/30"}`)
	// A prefix the operator announces natively, which no speaker owns.
	e.mustNative("/api/v1/routers/"+prov+"/bgp-networks", `{"network": "192.0.2.0/24"}`)

	sp, err := speakers.Create(ctx, c, speakers.CreateOpts{Name: "s", LocalAS: "64512", IPVersion: 4, AdvertiseTenantNetworks: true, AdvertiseFloatingIPHostRoutes: true}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	p1, err := peers.Create(ctx, c, peers.CreateOpts{Name: "isp1", PeerIP: "198.51.100.1", RemoteAS: 65001, AuthType: "none"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	// isp2 signs its session (TCP MD5): the native peer gets the password.
	p2, err := peers.Create(ctx, c, peers.CreateOpts{Name: "isp2", PeerIP: "198.51.101.1", RemoteAS: 65002, AuthType: "md5",
		Password: "isp2-secret"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	far, err := peers.Create(ctx, c, peers.CreateOpts{Name: "far", PeerIP: "203.0.113.9", RemoteAS: 65009, AuthType: "none"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	// A peer before any gateway network drives nothing yet.
	if _, err := speakers.AddBGPPeer(ctx, c, sp.ID, speakers.AddBGPPeerOpts{BGPPeerID: p1.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got := e.bgpState(prov); got.asn != 0 || len(got.peers) != 0 || len(got.networks) != 1 {
		t.Fatalf("before a gateway network: %+v", got)
	}
	if _, err := speakers.AddGatewayNetwork(ctx, c, sp.ID, speakers.AddGatewayNetworkOpts{NetworkID: ext.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := speakers.AddBGPPeer(ctx, c, sp.ID, speakers.AddBGPPeerOpts{BGPPeerID: p2.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	fipNet := fip.FloatingIP + "/32"
	want := bgpState{asn: 64512,
		networks: sorted("10.90.0.0/24", "192.0.2.0/24", fipNet),
		peers:    sorted("198.51.100.1 65001 "+up1, "198.51.101.1 65002 "+up2+" password isp2-secret"),
		routes:   sorted("10.90.0.0/24 via "+gw+" "+extPort, fipNet+" via "+gw+" "+extPort)}
	got := e.bgpState(prov)
	t.Logf("provider router's BGP from the speaker: %+v", got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("provider router's BGP:\n got %+v\nwant %+v", got, want)
	}
	// The native peer is a peer like any: BFD and fast timers by default.
	ps, _, err := e.srv.Store().List(ctx, model.BGPPeerKind, "router_id", prov)
	if err != nil || len(ps) != 2 || !ps[0].(*model.BGPPeer).BFDEnabled() || ps[0].(*model.BGPPeer).HoldTime != 3 {
		t.Errorf("native peers: %+v %v", ps, err)
	}
	// get_advertised_routes says what the uplinks announce.
	advertised := func() []string {
		t.Helper()
		pages, err := speakers.GetAdvertisedRoutes(c, sp.ID).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := speakers.ExtractAdvertisedRoutes(pages)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Destination+" via "+r.NextHop)
		}
		slices.Sort(out)
		return out
	}
	if got, want := advertised(), sorted("10.90.0.0/24 via "+gw, fipNet+" via "+gw); !slices.Equal(got, want) {
		t.Errorf("advertised %v, want %v", got, want)
	}

	// What cannot be driven is refused, and writes nothing.
	e.refused([]refusal{
		{"peer no uplink reaches", "PUT", "/v2.0/bgp-speakers/" + sp.ID + "/add_bgp_peer", `{"bgp_peer_id": "` + far.ID + `"}`, 400, "InvalidBgpPeer", "peer_ip 203.0.113.9 is on no uplink port"},
		{"password longer than a TCP MD5 key", "PUT", "/v2.0/bgp-peers/" + p2.ID, `{"bgp_peer": {"password": "` + strings.Repeat("k", 81) + `"}}`,
			400, "InvalidBgpPeerMd5Authentication", "password: 81 characters"},
		{"md5 peer's password emptied", "PUT", "/v2.0/bgp-peers/" + p2.ID, `{"bgp_peer": {"password": ""}}`,
			400, "InvalidBgpPeerMd5Authentication", "A password must be supplied"},
	})
	// The password is write-only: neither API shows it.
	for _, path := range []string{"/v2.0/bgp-peers/" + p2.ID, "/v2.0/bgp-peers"} {
		if st, doc := e.raw(e.admin, "GET", path, ""); st != 200 || strings.Contains(fmt.Sprint(doc), "isp2-secret") ||
			strings.Contains(fmt.Sprint(doc), "password") {
			t.Errorf("GET %s: %d %v", path, st, doc)
		}
	}
	if st, l := e.rawList(e.admin, "/api/v1/routers/"+prov+"/bgp-peers"); st != 200 || len(l) != 2 ||
		strings.Contains(fmt.Sprint(l), "isp2-secret") || strings.Contains(fmt.Sprint(l), "password") {
		t.Errorf("the native API's peers: %d %v", st, l)
	}
	// A new password reaches the native peer.
	if _, err := peers.Update(ctx, c, p2.ID, peers.UpdateOpts{Password: "isp2-new"}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got := e.bgpState(prov); !slices.Contains(got.peers, "198.51.101.1 65002 "+up2+" password isp2-new") {
		t.Errorf("after a new password: %+v", got.peers)
	}

	// The tenant side's changes follow: a second subnet on the router is
	// announced, a floating IP disassociated is not any more.
	sub2, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: ten.ID, IPVersion: 4, CIDR: "10.91.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sub2.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := floatingips.Update(ctx, c, fip.ID, floatingips.UpdateOpts{PortID: new(string)}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got := e.bgpState(prov); !slices.Equal(got.networks, sorted("10.90.0.0/24", "10.91.0.0/24", "192.0.2.0/24")) ||
		slices.Contains(got.routes, fipNet+" via "+gw+" "+extPort) {
		t.Errorf("after a new interface and a disassociated floating IP: %+v", got)
	}
	if got := advertised(); !slices.Equal(got, sorted("10.90.0.0/24 via "+gw, "10.91.0.0/24 via "+gw)) {
		t.Errorf("advertised %v", got)
	}

	// Removing a peer removes its native peer, and only it.
	if err := speakers.RemoveBGPPeer(ctx, c, sp.ID, speakers.RemoveBGPPeerOpts{BGPPeerID: p2.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got := e.bgpState(prov); !slices.Equal(got.peers, []string{"198.51.100.1 65001 " + up1}) {
		t.Errorf("after removing a peer: %+v", got)
	}
	// Removing the gateway network takes everything the speaker wrote,
	// the ASN included; the operator's own BGP network stays.
	if err := speakers.RemoveGatewayNetwork(ctx, c, sp.ID, speakers.RemoveGatewayNetworkOpts{NetworkID: ext.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got := e.bgpState(prov); fmt.Sprint(got) != fmt.Sprint(bgpState{networks: []string{"192.0.2.0/24"}}) {
		t.Errorf("after removing the gateway network: %+v", got)
	}

	// A router a user gave another ASN, or a peer a user created at the
	// same address, is not taken over.
	if err := e.native("PATCH", "/api/v1/routers/"+prov, `{"asn": 65100}`); err != nil {
		t.Fatal(err)
	}
	e.refused([]refusal{{"router with another ASN", "PUT", "/v2.0/bgp-speakers/" + sp.ID + "/add_gateway_network", `{"network_id": "` + ext.ID + `"}`,
		409, "BgpSpeakerLocalAsConflict", "local_as 64512"}})
	if err := e.native("PATCH", "/api/v1/routers/"+prov, `{"asn": 64512}`); err != nil {
		t.Fatal(err)
	}
	e.mustNative("/api/v1/routers/"+prov+"/bgp-peers", `{"asn": 65001, "address": "198.51.100.1"}`)
	e.refused([]refusal{{"address a user's peer has", "PUT", "/v2.0/bgp-speakers/" + sp.ID + "/add_gateway_network", `{"network_id": "` + ext.ID + `"}`,
		409, "DuplicateBgpPeerIpException", "peer_ip 198.51.100.1"}})
	// With that peer gone from the speaker, the network is driven again on
	// the router's ASN, the user's; deleting the speaker leaves it, and the
	// user's peer.
	if err := speakers.RemoveBGPPeer(ctx, c, sp.ID, speakers.RemoveBGPPeerOpts{BGPPeerID: p1.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := speakers.AddGatewayNetwork(ctx, c, sp.ID, speakers.AddGatewayNetworkOpts{NetworkID: ext.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got := e.bgpState(prov); len(got.networks) != 3 || len(got.routes) != 2 {
		t.Errorf("driven again: %+v", got)
	}
	if err := speakers.Delete(ctx, c, sp.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	want = bgpState{asn: 64512, networks: []string{"192.0.2.0/24"}, peers: []string{"198.51.100.1 65001 " + up1}}
	if got := e.bgpState(prov); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after deleting the speaker:\n got %+v\nwant %+v", got, want)
	}
}
