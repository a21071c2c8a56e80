package neutron

import (
	"context"
	"errors"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// QoS (qos, qos-bw-limit-direction, qos-default, qos-rule-type-details): a
// policy of rules that ports and networks name (a network's policy
// applies to its ports that name none, but not to network-owned ports).
// A policy translates to a native qos-policy of the same id (a token
// bucket per direction, a DSCP rewrite) that the ports' translations
// reference. Minimum bandwidth and packet rate rules are kept, but Nagare
// enforces neither: like a Neutron backend without them, it refuses to
// apply a policy that has one to a port or network (QosRuleNotSupported).

// QoS rule types.
const (
	RuleBandwidthLimit    = "bandwidth_limit"
	RuleDSCPMarking       = "dscp_marking"
	RuleMinimumBandwidth  = "minimum_bandwidth"
	RuleMinimumPacketRate = "minimum_packet_rate"
	RulePacketRateLimit   = "packet_rate_limit"
)

// QoSRuleTypes are the rule types a policy may hold.
var QoSRuleTypes = []string{RuleBandwidthLimit, RuleDSCPMarking, RuleMinimumBandwidth, RuleMinimumPacketRate, RulePacketRateLimit}

// EnforcedQoSRuleTypes are those Nagare's datapath enforces (GET
// /qos/rule-types lists them).
var EnforcedQoSRuleTypes = []string{RuleBandwidthLimit, RuleDSCPMarking}

// ValidDSCPMarks are the DSCP values Neutron takes.
var ValidDSCPMarks = []int{0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44, 46, 48, 56}

// QoSPolicy is a Neutron QoS policy.
type QoSPolicy struct {
	Std
	Shared    bool `json:"shared"`
	IsDefault bool `json:"is_default,omitempty"`
	// DefaultOf is the project whose default it is: one per project.
	DefaultOf string `json:"default_of,omitempty" nagare:"unique"`
}

func (p *QoSPolicy) shared() bool     { return p.Shared }
func (p *QoSPolicy) setShared(v bool) { p.Shared = v }

// QoSRule is a rule of a QoS policy.
type QoSRule struct {
	Std
	PolicyID     string `json:"qos_policy_id" nagare:"ref=neutron-qos-policy,ondelete=cascade,required,parent"`
	Type         string `json:"type"`
	Direction    string `json:"direction,omitempty"`
	MaxKbps      int    `json:"max_kbps,omitempty"`
	MaxBurstKbps int    `json:"max_burst_kbps,omitempty"`
	DSCPMark     int    `json:"dscp_mark,omitempty"`
	MinKbps      int    `json:"min_kbps,omitempty"`
	MaxKpps      int    `json:"max_kpps,omitempty"`
	MaxBurstKpps int    `json:"max_burst_kpps,omitempty"`
	MinKpps      int    `json:"min_kpps,omitempty"`
	// Slot (type/direction) is unique per policy: one rule of a type per
	// direction (QoSRulesConflict).
	Slot string `json:"slot" nagare:"unique=qos_policy_id"`
}

var (
	QoSPolicyKind = model.RegisterInternal("neutron-qos-policy", "neutron-qos-policies", "A Neutron QoS policy.", &QoSPolicy{}, nil)
	QoSRuleKind   = model.RegisterInternal("neutron-qos-rule", "neutron-qos-rules", "A rule of a Neutron QoS policy.", &QoSRule{}, nil)
)

// QoSPolicyRequest is what a create or update of a policy asks.
type QoSPolicyRequest struct {
	StdRequest
	Shared, IsDefault *bool
}

// QoSRuleRequest is what a create or update of a rule asks (nil: not
// given).
type QoSRuleRequest struct {
	Direction                                *string
	MaxKbps, MaxBurstKbps, DSCPMark, MinKbps *int
	MaxKpps, MaxBurstKpps, MinKpps           *int
}

// mayManage is Neutron's ADMIN_OR_PROJECT_MANAGER, the policy of QoS
// writes.
func mayManage(c *identity.Context, action string) error {
	if !c.IsAdmin() && !c.HasRole("manager") {
		return PolicyNotAuthorized(action)
	}
	return nil
}

// TranslateQoSPolicy: a policy is a native qos-policy of the same id with
// its bandwidth limits and DSCP mark.
func TranslateQoSPolicy(p *QoSPolicy, rules []*QoSRule) []model.Object {
	n := &model.QoSPolicy{Meta: model.Meta{ID: p.ID}, Name: p.Name, TenantID: p.ProjectID}
	for _, r := range rules {
		switch {
		case r.Type == RuleBandwidthLimit && r.Direction == "ingress":
			n.IngressMaxKbps, n.IngressBurstKbit = uint32(r.MaxKbps), uint32(r.MaxBurstKbps)
		case r.Type == RuleBandwidthLimit:
			n.EgressMaxKbps, n.EgressBurstKbit = uint32(r.MaxKbps), uint32(r.MaxBurstKbps)
		case r.Type == RuleDSCPMarking:
			n.MarkDSCP, n.DSCPMark = true, uint8(r.DSCPMark)
		}
	}
	return []model.Object{n}
}

// retranslateQoS rewrites a policy's native form from its rules.
func (s *Service) retranslateQoS(tx *nsdb.Tx, p *QoSPolicy) error {
	rules, err := listOf[*QoSRule](tx, "qos_policy_id", p.ID)
	if err != nil {
		return err
	}
	return apply(tx, &p.Std, TranslateQoSPolicy(p, rules))
}

// CreateQoSPolicy creates a QoS policy.
func (s *Service) CreateQoSPolicy(ctx context.Context, c *identity.Context, r QoSPolicyRequest) (*QoSPolicy, error) {
	cr, err := s.PrepareQoSPolicy(c, r)
	return created[*QoSPolicy](ctx, s, cr, err)
}

// PrepareQoSPolicy checks a QoS policy's create.
func (s *Service) PrepareQoSPolicy(c *identity.Context, r QoSPolicyRequest) (*Creation, error) {
	if err := mayManage(c, "create_policy"); err != nil {
		return nil, err
	}
	st, err := s.creating(c, &r.StdRequest, "create_policy")
	if err != nil {
		return nil, err
	}
	p := &QoSPolicy{Std: st}
	r.apply(p)
	shared, _ := deref(r.Shared)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *p
		x.ID = newID()
		if err := checkDefaultQoS(tx, &x); err != nil {
			return nil, err
		}
		o, err := createWith(tx, &x, TranslateQoSPolicy(&x, nil))
		if err == nil && shared {
			err = s.setWildcard(tx, "qos_policy", x.ID, x.ProjectID, AccessShared, true)
			o.Shared = true
		}
		return o, err
	}), nil
}

func (r *QoSPolicyRequest) apply(p *QoSPolicy) {
	r.StdRequest.apply(&p.Std)
	set(&p.IsDefault, r.IsDefault)
	p.DefaultOf = ""
	if p.IsDefault {
		p.DefaultOf = p.ProjectID
	}
}

func checkDefaultQoS(tx *nsdb.Tx, p *QoSPolicy) error {
	if !p.IsDefault {
		return nil
	}
	owner, err := tx.UniqueOwner(QoSPolicyKind, QoSPolicyKind.Field("default_of"), "", p.DefaultOf)
	if err != nil {
		return err
	}
	if owner != "" && owner != p.ID {
		return conflict("QoSPolicyDefaultAlreadyExists", "A default QoS policy exists for project %s.", p.ProjectID)
	}
	return nil
}

// UpdateQoSPolicy changes a policy's name, description, sharing or
// default flag.
func (s *Service) UpdateQoSPolicy(ctx context.Context, c *identity.Context, id string, r QoSPolicyRequest, ifRev int64) (*QoSPolicy, error) {
	if err := mayManage(c, "update_policy"); err != nil {
		return nil, err
	}
	return modify(ctx, s, c, id, "update_policy", ifRev, func(tx *nsdb.Tx, p *QoSPolicy) error {
		r.apply(p)
		if err := checkDefaultQoS(tx, p); err != nil {
			return err
		}
		if v, ok := deref(r.Shared); ok && v != p.Shared {
			if err := s.setWildcard(tx, "qos_policy", id, p.ProjectID, AccessShared, v); err != nil {
				return err
			}
			p.Shared = v
		}
		s.touch(&p.Std)
		if err := s.retranslateQoS(tx, p); err != nil {
			return err
		}
		return tx.Put(p)
	})
}

// DeleteQoSPolicy deletes a policy no port or network uses.
func (s *Service) DeleteQoSPolicy(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	if err := mayManage(c, "delete_policy"); err != nil {
		return err
	}
	_, err := modify(ctx, s, c, id, "delete_policy", ifRev, func(tx *nsdb.Tx, p *QoSPolicy) error {
		for _, k := range []*model.Kind{PortKind, NetworkKind} {
			users, err := tx.List(k, "qos_policy_id", id)
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return inUse("QosPolicyInUse", "QoS Policy %s is used by %s %s.", id, resourceName(k), users[0].GetMeta().ID)
			}
		}
		pols, err := rbacPolicies(tx, "qos_policy", id)
		if err != nil {
			return err
		}
		for _, x := range pols {
			if err := tx.Delete(RBACPolicyKind, x.ID); err != nil {
				return err
			}
		}
		if err := apply(tx, &p.Std, nil); err != nil {
			return err
		}
		return tx.Delete(QoSPolicyKind, id)
	})
	return err
}

// apply checks and sets a rule's values: the bounds and values Neutron's
// attribute maps take.
func (r *QoSRuleRequest) apply(x *QoSRule, fresh bool) error {
	need := func(name string, v *int) error {
		if fresh && v == nil {
			return HTTPBadRequest("Failed to parse request. Required attribute '%s' not specified", name)
		}
		return nil
	}
	dirs := []string{"egress", "ingress"}
	switch x.Type {
	case RuleBandwidthLimit:
		if err := need("max_kbps", r.MaxKbps); err != nil {
			return err
		}
		set(&x.MaxKbps, r.MaxKbps)
		set(&x.MaxBurstKbps, r.MaxBurstKbps)
	case RuleDSCPMarking:
		if err := need("dscp_mark", r.DSCPMark); err != nil {
			return err
		}
		if r.DSCPMark != nil && !slices.Contains(ValidDSCPMarks, *r.DSCPMark) {
			return Invalid("dscp_mark", "'%d' is not in %s", *r.DSCPMark, intList(ValidDSCPMarks))
		}
		set(&x.DSCPMark, r.DSCPMark)
		dirs = nil
	case RuleMinimumBandwidth:
		if err := need("min_kbps", r.MinKbps); err != nil {
			return err
		}
		set(&x.MinKbps, r.MinKbps)
	case RulePacketRateLimit:
		if err := need("max_kpps", r.MaxKpps); err != nil {
			return err
		}
		set(&x.MaxKpps, r.MaxKpps)
		set(&x.MaxBurstKpps, r.MaxBurstKpps)
	case RuleMinimumPacketRate:
		if err := need("min_kpps", r.MinKpps); err != nil {
			return err
		}
		set(&x.MinKpps, r.MinKpps)
		dirs = []string{"any", "egress", "ingress"}
	}
	for _, v := range []*int{r.MaxKbps, r.MaxBurstKbps, r.MinKbps, r.MaxKpps, r.MaxBurstKpps, r.MinKpps} {
		if v != nil && (*v < 0 || *v > 1<<31-1) {
			return HTTPBadRequest("Invalid input for operation: '%d' is not in range 0 through 2147483647.", *v)
		}
	}
	if fresh && dirs != nil {
		x.Direction = "egress"
	}
	if r.Direction != nil {
		if !slices.Contains(dirs, *r.Direction) {
			return Invalid("direction", "'%s' is not in %s", *r.Direction, quoted(dirs))
		}
		x.Direction = *r.Direction
	}
	x.Slot = x.Type + "/" + x.Direction
	return nil
}

// qosRule reads a rule of a type of a policy the caller may see (another
// policy's rule is not found).
func qosRule(tx *nsdb.Tx, c *identity.Context, policyID, typ, id string) (*QoSPolicy, *QoSRule, error) {
	p, err := get[*QoSPolicy](tx, c, policyID)
	if err != nil {
		return nil, nil, err
	}
	o, err := tx.Get(QoSRuleKind, id)
	if errors.Is(err, model.ErrNotFound) || (err == nil && (o.(*QoSRule).PolicyID != policyID || o.(*QoSRule).Type != typ)) {
		return nil, nil, NewError(NotFound, "QosRuleNotFound", "QoS rule %s for policy %s could not be found.", id, policyID)
	}
	if err != nil {
		return nil, nil, err
	}
	return p, o.(*QoSRule), nil
}

// checkQoSRule refuses a rule that conflicts with the policy's others or
// that the ports and networks using the policy cannot have enforced.
func (s *Service) checkQoSRule(tx *nsdb.Tx, p *QoSPolicy, x *QoSRule) error {
	owner, err := tx.UniqueOwner(QoSRuleKind, QoSRuleKind.Field("slot"), p.ID, x.Slot)
	if err != nil {
		return err
	}
	if owner != "" && owner != x.ID {
		return conflict("QoSRulesConflict", "Rule %s conflicts with rule %s which already exists in QoS Policy %s.", x.Type, owner, p.ID)
	}
	if slices.Contains(EnforcedQoSRuleTypes, x.Type) {
		return nil
	}
	return s.qosNotSupported(tx, p.ID, x.Type)
}

// qosNotSupported refuses a rule type Nagare does not enforce on a policy
// that ports or networks use.
func (s *Service) qosNotSupported(tx *nsdb.Tx, policyID, typ string) error {
	if ports, err := tx.List(PortKind, "qos_policy_id", policyID); err != nil {
		return err
	} else if len(ports) > 0 {
		return conflict("QosRuleNotSupported", "Rule %s is not supported by port %s", typ, ports[0].GetMeta().ID)
	}
	if nets, err := tx.List(NetworkKind, "qos_policy_id", policyID); err != nil {
		return err
	} else if len(nets) > 0 {
		return conflict("QosRuleNotSupportedByNetwork", "Rule %s is not supported by network %s", typ, nets[0].GetMeta().ID)
	}
	return nil
}

// CreateQoSRule adds a rule of a type to a policy.
func (s *Service) CreateQoSRule(ctx context.Context, c *identity.Context, policyID, typ string, r QoSRuleRequest) (*QoSRule, error) {
	if err := mayManage(c, "create_policy_"+typ+"_rule"); err != nil {
		return nil, err
	}
	x := &QoSRule{PolicyID: policyID, Type: typ}
	if err := r.apply(x, true); err != nil {
		return nil, err
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		p, err := get[*QoSPolicy](tx, c, policyID)
		if err != nil {
			return err
		}
		x.Std = s.newStd(p.ProjectID)
		x.ID = newID()
		if err := s.checkQoSRule(tx, p, x); err != nil {
			return err
		}
		if _, err := tx.Create(x); err != nil {
			return err
		}
		return s.qosChanged(tx, p)
	})
	return x, err
}

// qosChanged bumps a policy's revision and rewrites its native form.
func (s *Service) qosChanged(tx *nsdb.Tx, p *QoSPolicy) error {
	s.touch(&p.Std)
	if err := s.retranslateQoS(tx, p); err != nil {
		return err
	}
	return tx.Put(p)
}

// UpdateQoSRule changes a rule.
func (s *Service) UpdateQoSRule(ctx context.Context, c *identity.Context, policyID, typ, id string, r QoSRuleRequest) (*QoSRule, error) {
	if err := mayManage(c, "update_policy_"+typ+"_rule"); err != nil {
		return nil, err
	}
	var out *QoSRule
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		p, x, err := qosRule(tx, c, policyID, typ, id)
		if err != nil {
			return err
		}
		if err := r.apply(x, false); err != nil {
			return err
		}
		if err := s.checkQoSRule(tx, p, x); err != nil {
			return err
		}
		s.touch(&x.Std)
		if err := tx.Put(x); err != nil {
			return err
		}
		out = x
		return s.qosChanged(tx, p)
	})
	return out, err
}

// DeleteQoSRule removes a rule from its policy.
func (s *Service) DeleteQoSRule(ctx context.Context, c *identity.Context, policyID, typ, id string) error {
	if err := mayManage(c, "delete_policy_"+typ+"_rule"); err != nil {
		return err
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		p, _, err := qosRule(tx, c, policyID, typ, id)
		if err != nil {
			return err
		}
		if err := tx.Delete(QoSRuleKind, id); err != nil {
			return err
		}
		return s.qosChanged(tx, p)
	})
	return err
}

// GetQoSRule reads a rule of a policy.
func (s *Service) GetQoSRule(ctx context.Context, c *identity.Context, policyID, typ, id string) (*QoSRule, error) {
	var out *QoSRule
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		var err error
		_, out, err = qosRule(tx, c, policyID, typ, id)
		return err
	})
	return out, err
}

// ListQoSRules lists a policy's rules of a type ("" all).
func (s *Service) ListQoSRules(ctx context.Context, c *identity.Context, policyID, typ string) ([]*QoSRule, error) {
	var out []*QoSRule
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		if _, err := get[*QoSPolicy](tx, c, policyID); err != nil {
			return err
		}
		rules, err := listOf[*QoSRule](tx, "qos_policy_id", policyID)
		for _, r := range rules {
			if typ == "" || r.Type == typ {
				out = append(out, r)
			}
		}
		return err
	})
	return out, err
}

// usableQoS checks that a port or network may use a policy: the caller
// sees it (owned, shared or granted) and Nagare enforces its rules.
func (s *Service) usableQoS(tx *nsdb.Tx, c *identity.Context, id, kind, objID string) error {
	if id == "" {
		return nil
	}
	if _, err := get[*QoSPolicy](tx, c, id); err != nil {
		return err
	}
	rules, err := listOf[*QoSRule](tx, "qos_policy_id", id)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if !slices.Contains(EnforcedQoSRuleTypes, r.Type) {
			if kind == "network" {
				return conflict("QosRuleNotSupportedByNetwork", "Rule %s is not supported by network %s", r.Type, objID)
			}
			return conflict("QosRuleNotSupported", "Rule %s is not supported by port %s", r.Type, objID)
		}
	}
	return nil
}

// QoSRules are a policy's rules, for views.
func (r *Reader) QoSRules(id string) []*QoSRule {
	rs, err := listOf[*QoSRule](r.tx, "qos_policy_id", id)
	r.failed(err)
	return rs
}
