package neutron_test

import (
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/nagare/nagare/pkg/model"
)

// TestExternalGateways: a router's extra gateways (external-gateway-
// multihoming) are router ports with their subnet's route and no default
// route; removing the compatibility gateway makes the next one it;
// update_external_gateways keeps, readdresses, drops and adds; Neutron's
// refusals.
func TestExternalGateways(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	store := e.srv.Store()
	plain, err := networks.Create(ctx, c, networks.CreateOpts{Name: "plain"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.network("a", "203.0.113.0/24", true)
	b, bsub := e.network("b", "198.51.100.0/24", true)
	created, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	r := &mhRouter{ID: created.ID}
	// The first gateway added to a router without one is its compatibility gateway.
	r, err = extractMH(routers.AddExternalGateways(ctx, c, r.ID, routers.AddExternalGatewaysOpts{ExternalGateways: []routers.GatewayInfo{
		{NetworkID: a.ID}, {NetworkID: b.ID}, {NetworkID: b.ID}}}))
	if err != nil || r.GatewayInfo.NetworkID != a.ID || len(r.ExternalGateways) != 3 || r.ExternalGateways[0].NetworkID != a.ID {
		t.Fatalf("add gateways: %+v %v", r, err)
	}
	defaults := func() int {
		t.Helper()
		objs, _, err := store.List(ctx, model.RouteKind, "router_id", r.ID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range objs {
			if o.(*model.Route).Dst.Bits() == 0 {
				n++
			}
		}
		return n
	}
	if n := defaults(); n != 1 {
		t.Errorf("%d default routes, want the compatibility gateway's only", n)
	}
	second := r.ExternalGateways[1]
	third := r.ExternalGateways[2]
	bIP := func(g routers.GatewayInfo) []routers.ExternalFixedIP {
		return []routers.ExternalFixedIP{{IPAddress: g.ExternalFixedIPs[0].IPAddress, SubnetID: bsub.ID}}
	}

	e.refused([]refusal{
		{"two on one network without addresses", "PUT", "/v2.0/routers/" + r.ID + "/remove_external_gateways",
			`{"router": {"external_gateways": [{"network_id": "` + b.ID + `"}]}}`, 400, "UnableToMatchGateways", "multiple gateway ports are attached to the same network"},
		{"no such address", "PUT", "/v2.0/routers/" + r.ID + "/remove_external_gateways",
			`{"router": {"external_gateways": [{"network_id": "` + b.ID + `", "external_fixed_ips": [{"ip_address": "198.51.100.250"}]}]}}`, 400, "UnableToMatchGateways", "could not match a gateway port attached to network"},
		{"not external", "PUT", "/v2.0/routers/" + r.ID + "/add_external_gateways",
			`{"router": {"external_gateways": [{"network_id": "` + plain.ID + `"}]}}`, 400, "BadRequest", "is not an external network"},
		{"unknown key", "PUT", "/v2.0/routers/" + r.ID + "/add_external_gateways",
			`{"router": {"external_gateways": [{"network": "` + b.ID + `"}]}}`, 400, "HTTPBadRequest", "Expected keys: {'network_id'}"},
	})

	// Removing the compatibility gateway promotes the next gateway.
	r, err = extractMH(routers.RemoveExternalGateways(ctx, c, r.ID, routers.RemoveExternalGatewaysOpts{ExternalGateways: []routers.GatewayInfo{{NetworkID: a.ID}}}))
	if err != nil || r.GatewayInfo.NetworkID != b.ID || len(r.ExternalGateways) != 2 {
		t.Fatalf("remove the compatibility gateway: %+v %v", r, err)
	}
	if n := defaults(); n != 1 {
		t.Errorf("%d default routes after the promotion, want 1", n)
	}
	// Update: keep the (now) compatibility gateway, drop the other, add a.
	r, err = extractMH(routers.UpdateExternalGateways(ctx, c, r.ID, routers.UpdateExternalGatewaysOpts{ExternalGateways: []routers.GatewayInfo{
		{NetworkID: b.ID, ExternalFixedIPs: bIP(second)}, {NetworkID: a.ID}}}))
	if err != nil || r.GatewayInfo.NetworkID != b.ID || len(r.ExternalGateways) != 2 || r.ExternalGateways[1].NetworkID != a.ID {
		t.Fatalf("update gateways: %+v %v", r, err)
	}
	for _, g := range r.ExternalGateways {
		if g.NetworkID == b.ID && g.ExternalFixedIPs[0].IPAddress == third.ExternalFixedIPs[0].IPAddress {
			t.Errorf("the unnamed gateway on b survived: %+v", r.ExternalGateways)
		}
	}
	// Deleting the router deletes every gateway port.
	if err := routers.Delete(ctx, c, r.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if st, doc := e.raw(c, "GET", "/v2.0/ports?device_owner=network:router_gateway", ""); st != 200 || len(doc["ports"].([]any)) != 0 {
		t.Errorf("gateway ports outlived the router: %d %v", st, doc)
	}
}

// mhRouter is a router with its external_gateways (gophercloud's Router
// lacks them).
type mhRouter struct {
	ID               string                `json:"id"`
	GatewayInfo      routers.GatewayInfo   `json:"external_gateway_info"`
	ExternalGateways []routers.GatewayInfo `json:"external_gateways"`
}

func extractMH(res interface{ ExtractInto(any) error }) (*mhRouter, error) {
	var out struct {
		Router *mhRouter `json:"router"`
	}
	err := res.ExtractInto(&out)
	return out.Router, err
}
