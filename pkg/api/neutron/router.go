package neutron

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

var routerAttrs = std.with(attrs{
	"name":                    {post: true, put: true},
	"admin_state_up":          {post: true, put: true},
	"status":                  {},
	"external_gateway_info":   {post: true, put: true},
	"external_gateways":       {},
	"routes":                  {put: true},
	"distributed":             {post: true, put: true, adminSet: true, adminView: true},
	"ha":                      {post: true, put: true, adminSet: true, adminView: true},
	"flavor_id":               {post: true},
	"availability_zone_hints": {post: true},
	"availability_zones":      {},
})

func decodeRouter(b Body, c *identity.Context, post bool) (neutron.RouterRequest, error) {
	var r neutron.RouterRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if r.AdminStateUp, err = b.optBool("admin_state_up"); err != nil {
		return r, err
	}
	for _, a := range []string{"distributed", "ha"} {
		if v, _, err := b.boolean(a); err != nil {
			return r, err
		} else if v {
			return r, neutron.InvalidInput("%s routers are not implemented: Nagare's routers are distributed by design (every agent simulates them)", a)
		}
	}
	if b.has("flavor_id") && !b.isNull("flavor_id") {
		return r, neutron.InvalidInput("router flavors are not implemented")
	}
	if err := b.noneOrEmpty("availability_zone_hints", "availability zones are not implemented: availability_zone_hints must be empty"); err != nil {
		return r, err
	}
	if r.Gateway, err = decodeGateway(b, c, post); err != nil {
		return r, err
	}
	if b.has("routes") {
		routes, err := parseRoutes(b, "routes")
		if err != nil {
			return r, err
		}
		r.Routes = &routes
	}
	return r, nil
}

// decodeGateway reads external_gateway_info: nil when not given; null and
// {} remove the gateway. Only admins choose SNAT and addresses (Neutron's
// policy on its keys).
func decodeGateway(b Body, c *identity.Context, post bool) (*neutron.GatewayRequest, error) {
	if !b.has("external_gateway_info") {
		return nil, nil
	}
	if b.isNull("external_gateway_info") || string(b["external_gateway_info"]) == "{}" {
		return &neutron.GatewayRequest{}, nil
	}
	var m map[string]json.RawMessage
	if _, err := b.raw("external_gateway_info", &m, "not a dictionary"); err != nil {
		return nil, err
	}
	return gatewayInfo(Body(m), c, verb(post)+"_router:external_gateway_info:", "external_gateway_info")
}

// gatewayInfo reads one gateway's dictionary; policy prefixes the names
// of the admin-only keys' rules.
func gatewayInfo(gb Body, c *identity.Context, policy, attr string) (*neutron.GatewayRequest, error) {
	g := &neutron.GatewayRequest{}
	for _, k := range slices.Sorted(maps.Keys(gb)) {
		switch k {
		case "network_id":
		case "enable_snat", "external_fixed_ips":
			if !c.IsAdmin() {
				return nil, neutron.PolicyNotAuthorized(policy + k)
			}
		default:
			return nil, invalid(attr, "Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided keys: {'%s'}", k)
		}
	}
	var err error
	if g.NetworkID, _, err = gb.uuid("network_id"); err != nil {
		return nil, err
	}
	if g.NetworkID == "" {
		return nil, invalid(attr, "Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided keys: %s", pyList(slices.Sorted(maps.Keys(gb))))
	}
	if g.EnableSNAT, err = gb.optBool("enable_snat"); err != nil {
		return nil, err
	}
	if gb.has("external_fixed_ips") {
		if g.FixedIPs, err = parseFixedIPs(Body{"fixed_ips": gb["external_fixed_ips"]}); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func viewRouter(v *viewer, x *neutron.Router) map[string]any {
	m := stdView(&x.Std, true)
	m["admin_state_up"], m["status"] = x.AdminStateUp, "ACTIVE"
	m["external_gateway_info"] = gatewayView(v, x)
	m["external_gateways"] = gatewaysView(v, x)
	m["routes"] = routesView(x.Routes)
	m["flavor_id"] = nil
	m["availability_zone_hints"], m["availability_zones"] = []string{}, []string{}
	if v.admin {
		m["distributed"], m["ha"] = false, false
	}
	return m
}

func gatewayView(v *viewer, r *neutron.Router) any {
	if r.GatewayNetworkID == "" {
		return nil
	}
	ips := []map[string]string{}
	if r.GatewayPortID != "" {
		if p := v.Port(r.GatewayPortID); p != nil {
			ips = fixedIPsView(p.FixedIPs)
		}
	}
	return map[string]any{"network_id": r.GatewayNetworkID, "enable_snat": r.EnableSNAT, "external_fixed_ips": ips}
}

// Router interfaces: PUT add_router_interface and remove_router_interface.

func (a *API) registerInterfaces(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/add_router_interface", a.routerInterface(a.svc.AddInterface))
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/remove_router_interface", a.routerInterface(a.svc.RemoveInterface))
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/add_extraroutes", a.extraRoutes(a.svc.AddExtraRoutes))
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/remove_extraroutes", a.extraRoutes(a.svc.RemoveExtraRoutes))
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/add_external_gateways", a.externalGateways("add", a.svc.AddExternalGateways))
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/update_external_gateways", a.externalGateways("update", a.svc.UpdateExternalGateways))
	mux.HandleFunc("PUT "+Prefix+"/routers/{id}/remove_external_gateways", a.externalGateways("remove", a.svc.RemoveExternalGateways))
}

// extraRoutes serves add_extraroutes and remove_extraroutes (extraroute-
// atomic): {"router": {"routes": [...]}} in, the router out.
func (a *API) extraRoutes(op func(context.Context, *identity.Context, string, []neutron.Route) (*neutron.Router, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := readBody(r, "router")
		if err == nil {
			err = attrs{"routes": {post: true, required: true}}.check(b, true, caller(r), "router")
		}
		var routes []neutron.Route
		if err == nil {
			routes, err = parseRoutes(b, "routes")
		}
		var rt *neutron.Router
		if err == nil {
			rt, err = op(r.Context(), caller(r), pathID(r, "id"), routes)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.respondWith(w, r, a.resource("router"), rt, http.StatusOK)
	}
}

type interfaceOp func(ctx context.Context, c *identity.Context, id string, r neutron.InterfaceRequest) (*neutron.InterfaceInfo, error)

func (a *API) routerInterface(op interfaceOp) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeInterface(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		info, err := op(r.Context(), caller(r), pathID(r, "id"), req)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, interfaceView(info))
	}
}

// decodeInterface reads {"subnet_id": …} or {"port_id": …} (the body is
// not wrapped in a resource key).
func decodeInterface(r *http.Request) (neutron.InterfaceRequest, error) {
	var req neutron.InterfaceRequest
	doc, err := readJSON(r)
	if err != nil {
		return req, err
	}
	b := Body(doc)
	for k := range b {
		if k != "subnet_id" && k != "port_id" {
			return req, neutron.HTTPBadRequest("Unrecognized attribute(s) '%s'", k)
		}
	}
	if req.SubnetID, _, err = b.uuid("subnet_id"); err != nil {
		return req, err
	}
	req.PortID, _, err = b.uuid("port_id")
	return req, err
}

func interfaceView(info *neutron.InterfaceInfo) map[string]any {
	r, p := info.Router, info.Port
	ids := []string{}
	for _, f := range p.FixedIPs {
		ids = append(ids, f.SubnetID)
	}
	first := ""
	if len(ids) > 0 {
		first = ids[0]
	}
	return map[string]any{"id": r.ID, "tenant_id": r.ProjectID, "project_id": r.ProjectID, "port_id": p.ID,
		"subnet_id": first, "subnet_ids": ids, "network_id": p.NetworkID}
}
