package neutron

import (
	"context"
	"net/http"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// QoS: policies (/qos/policies), their rules of each type (child
// collections) and the rule types (/qos/rule-types).

var qosPolicyAttrs = std.with(attrs{
	"name":       {post: true, put: true},
	"shared":     {post: true, put: true},
	"is_default": {post: true, put: true},
	"rules":      {},
})

func decodeQoSPolicy(b Body, _ *identity.Context, _ bool) (neutron.QoSPolicyRequest, error) {
	var r neutron.QoSPolicyRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if r.Shared, err = b.optBool("shared"); err != nil {
		return r, err
	}
	r.IsDefault, err = b.optBool("is_default")
	return r, err
}

func viewQoSPolicy(v *viewer, x *neutron.QoSPolicy) map[string]any {
	m := stdView(&x.Std, true)
	m["shared"], m["is_default"] = x.Shared, x.IsDefault
	rules := []map[string]any{}
	for _, r := range v.QoSRules(x.ID) {
		rm := viewQoSRule(r)
		rm["type"] = r.Type
		rules = append(rules, rm)
	}
	m["rules"] = rules
	return m
}

// qosRuleFields are the attributes of each rule type.
var qosRuleFields = map[string][]string{
	neutron.RuleBandwidthLimit:    {"max_kbps", "max_burst_kbps", "direction"},
	neutron.RuleDSCPMarking:       {"dscp_mark"},
	neutron.RuleMinimumBandwidth:  {"min_kbps", "direction"},
	neutron.RuleMinimumPacketRate: {"min_kpps", "direction"},
	neutron.RulePacketRateLimit:   {"max_kpps", "max_burst_kpps", "direction"},
}

func viewQoSRule(x *neutron.QoSRule) map[string]any {
	m := map[string]any{"id": x.ID, "qos_policy_id": x.PolicyID, "tenant_id": x.ProjectID, "project_id": x.ProjectID}
	vals := map[string]any{"max_kbps": x.MaxKbps, "max_burst_kbps": x.MaxBurstKbps, "direction": x.Direction, "dscp_mark": x.DSCPMark,
		"min_kbps": x.MinKbps, "min_kpps": x.MinKpps, "max_kpps": x.MaxKpps, "max_burst_kpps": x.MaxBurstKpps}
	for _, f := range qosRuleFields[x.Type] {
		m[f] = vals[f]
	}
	return m
}

func decodeQoSRule(b Body, typ string) (neutron.QoSRuleRequest, error) {
	var r neutron.QoSRuleRequest
	ints := map[string]**int{"max_kbps": &r.MaxKbps, "max_burst_kbps": &r.MaxBurstKbps, "dscp_mark": &r.DSCPMark,
		"min_kbps": &r.MinKbps, "max_kpps": &r.MaxKpps, "max_burst_kpps": &r.MaxBurstKpps, "min_kpps": &r.MinKpps}
	for _, f := range qosRuleFields[typ] {
		if f == "direction" {
			var err error
			if r.Direction, err = b.optStr("direction", 0); err != nil {
				return r, err
			}
			continue
		}
		n, null, ok, err := b.integer(f)
		if err != nil {
			return r, err
		}
		if ok && !null {
			*ints[f] = &n
		}
	}
	return r, nil
}

// registerQoS adds the rule collections of each type under their policy
// and the rule types.
func (a *API) registerQoS(mux *http.ServeMux) {
	for _, typ := range neutron.QoSRuleTypes {
		at := attrs{"id": {}, "qos_policy_id": {}, "tenant_id": {}, "project_id": {}}
		for _, f := range qosRuleFields[typ] {
			at[f] = attr{post: true, put: true}
		}
		a.registerChild(mux, &child{parent: "qos/policies", singular: typ + "_rule", plural: typ + "_rules", kind: neutron.QoSRuleKind, attrs: at,
			view: func(o model.Object) map[string]any { return viewQoSRule(o.(*neutron.QoSRule)) },
			list: func(ctx context.Context, c *identity.Context, p string) ([]model.Object, error) {
				return objects(a.svc.ListQoSRules(ctx, c, p, typ))
			},
			get: func(ctx context.Context, c *identity.Context, p, id string) (model.Object, error) {
				return object(a.svc.GetQoSRule(ctx, c, p, typ, id))
			},
			create: func(ctx context.Context, c *identity.Context, p string, b Body) (model.Object, error) {
				req, err := decodeQoSRule(b, typ)
				if err != nil {
					return nil, err
				}
				return object(a.svc.CreateQoSRule(ctx, c, p, typ, req))
			},
			update: func(ctx context.Context, c *identity.Context, p, id string, b Body) (model.Object, error) {
				req, err := decodeQoSRule(b, typ)
				if err != nil {
					return nil, err
				}
				return object(a.svc.UpdateQoSRule(ctx, c, p, typ, id, req))
			},
			delete: func(ctx context.Context, c *identity.Context, p, id string) error {
				return a.svc.DeleteQoSRule(ctx, c, p, typ, id)
			},
		})
	}
	mux.HandleFunc("GET "+Prefix+"/qos/rule-types", func(w http.ResponseWriter, r *http.Request) {
		out := []map[string]any{}
		for _, t := range neutron.EnforcedQoSRuleTypes {
			out = append(out, map[string]any{"type": t})
		}
		writeJSON(w, http.StatusOK, map[string]any{"rule_types": out})
	})
	mux.HandleFunc("GET "+Prefix+"/qos/rule-types/{type}", func(w http.ResponseWriter, r *http.Request) {
		t := r.PathValue("type")
		if !slices.Contains(neutron.EnforcedQoSRuleTypes, t) {
			a.fail(w, r, neutron.NewError(neutron.NotFound, "QosRuleTypeNotFound", "QoS rule type %s could not be found.", t))
			return
		}
		params := []map[string]any{}
		for _, f := range qosRuleFields[t] {
			p := map[string]any{"parameter_name": f, "parameter_type": "range", "parameter_values": map[string]int{"start": 0, "end": 2147483647}}
			switch f {
			case "direction":
				p["parameter_type"], p["parameter_values"] = "choices", []string{"egress", "ingress"}
			case "dscp_mark":
				p["parameter_type"], p["parameter_values"] = "choices", neutron.ValidDSCPMarks
			}
			params = append(params, p)
		}
		writeJSON(w, http.StatusOK, map[string]any{"rule_type": map[string]any{"type": t,
			"drivers": []map[string]any{{"name": "nagare", "supported_parameters": params}}}})
	})
}
