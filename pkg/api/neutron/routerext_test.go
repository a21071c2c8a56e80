package neutron_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/extraroutes"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/portforwarding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/nagare/nagare/pkg/model"
)

// TestRouterExtensions: extraroute-atomic's add/remove_extraroutes (native
// routes follow), port forwarding of port ranges (compiled to a DNAT that
// maps ports one to one), and a gateway update naming the addresses it has
// (no change, as in Neutron).
func TestRouterExtensions(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	store := e.srv.Store()
	ext, esub := e.network("ext", "203.0.113.0/24", true)
	n, sub := e.network("in", "10.1.0.0/24", false)
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sub.ID}).Extract(); err != nil {
		t.Fatal(err)
	}

	// Extra routes: added once each, removed, and the native routes follow.
	nativeRoutes := func() []string {
		t.Helper()
		objs, _, err := store.List(ctx, model.RouteKind, "router_id", r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			if rt := o.(*model.Route); rt.Gateway == netip.MustParseAddr("10.1.0.250") {
				out = append(out, rt.Dst.String())
			}
		}
		slices.Sort(out)
		return out
	}
	add := []routers.Route{{DestinationCIDR: "192.168.11.0/24", NextHop: "10.1.0.250"}, {DestinationCIDR: "192.168.12.0/24", NextHop: "10.1.0.250"}}
	got, err := extraroutes.Add(ctx, c, r.ID, extraroutes.Opts{Routes: &add}).Extract()
	if err != nil || len(got.Routes) != 2 {
		t.Fatalf("add extra routes: %+v %v", got, err)
	}
	again := append(add[1:], routers.Route{DestinationCIDR: "192.168.13.0/24", NextHop: "10.1.0.250"})
	if got, err = extraroutes.Add(ctx, c, r.ID, extraroutes.Opts{Routes: &again}).Extract(); err != nil || len(got.Routes) != 3 {
		t.Fatalf("add again: %+v %v", got, err)
	}
	if nr := nativeRoutes(); !slices.Equal(nr, []string{"192.168.11.0/24", "192.168.12.0/24", "192.168.13.0/24"}) {
		t.Errorf("native routes %v", nr)
	}
	gone := []routers.Route{add[0], {DestinationCIDR: "10.99.0.0/16", NextHop: "10.1.0.250"}}
	if got, err = extraroutes.Remove(ctx, c, r.ID, extraroutes.Opts{Routes: &gone}).Extract(); err != nil || len(got.Routes) != 2 {
		t.Fatalf("remove: %+v %v", got, err)
	}
	if nr := nativeRoutes(); !slices.Equal(nr, []string{"192.168.12.0/24", "192.168.13.0/24"}) {
		t.Errorf("native routes after the removal %v", nr)
	}

	// The gateway named again with a subnet it is on: nothing changes.
	gw := r.GatewayInfo.ExternalFixedIPs
	efi := append(slices.Clone(gw), routers.ExternalFixedIP{SubnetID: esub.ID})
	up, err := routers.Update(ctx, c, r.ID, routers.UpdateOpts{GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID, ExternalFixedIPs: efi}}).Extract()
	if err != nil || !slices.Equal(up.GatewayInfo.ExternalFixedIPs, gw) {
		t.Errorf("gateway after naming its own subnet again: %+v %v, want %+v", up.GatewayInfo.ExternalFixedIPs, err, gw)
	}

	// Port forwarding of a range: N-N, translated port by port.
	server, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: "10.1.0.20"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	fip, err := floatingips.Create(ctx, c, floatingips.CreateOpts{FloatingNetworkID: ext.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := portforwarding.Create(ctx, c, fip.ID, portforwarding.CreateOpts{InternalPortID: server.ID, InternalIPAddress: "10.1.0.20",
		InternalPortRange: "1300:1399", ExternalPortRange: "2300:2399", Protocol: "tcp"}).Extract()
	if err != nil || pf.InternalPortRange != "1300:1399" || pf.ExternalPortRange != "2300:2399" || pf.InternalPort != 0 {
		t.Fatalf("range forwarding: %+v %v", pf, err)
	}
	objs, _, err := store.List(ctx, model.RuleKind, "", "")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range objs {
		x := o.(*model.Rule)
		if x.Type == model.RuleDNAT && len(x.Targets) == 1 && x.Targets[0].String() == "10.1.0.20:1300-1399/2300" &&
			x.Condition.DstPort == (model.PortRange{Start: 2300, End: 2399}) {
			found = true
		}
	}
	if !found {
		t.Error("no DNAT rule 2300-2399 -> 10.1.0.20:1300-1399/2300 in the router's chains")
	}
	one, err := portforwarding.Create(ctx, c, fip.ID, portforwarding.CreateOpts{InternalPortID: server.ID, InternalIPAddress: "10.1.0.20",
		InternalPort: 22, ExternalPort: 2222, Protocol: "tcp"}).Extract()
	if err != nil || one.InternalPortRange != "22:22" || one.InternalPort != 22 {
		t.Fatalf("single forwarding: %+v %v", one, err)
	}

	pfPath := "/v2.0/floatingips/" + fip.ID + "/port_forwardings"
	pfBody := func(extra string) string {
		return `{"port_forwarding": {"internal_port_id": "` + server.ID + `", "internal_ip_address": "10.1.0.20", "protocol": "tcp"` + extra + `}}`
	}
	e.refused([]refusal{
		{"ranges of different sizes", "POST", pfPath, pfBody(`, "internal_port_range": "100:110", "external_port_range": "100:120"`), 400, "BadRequest", "The relation between internal and external ports must be N-N or 1-N"},
		{"colliding external range", "POST", pfPath, pfBody(`, "internal_port": 80, "external_port_range": "2390:2400"`), 400, "BadRequest", "There is a port collision with the external_port_range. The following ranges collide: 2300:2399 and 2390:2400"},
		{"colliding internal range", "POST", pfPath, pfBody(`, "internal_port_range": "1390:1400", "external_port_range": "3390:3400"`), 400, "BadRequest", "There is a port collision with the internal_port_range"},
		{"backwards range", "POST", pfPath, pfBody(`, "internal_port": 80, "external_port_range": "90:80"`), 400, "HTTPBadRequest", "is bigger than the second port"},
		{"range of three ports", "POST", pfPath, pfBody(`, "internal_port": 80, "external_port_range": "1:2:3"`), 400, "HTTPBadRequest", "Port range must be two integers separated by a colon"},
		{"port 0 in a range", "POST", pfPath, pfBody(`, "internal_port": 80, "external_port_range": "0:10"`), 400, "HTTPBadRequest", "Invalid port: 0"},
		{"port and range both", "POST", pfPath, pfBody(`, "internal_port": 80, "internal_port_range": "80:81", "external_port_range": "4000:4001"`), 400, "BadRequest", "cannot both be given"},
		{"extra route to an unconnected next hop", "PUT", "/v2.0/routers/" + r.ID + "/add_extraroutes", `{"router": {"routes": [{"destination": "10.50.0.0/16", "nexthop": "172.16.0.1"}]}}`, 400, "InvalidRoutes", "the nexthop is not connected with router"},
		{"extra routes without routes", "PUT", "/v2.0/routers/" + r.ID + "/add_extraroutes", `{"router": {}}`, 400, "HTTPBadRequest", "Required attribute 'routes' not specified"},
		{"extra routes with another attribute", "PUT", "/v2.0/routers/" + r.ID + "/remove_extraroutes", `{"router": {"routes": [], "name": "x"}}`, 400, "HTTPBadRequest", "Unrecognized attribute(s) 'name'"},
	})
}
