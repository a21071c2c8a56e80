package neutron

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// FWaaS v2 (fwaas_v2): firewall rules, ordered into policies, applied by
// firewall groups to router interface ports (the ports ML2/OVN's firewall
// driver supports). A group translates to two native chains, ingress
// (what enters the router through its ports) and egress (what leaves by
// them): replies of accepted connections, then the policy's enabled rules
// in order, then drop; its ports' router ports filter with them while the
// group is up.

// FirewallRule is a firewall rule.
type FirewallRule struct {
	Std
	Protocol      string       `json:"protocol,omitempty"` // "" any
	IPVersion     int          `json:"ip_version"`
	SourceIP      netip.Prefix `json:"source_ip_address,omitzero"`
	DestinationIP netip.Prefix `json:"destination_ip_address,omitzero"`
	SourcePort    [2]int       `json:"source_port"`
	DestPort      [2]int       `json:"destination_port"`
	Action        string       `json:"action"`
	Enabled       bool         `json:"enabled"`
	Shared        bool         `json:"shared"`
}

// FirewallPolicy is an ordered list of rules.
type FirewallPolicy struct {
	Std
	Rules   []string `json:"firewall_rules,omitempty" nagare:"ref=neutron-firewall-rule,ondelete=restrict"`
	Audited bool     `json:"audited"`
	Shared  bool     `json:"shared"`
}

// FirewallGroup applies an ingress and an egress policy to ports.
type FirewallGroup struct {
	Std
	IngressPolicyID string   `json:"ingress_firewall_policy_id,omitempty" nagare:"ref=neutron-firewall-policy,ondelete=restrict"`
	EgressPolicyID  string   `json:"egress_firewall_policy_id,omitempty" nagare:"ref=neutron-firewall-policy,ondelete=restrict"`
	AdminStateUp    bool     `json:"admin_state_up"`
	Ports           []string `json:"ports,omitempty" nagare:"ref=neutron-port,ondelete=nullify"`
	Shared          bool     `json:"shared"`
}

var (
	FirewallRuleKind   = model.RegisterInternal("neutron-firewall-rule", "neutron-firewall-rules", "A FWaaS rule.", &FirewallRule{}, nil)
	FirewallPolicyKind = model.RegisterInternal("neutron-firewall-policy", "neutron-firewall-policies", "A FWaaS policy.", &FirewallPolicy{}, nil)
	FirewallGroupKind  = model.RegisterInternal("neutron-firewall-group", "neutron-firewall-groups", "A FWaaS firewall group.", &FirewallGroup{}, nil)
)

// FirewallRuleRequest is what a create or update of a rule asks.
type FirewallRuleRequest struct {
	StdRequest
	Protocol                *string // "" any
	IPVersion               *int
	SourceIP, DestinationIP *netip.Prefix // zero: any
	SourcePort, DestPort    *[2]int       // zero: any
	Action                  *string
	Enabled, Shared         *bool
}

// FirewallPolicyRequest is what a create or update of a policy asks.
type FirewallPolicyRequest struct {
	StdRequest
	Rules           *[]string
	Audited, Shared *bool
}

// FirewallGroupRequest is what a create or update of a group asks.
type FirewallGroupRequest struct {
	StdRequest
	IngressPolicyID, EgressPolicyID *string // "": none
	AdminStateUp, Shared            *bool
	Ports                           *[]string
}

// Status is a group's: ACTIVE while it is up and has ports.
func (g *FirewallGroup) Status() string {
	if g.AdminStateUp && len(g.Ports) > 0 {
		return "ACTIVE"
	}
	return "INACTIVE"
}

func fwgIngressChainID(g string) string { return DerivedID("fwg-ingress", g) }
func fwgEgressChainID(g string) string  { return DerivedID("fwg-egress", g) }

// TranslateFirewallGroup: a group is an ingress and an egress chain.
func TranslateFirewallGroup(g *FirewallGroup, ingress, egress []*FirewallRule) []model.Object {
	build := func(rules []*FirewallRule) []*model.Rule {
		out := []*model.Rule{{Type: model.RuleAccept, Condition: model.Condition{Flow: "return-flow"}}}
		for _, r := range rules {
			if !r.Enabled {
				continue
			}
			nr := &model.Rule{Type: map[string]model.RuleType{"allow": model.RuleAccept, "deny": model.RuleDrop, "reject": model.RuleReject}[r.Action]}
			c := &nr.Condition
			c.EtherType = etherIPv4
			if r.IPVersion == 6 {
				c.EtherType = etherIPv6
			}
			if n, ok := protoNumber(r.Protocol); ok {
				c.Proto = n
			}
			c.Src, c.Dst = r.SourceIP, r.DestinationIP
			if r.SourcePort[0] != 0 {
				c.SrcPort = model.PortRange{Start: uint16(r.SourcePort[0]), End: uint16(r.SourcePort[1])}
			}
			if r.DestPort[0] != 0 {
				c.DstPort = model.PortRange{Start: uint16(r.DestPort[0]), End: uint16(r.DestPort[1])}
			}
			out = append(out, nr)
		}
		return append(out, &model.Rule{Type: model.RuleDrop})
	}
	objs := chain(fwgIngressChainID(g.ID), "firewall group "+g.ID+" ingress", g.ProjectID, build(ingress))
	return append(objs, chain(fwgEgressChainID(g.ID), "firewall group "+g.ID+" egress", g.ProjectID, build(egress))...)
}

// fwRule and the other two read objects of a kind for the caller;
// another project's object is usable when shared.
func usableFW[T Object](tx *nsdb.Tx, c *identity.Context, id string, shared func(T) bool) (T, error) {
	var zero T
	o, err := tx.Get(model.KindOf(zero), id)
	if err != nil {
		return zero, NotFoundError(model.KindOf(zero), id)
	}
	x := o.(T)
	if !owns(c, x.std()) && !shared(x) {
		return zero, NotFoundError(model.KindOf(zero), id)
	}
	return x, nil
}

// retranslateGroups rewrites the chains of the groups whose policies
// changed (policy ids) and of the policies a rule is in (rule id).
func (s *Service) retranslateFirewalls(tx *nsdb.Tx, policyIDs ...string) error {
	done := map[string]bool{}
	for _, pid := range policyIDs {
		for _, f := range []string{"ingress_firewall_policy_id", "egress_firewall_policy_id"} {
			groups, err := listOf[*FirewallGroup](tx, f, pid)
			if err != nil {
				return err
			}
			for _, g := range groups {
				if !done[g.ID] {
					done[g.ID] = true
					if err := s.translateFirewall(tx, g); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// policyRules are a policy's rules in order (none for "").
func policyRules(tx *nsdb.Tx, id string) ([]*FirewallRule, error) {
	if id == "" {
		return nil, nil
	}
	o, err := tx.Get(FirewallPolicyKind, id)
	if err != nil {
		return nil, err
	}
	var out []*FirewallRule
	for _, rid := range o.(*FirewallPolicy).Rules {
		r, err := tx.Get(FirewallRuleKind, rid)
		if err != nil {
			return nil, err
		}
		out = append(out, r.(*FirewallRule))
	}
	return out, nil
}

// translateFirewall rewrites a group's chains.
func (s *Service) translateFirewall(tx *nsdb.Tx, g *FirewallGroup) error {
	in, err := policyRules(tx, g.IngressPolicyID)
	if err != nil {
		return err
	}
	out, err := policyRules(tx, g.EgressPolicyID)
	if err != nil {
		return err
	}
	return apply(tx, &g.Std, TranslateFirewallGroup(g, in, out))
}

// firewallOf is the group a port is in and whether it filters ("" none).
func firewallOf(tx *nsdb.Tx, portID string) (string, error) {
	gs, err := listOf[*FirewallGroup](tx, "ports", portID)
	if err != nil || len(gs) == 0 || !gs[0].AdminStateUp {
		return "", err
	}
	return gs[0].ID, nil
}
