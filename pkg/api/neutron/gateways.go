package neutron

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// External gateway multihoming (external-gateway-multihoming): a router's
// external_gateways, and PUT add_, update_ and remove_external_gateways
// with {"router": {"external_gateways": [...]}}.

func gatewaysView(v *viewer, r *neutron.Router) []map[string]any {
	out := []map[string]any{}
	for _, p := range v.GatewayPorts(r) {
		out = append(out, map[string]any{"network_id": p.NetworkID, "external_fixed_ips": fixedIPsView(p.FixedIPs)})
	}
	return out
}

type gatewaysOp func(ctx context.Context, c *identity.Context, id string, gws []neutron.GatewayRequest) (*neutron.Router, error)

func (a *API) externalGateways(verb string, op gatewaysOp) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		b, err := readBody(r, "router")
		if err == nil {
			err = attrs{"external_gateways": {post: true, required: true}}.check(b, true, c, "router")
		}
		var gws []neutron.GatewayRequest
		if err == nil {
			gws, err = decodeGateways(b, c, verb)
		}
		var rt *neutron.Router
		if err == nil {
			rt, err = op(r.Context(), c, pathID(r, "id"), gws)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.respondWith(w, r, a.resource("router"), rt, http.StatusOK)
	}
}

// decodeGateways reads external_gateways: a list of gateway dictionaries
// (type:list_of_dict_or_nodata); null is none.
func decodeGateways(b Body, c *identity.Context, verb string) ([]neutron.GatewayRequest, error) {
	if b.isNull("external_gateways") {
		return nil, nil
	}
	var raw []map[string]json.RawMessage
	if _, err := b.raw("external_gateways", &raw, "not a list of dictionaries"); err != nil {
		return nil, err
	}
	out := make([]neutron.GatewayRequest, 0, len(raw))
	for _, m := range raw {
		g, err := gatewayInfo(Body(m), c, verb+"_external_gateways:external_gateways:", "external_gateways")
		if err != nil {
			return nil, err
		}
		out = append(out, *g)
	}
	return out, nil
}
