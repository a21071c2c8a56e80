package neutron

import (
	"context"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// The FWaaS v2 writes, with neutron-fwaas's checks.

// FirewallProtocols are the protocol names a rule takes (neutron-lib's
// FW_PROTOCOL_VALUES).
var FirewallProtocols = []string{"dccp", "icmp", "ipv6-icmp", "sctp", "tcp", "udp"}

func (r *FirewallRuleRequest) apply(x *FirewallRule) error {
	r.StdRequest.apply(&x.Std)
	set(&x.Protocol, r.Protocol)
	set(&x.IPVersion, r.IPVersion)
	set(&x.SourceIP, r.SourceIP)
	set(&x.DestinationIP, r.DestinationIP)
	set(&x.SourcePort, r.SourcePort)
	set(&x.DestPort, r.DestPort)
	set(&x.Action, r.Action)
	set(&x.Enabled, r.Enabled)
	set(&x.Shared, r.Shared)
	if x.Protocol != "" && !slices.Contains(FirewallProtocols, x.Protocol) {
		return NewError(BadRequest, "FirewallRuleInvalidProtocol", "Protocol %s is not supported. Only protocol values %s and their integer representation (0 to 255) are supported.", x.Protocol, quoted(append(slices.Clone(FirewallProtocols), "None")))
	}
	if !slices.Contains([]string{"allow", "deny", "reject"}, x.Action) {
		return NewError(BadRequest, "FirewallRuleInvalidAction", "Action %s is not supported. Only action values ['allow', 'deny', 'reject'] are supported.", x.Action)
	}
	ports := x.SourcePort[0] != 0 || x.DestPort[0] != 0
	switch {
	case ports && x.Protocol == "":
		return NewError(BadRequest, "FirewallRuleWithPortWithoutProtocolInvalid", "Source/destination port requires a protocol.")
	case ports && x.Protocol != "tcp" && x.Protocol != "udp":
		return NewError(BadRequest, "FirewallRuleInvalidICMPParameter", "Source, destination port are not allowed when protocol is set to ICMP.")
	}
	for _, p := range [][2]int{x.SourcePort, x.DestPort} {
		if p[0] > p[1] {
			return NewError(BadRequest, "FirewallRuleInvalidPortValue", "Invalid value for port %d:%d.", p[0], p[1])
		}
	}
	for _, a := range []struct {
		p  bool
		v4 bool
	}{{x.SourceIP.IsValid(), x.SourceIP.Addr().Is4()}, {x.DestinationIP.IsValid(), x.DestinationIP.Addr().Is4()}} {
		if a.p && a.v4 != (x.IPVersion == 4) {
			return NewError(BadRequest, "FirewallIpAddressConflict", "Invalid input - IP addresses do not agree with IP Version.")
		}
	}
	return nil
}

// CreateFirewallRule creates a rule.
func (s *Service) CreateFirewallRule(ctx context.Context, c *identity.Context, r FirewallRuleRequest) (*FirewallRule, error) {
	cr, err := s.PrepareFirewallRule(c, r)
	return created[*FirewallRule](ctx, s, cr, err)
}

// PrepareFirewallRule checks a rule's create.
func (s *Service) PrepareFirewallRule(c *identity.Context, r FirewallRuleRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_firewall_rule")
	if err != nil {
		return nil, err
	}
	x := &FirewallRule{Std: st, IPVersion: 4, Action: "deny", Enabled: true}
	if err := r.apply(x); err != nil {
		return nil, err
	}
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		y := *x
		y.ID = newID()
		_, err := tx.Create(&y)
		return &y, err
	}), nil
}

// UpdateFirewallRule changes a rule and the chains of the groups using it.
func (s *Service) UpdateFirewallRule(ctx context.Context, c *identity.Context, id string, r FirewallRuleRequest, ifRev int64) (*FirewallRule, error) {
	return modify(ctx, s, c, id, "update_firewall_rule", ifRev, func(tx *nsdb.Tx, x *FirewallRule) error {
		if err := r.apply(x); err != nil {
			return err
		}
		s.touch(&x.Std)
		if err := tx.Put(x); err != nil {
			return err
		}
		pols, err := listOf[*FirewallPolicy](tx, "firewall_rules", id)
		if err != nil {
			return err
		}
		var ids []string
		for _, p := range pols {
			ids = append(ids, p.ID)
		}
		return s.retranslateFirewalls(tx, ids...)
	})
}

// DeleteFirewallRule deletes a rule no policy holds.
func (s *Service) DeleteFirewallRule(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_firewall_rule", ifRev, func(tx *nsdb.Tx, x *FirewallRule) error {
		pols, err := tx.List(FirewallPolicyKind, "firewall_rules", id)
		if err != nil {
			return err
		}
		if len(pols) > 0 {
			return inUse("FirewallRuleInUse", "Firewall rule %s is being used.", id)
		}
		return tx.Delete(FirewallRuleKind, id)
	})
	return err
}

// FirewallPolicyOf is the policy a view names (for a rule's
// firewall_policy_id), "" if none.
func (r *Reader) FirewallPoliciesOf(ruleID string) []string {
	pols, err := listOf[*FirewallPolicy](r.tx, "firewall_rules", ruleID)
	r.failed(err)
	out := []string{}
	for _, p := range pols {
		out = append(out, p.ID)
	}
	return out
}

// checkPolicyRules checks a policy's rules: each once, usable by the
// caller, shared when the policy is.
func checkPolicyRules(tx *nsdb.Tx, c *identity.Context, p *FirewallPolicy) error {
	for i, id := range p.Rules {
		if slices.Contains(p.Rules[:i], id) {
			return conflict("FirewallRuleAlreadyAssociated", "Operation cannot be performed since firewall rule %s is already associated with firewall policy %s.", id, p.ID)
		}
		o, err := tx.Get(FirewallRuleKind, id)
		if err != nil {
			return NotFoundError(FirewallRuleKind, id)
		}
		r := o.(*FirewallRule)
		switch {
		case !owns(c, &r.Std) && !r.Shared:
			return conflict("FirewallRuleConflict", "Operation cannot be performed since firewall rule %s is not shared and belongs to another project %s.", id, r.ProjectID)
		case p.Shared && !r.Shared:
			return conflict("FirewallPolicySharingConflict", "Operation cannot be performed. Before sharing firewall policy %s, share associated firewall rule %s.", p.ID, id)
		}
	}
	return nil
}

// CreateFirewallPolicy creates a policy.
func (s *Service) CreateFirewallPolicy(ctx context.Context, c *identity.Context, r FirewallPolicyRequest) (*FirewallPolicy, error) {
	cr, err := s.PrepareFirewallPolicy(c, r)
	return created[*FirewallPolicy](ctx, s, cr, err)
}

// PrepareFirewallPolicy checks a policy's create.
func (s *Service) PrepareFirewallPolicy(c *identity.Context, r FirewallPolicyRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_firewall_policy")
	if err != nil {
		return nil, err
	}
	p := &FirewallPolicy{Std: st}
	r.apply(p)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *p
		x.ID = newID()
		if err := checkPolicyRules(tx, c, &x); err != nil {
			return nil, err
		}
		_, err := tx.Create(&x)
		return &x, err
	}), nil
}

func (r *FirewallPolicyRequest) apply(p *FirewallPolicy) {
	r.StdRequest.apply(&p.Std)
	set(&p.Rules, r.Rules)
	set(&p.Audited, r.Audited)
	set(&p.Shared, r.Shared)
}

// UpdateFirewallPolicy changes a policy and the chains of its groups.
func (s *Service) UpdateFirewallPolicy(ctx context.Context, c *identity.Context, id string, r FirewallPolicyRequest, ifRev int64) (*FirewallPolicy, error) {
	return s.changePolicy(ctx, c, id, "update_firewall_policy", ifRev, func(p *FirewallPolicy) error {
		r.apply(p)
		return nil
	})
}

// changePolicy applies change to a policy, checks it and rewrites the
// chains of its groups.
func (s *Service) changePolicy(ctx context.Context, c *identity.Context, id, action string, ifRev int64, change func(*FirewallPolicy) error) (*FirewallPolicy, error) {
	return modify(ctx, s, c, id, action, ifRev, func(tx *nsdb.Tx, p *FirewallPolicy) error {
		if err := change(p); err != nil {
			return err
		}
		if err := checkPolicyRules(tx, c, p); err != nil {
			return err
		}
		p.Audited = p.Audited && action == "update_firewall_policy"
		s.touch(&p.Std)
		if err := tx.Put(p); err != nil {
			return err
		}
		return s.retranslateFirewalls(tx, id)
	})
}

// InsertFirewallRule puts a rule into a policy, before or after another
// (default: first... or last, as neutron-fwaas: last without either).
func (s *Service) InsertFirewallRule(ctx context.Context, c *identity.Context, id, rule, before, after string) (*FirewallPolicy, error) {
	if rule == "" {
		return nil, NewError(BadRequest, "FirewallRuleInfoMissing", "Missing rule info argument for insert/remove rule operation.")
	}
	return s.changePolicy(ctx, c, id, "insert_rule", 0, func(p *FirewallPolicy) error {
		pos := len(p.Rules)
		for _, ref := range []struct {
			id    string
			delta int
		}{{before, 0}, {after, 1}} {
			if ref.id == "" {
				continue
			}
			i := slices.Index(p.Rules, ref.id)
			if i < 0 {
				return NewError(BadRequest, "FirewallRuleNotAssociatedWithPolicy", "Firewall rule %s is not associated with firewall policy %s.", ref.id, id)
			}
			pos = i + ref.delta
			break
		}
		if slices.Contains(p.Rules, rule) {
			return conflict("FirewallRuleAlreadyAssociated", "Operation cannot be performed since firewall rule %s is already associated with firewall policy %s.", rule, id)
		}
		p.Rules = slices.Insert(p.Rules, pos, rule)
		return nil
	})
}

// RemoveFirewallRule takes a rule out of a policy.
func (s *Service) RemoveFirewallRule(ctx context.Context, c *identity.Context, id, rule string) (*FirewallPolicy, error) {
	if rule == "" {
		return nil, NewError(BadRequest, "FirewallRuleInfoMissing", "Missing rule info argument for insert/remove rule operation.")
	}
	return s.changePolicy(ctx, c, id, "remove_rule", 0, func(p *FirewallPolicy) error {
		i := slices.Index(p.Rules, rule)
		if i < 0 {
			return NewError(BadRequest, "FirewallRuleNotAssociatedWithPolicy", "Firewall rule %s is not associated with firewall policy %s.", rule, id)
		}
		p.Rules = slices.Delete(p.Rules, i, i+1)
		return nil
	})
}

// DeleteFirewallPolicy deletes a policy no group uses.
func (s *Service) DeleteFirewallPolicy(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_firewall_policy", ifRev, func(tx *nsdb.Tx, p *FirewallPolicy) error {
		for _, f := range []string{"ingress_firewall_policy_id", "egress_firewall_policy_id"} {
			gs, err := tx.List(FirewallGroupKind, f, id)
			if err != nil {
				return err
			}
			if len(gs) > 0 {
				return inUse("FirewallPolicyInUse", "Firewall policy %s is being used.", id)
			}
		}
		return tx.Delete(FirewallPolicyKind, id)
	})
	return err
}

func (r *FirewallGroupRequest) apply(g *FirewallGroup) {
	r.StdRequest.apply(&g.Std)
	set(&g.IngressPolicyID, r.IngressPolicyID)
	set(&g.EgressPolicyID, r.EgressPolicyID)
	set(&g.AdminStateUp, r.AdminStateUp)
	set(&g.Shared, r.Shared)
	set(&g.Ports, r.Ports)
}

// checkFirewallGroup checks a group's policies (owned or shared) and
// ports (router interfaces of its project, in no other group).
func (s *Service) checkFirewallGroup(tx *nsdb.Tx, c *identity.Context, g *FirewallGroup) error {
	for _, id := range []string{g.IngressPolicyID, g.EgressPolicyID} {
		if id == "" {
			continue
		}
		if _, err := usableFW(tx, c, id, func(p *FirewallPolicy) bool { return p.Shared }); err != nil {
			return NewError(NotFound, "FirewallPolicyConflict", "Operation cannot be performed since firewall policy %s for your project could not be found. Please confirm if the firewall policy exists and is shared.", id)
		}
	}
	var taken []string
	for _, id := range g.Ports {
		p, err := get[*Port](tx, c, id)
		if err != nil {
			return err
		}
		switch {
		case p.ProjectID != g.ProjectID && !c.IsAdmin():
			return conflict("FirewallGroupPortInvalidProject", "Operation cannot be performed as port %s is in an invalid project %s.", id, p.ProjectID)
		case strings.HasPrefix(p.DeviceOwner, "compute:"):
			return conflict("FirewallGroupPortNotSupported", "Port %s is not supported by firewall driver 'nagare': it applies to router interface ports.", id)
		case p.DeviceOwner != OwnerRouterInterface:
			return conflict("FirewallGroupPortInvalid", "Port %s of firewall group is invalid.", id)
		}
		others, err := listOf[*FirewallGroup](tx, "ports", id)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(others, func(o *FirewallGroup) bool { return o.ID != g.ID }) {
			taken = append(taken, id)
		}
	}
	if len(taken) > 0 {
		return inUse("FirewallGroupPortInUse", "Port(s) %s provided already associated with other firewall group(s).", quoted(taken))
	}
	return nil
}

// CreateFirewallGroup creates a group.
func (s *Service) CreateFirewallGroup(ctx context.Context, c *identity.Context, r FirewallGroupRequest) (*FirewallGroup, error) {
	cr, err := s.PrepareFirewallGroup(c, r)
	return created[*FirewallGroup](ctx, s, cr, err)
}

// PrepareFirewallGroup checks a group's create.
func (s *Service) PrepareFirewallGroup(c *identity.Context, r FirewallGroupRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_firewall_group")
	if err != nil {
		return nil, err
	}
	g := &FirewallGroup{Std: st, AdminStateUp: true}
	r.apply(g)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *g
		x.ID = newID()
		if err := s.checkFirewallGroup(tx, c, &x); err != nil {
			return nil, err
		}
		if _, err := tx.Create(&x); err != nil {
			return nil, err
		}
		if err := s.translateFirewall(tx, &x); err != nil {
			return nil, err
		}
		return &x, s.firewallPorts(tx, c, nil, x.Ports)
	}), nil
}

// firewallPorts re-translates the ports that left or joined a group.
func (s *Service) firewallPorts(tx *nsdb.Tx, c *identity.Context, was, now []string) error {
	for _, id := range append(slices.Clone(was), now...) {
		o, err := tx.Get(PortKind, id)
		if err != nil {
			continue // gone with its router interface
		}
		if err := s.writePort(tx, c, o.(*Port), PortRequest{}, false); err != nil {
			return err
		}
	}
	return nil
}

// UpdateFirewallGroup changes a group: policies, ports, admin state.
func (s *Service) UpdateFirewallGroup(ctx context.Context, c *identity.Context, id string, r FirewallGroupRequest, ifRev int64) (*FirewallGroup, error) {
	return modify(ctx, s, c, id, "update_firewall_group", ifRev, func(tx *nsdb.Tx, g *FirewallGroup) error {
		was := slices.Clone(g.Ports)
		r.apply(g)
		if err := s.checkFirewallGroup(tx, c, g); err != nil {
			return err
		}
		s.touch(&g.Std)
		if err := tx.Put(g); err != nil {
			return err
		}
		if err := s.translateFirewall(tx, g); err != nil {
			return err
		}
		return s.firewallPorts(tx, c, was, g.Ports)
	})
}

// DeleteFirewallGroup deletes a group without ports.
func (s *Service) DeleteFirewallGroup(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_firewall_group", ifRev, func(tx *nsdb.Tx, g *FirewallGroup) error {
		if len(g.Ports) > 0 && g.AdminStateUp {
			return inUse("FirewallGroupInUse", "Firewall group %s is still active.", id)
		}
		if err := tx.Delete(FirewallGroupKind, id); err != nil {
			return err
		}
		if err := s.firewallPorts(tx, c, g.Ports, nil); err != nil {
			return err
		}
		return apply(tx, &g.Std, nil)
	})
	return err
}
