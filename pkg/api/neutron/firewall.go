package neutron

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// FWaaS v2 (fwaas_v2): /fwaas/firewall_rules, firewall_policies (with
// insert_rule and remove_rule) and firewall_groups.

var fwStd = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "shared": {post: true, put: true}}

var fwRuleAttrs = fwStd.with(attrs{
	"protocol": {post: true, put: true}, "ip_version": {post: true, put: true},
	"source_ip_address": {post: true, put: true}, "destination_ip_address": {post: true, put: true},
	"source_port": {post: true, put: true}, "destination_port": {post: true, put: true},
	"action": {post: true, put: true}, "enabled": {post: true, put: true},
	"firewall_policy_id": {}, "position": {},
	"source_firewall_group_id": {post: true, put: true}, "destination_firewall_group_id": {post: true, put: true},
})

// fwPort reads a rule's port: "80", "1000:2000" (neutron-lib's
// type:port_range), or null.
func fwPort(b Body, name string) (*[2]int, error) {
	if !b.has(name) {
		return nil, nil
	}
	var out [2]int
	if b.isNull(name) {
		return &out, nil
	}
	var x any
	if _, err := b.raw(name, &x, "not a port range"); err != nil {
		return nil, err
	}
	text := fmt.Sprint(x)
	if f, ok := x.(float64); ok {
		text = strconv.Itoa(int(f))
	}
	lo, hi, ranged := strings.Cut(text, ":")
	if !ranged {
		hi = lo
	}
	for i, s := range []string{lo, hi} {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return nil, invalid(name, "Invalid port: %s", s)
		}
		out[i] = n
	}
	return &out, nil
}

func decodeFWRule(b Body, _ *identity.Context, _ bool) (neutron.FirewallRuleRequest, error) {
	var r neutron.FirewallRuleRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if b.has("protocol") {
		p := ""
		if !b.isNull("protocol") {
			var x any
			if _, err := b.raw("protocol", &x, "not a protocol"); err != nil {
				return r, err
			}
			p = strings.ToLower(fmt.Sprint(x))
			if f, ok := x.(float64); ok {
				p = map[int]string{1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 58: "ipv6-icmp", 132: "sctp"}[int(f)]
				if p == "" {
					p = strconv.Itoa(int(f))
				}
			}
			if p == "any" {
				p = ""
			}
		}
		r.Protocol = &p
	}
	if b.has("ip_version") {
		v, err := ipVersion(b)
		if err != nil {
			return r, err
		}
		r.IPVersion = &v
	}
	for _, f := range []struct {
		name string
		dst  **[2]int
	}{{"source_port", &r.SourcePort}, {"destination_port", &r.DestPort}} {
		if *f.dst, err = fwPort(b, f.name); err != nil {
			return r, err
		}
	}
	if b.has("source_ip_address") {
		p, _, err := parsed(b, "source_ip_address", "IP address or subnet", parsePrefixLoose)
		if err != nil {
			return r, err
		}
		r.SourceIP = &p
	}
	if b.has("destination_ip_address") {
		p, _, err := parsed(b, "destination_ip_address", "IP address or subnet", parsePrefixLoose)
		if err != nil {
			return r, err
		}
		r.DestinationIP = &p
	}
	if a, ok, err := b.str("action", 0); err != nil {
		return r, err
	} else if ok {
		a = strings.ToLower(a)
		r.Action = &a
	}
	if r.Enabled, err = b.optBool("enabled"); err != nil {
		return r, err
	}
	if r.Shared, err = b.optBool("shared"); err != nil {
		return r, err
	}
	for _, k := range []string{"source_firewall_group_id", "destination_firewall_group_id"} {
		if ref, err := optRef(b, k); err != nil {
			return r, err
		} else if ref != nil && *ref != "" {
			return r, neutron.InvalidInput("%s is not implemented: give source_ip_address or destination_ip_address", k)
		}
	}
	return r, nil
}

func portText(p [2]int) any {
	switch {
	case p[0] == 0:
		return nil
	case p[0] == p[1]:
		return strconv.Itoa(p[0])
	}
	return fmt.Sprintf("%d:%d", p[0], p[1])
}

func viewFWRule(v *viewer, x *neutron.FirewallRule) map[string]any {
	var proto any
	if x.Protocol != "" {
		proto = x.Protocol
	}
	ip := func(p netip.Prefix) any {
		if !p.IsValid() {
			return nil
		}
		if p.IsSingleIP() {
			return p.Addr().String()
		}
		return p.String()
	}
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"shared": x.Shared, "protocol": proto, "ip_version": x.IPVersion, "source_ip_address": ip(x.SourceIP),
		"destination_ip_address": ip(x.DestinationIP), "source_port": portText(x.SourcePort), "destination_port": portText(x.DestPort),
		"action": x.Action, "enabled": x.Enabled, "firewall_policy_id": v.FirewallPoliciesOf(x.ID), "position": nil,
		"source_firewall_group_id": nil, "destination_firewall_group_id": nil}
}

var fwPolicyAttrs = fwStd.with(attrs{"firewall_rules": {post: true, put: true}, "audited": {post: true, put: true}})

func decodeFWPolicy(b Body, _ *identity.Context, _ bool) (neutron.FirewallPolicyRequest, error) {
	var r neutron.FirewallPolicyRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if b.has("firewall_rules") {
		var ids []string
		if !b.isNull("firewall_rules") {
			if ids, _, err = b.stringList("firewall_rules"); err != nil {
				return r, err
			}
			for i, id := range ids {
				l := strings.ToLower(id)
				if !uuidLike.MatchString(l) {
					return r, invalid("firewall_rules", "'%s' is not a valid UUID", id)
				}
				ids[i] = l
			}
		}
		if ids == nil {
			ids = []string{}
		}
		r.Rules = &ids
	}
	if r.Audited, err = b.optBool("audited"); err != nil {
		return r, err
	}
	r.Shared, err = b.optBool("shared")
	return r, err
}

func viewFWPolicy(_ *viewer, x *neutron.FirewallPolicy) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"shared": x.Shared, "audited": x.Audited, "firewall_rules": nonNil(x.Rules)}
}

var fwGroupAttrs = fwStd.with(attrs{"ingress_firewall_policy_id": {post: true, put: true}, "egress_firewall_policy_id": {post: true, put: true},
	"admin_state_up": {post: true, put: true}, "ports": {post: true, put: true}, "status": {}})

func decodeFWGroup(b Body, _ *identity.Context, _ bool) (neutron.FirewallGroupRequest, error) {
	var r neutron.FirewallGroupRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if r.IngressPolicyID, err = optRef(b, "ingress_firewall_policy_id"); err != nil {
		return r, err
	}
	if r.EgressPolicyID, err = optRef(b, "egress_firewall_policy_id"); err != nil {
		return r, err
	}
	if r.AdminStateUp, err = b.optBool("admin_state_up"); err != nil {
		return r, err
	}
	if r.Shared, err = b.optBool("shared"); err != nil {
		return r, err
	}
	if b.has("ports") {
		ps := []string{}
		if !b.isNull("ports") {
			if ps, _, err = b.uuidList("ports"); err != nil {
				return r, err
			}
		}
		r.Ports = &ps
	}
	return r, nil
}

func viewFWGroup(_ *viewer, x *neutron.FirewallGroup) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"shared": x.Shared, "ingress_firewall_policy_id": strOrNil(x.IngressPolicyID), "egress_firewall_policy_id": strOrNil(x.EgressPolicyID),
		"admin_state_up": x.AdminStateUp, "ports": nonNil(x.Ports), "status": x.Status()}
}

// registerFirewallActions adds insert_rule and remove_rule.
func (a *API) registerFirewallActions(mux *http.ServeMux) {
	for _, insert := range []bool{true, false} {
		name := "remove_rule"
		if insert {
			name = "insert_rule"
		}
		a.action(mux, "fwaas/firewall_policies/{id}/"+name, func(r *http.Request, c *identity.Context, id string, b Body) (any, error) {
			for k := range b {
				if k != "firewall_rule_id" && k != "insert_before" && k != "insert_after" {
					return nil, neutron.HTTPBadRequest("Unrecognized attribute(s) '%s'", k)
				}
			}
			ids := map[string]string{}
			for _, k := range []string{"firewall_rule_id", "insert_before", "insert_after"} {
				v, _, err := b.uuid(k)
				if err != nil && !b.isNull(k) {
					return nil, err
				}
				ids[k] = v
			}
			var p *neutron.FirewallPolicy
			var err error
			if insert {
				p, err = a.svc.InsertFirewallRule(r.Context(), c, id, ids["firewall_rule_id"], ids["insert_before"], ids["insert_after"])
			} else {
				p, err = a.svc.RemoveFirewallRule(r.Context(), c, id, ids["firewall_rule_id"])
			}
			if err != nil {
				return nil, err
			}
			return a.viewOne(r, a.resource("firewall_policy"), p)
		})
	}
}
