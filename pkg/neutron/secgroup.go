package neutron

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// SecurityGroupRequest is what a create or update of a group asks.
type SecurityGroupRequest struct {
	StdRequest
	Stateful *bool
}

// SecurityGroupRuleRequest is what a create of a rule asks (rules do not
// change).
type SecurityGroupRuleRequest struct {
	StdRequest
	SecurityGroupID string
	Direction       string // ingress or egress
	Ethertype       string // IPv4 or IPv6; "" is IPv4
	// Protocol is a name or a number in lower case; "" is any.
	Protocol             string
	PortRangeMin         *int
	PortRangeMax         *int
	RemoteIPPrefix       netip.Prefix
	RemoteGroupID        string
	RemoteAddressGroupID string
}

// defaultGroupID is the id of a project's default group: derived, so that
// finding it costs no read.
func defaultGroupID(project string) string { return DerivedID("default-security-group", project) }

// createDefaultGroup writes a project's default group: ingress from its
// own members, egress anywhere, both families (Neutron's defaults).
func (s *Service) createDefaultGroup(tx *nsdb.Tx, project, id string) error {
	g := &SecurityGroup{Std: s.newStd(project), Stateful: true, IsDefault: true}
	g.ID, g.Name, g.Description = id, "default", "Default security group"
	var rules []*SecurityGroupRule
	for _, et := range []string{"IPv4", "IPv6"} {
		rules = append(rules, s.newRule(g, "ingress", et, func(r *SecurityGroupRule) { r.RemoteGroupID = id }))
		rules = append(rules, s.newRule(g, "egress", et, nil))
	}
	for _, r := range rules {
		if _, err := tx.Create(r); err != nil {
			return err
		}
	}
	_, err := createWith(tx, g, TranslateSecurityGroup(g, rules, nil))
	return err
}

func (s *Service) newRule(g *SecurityGroup, dir, ether string, set func(*SecurityGroupRule)) *SecurityGroupRule {
	r := &SecurityGroupRule{Std: s.newStd(g.ProjectID), SecurityGroupID: g.ID, Direction: dir, Ethertype: ether}
	r.ID = newID()
	if set != nil {
		set(r)
	}
	r.Fingerprint = fingerprint(r)
	return r
}

// fingerprint identifies what a rule matches, for Neutron's duplicate
// check (protocol names and numbers compare equal).
func fingerprint(r *SecurityGroupRule) string {
	proto := r.Protocol
	if n, ok := protoNumber(r.Protocol); ok {
		proto = strconv.Itoa(int(n))
	}
	num := func(p *int) string {
		if p == nil {
			return ""
		}
		return strconv.Itoa(*p)
	}
	prefix := ""
	if r.RemoteIPPrefix.IsValid() {
		prefix = r.RemoteIPPrefix.Masked().String()
	}
	return strings.Join([]string{r.Direction, r.Ethertype, proto, num(r.PortRangeMin), num(r.PortRangeMax), prefix, r.RemoteGroupID, r.RemoteAddressGroupID}, "|")
}

// defaultGroup returns the project's default group, creating it again if
// an admin deleted it (Neutron recreates it on next use too).
func (s *Service) defaultGroup(tx *nsdb.Tx, project string) (*SecurityGroup, error) {
	id := defaultGroupID(project)
	g, err := tx.Get(SecurityGroupKind, id)
	if errors.Is(err, model.ErrNotFound) {
		if err := s.createDefaultGroup(tx, project, id); err != nil {
			return nil, err
		}
		g, err = tx.Get(SecurityGroupKind, id)
	}
	if err != nil {
		return nil, err
	}
	return g.(*SecurityGroup), nil
}

// addressGroups are the address groups rules name.
func addressGroups(tx *nsdb.Tx, rules []*SecurityGroupRule) (map[string]*AddressGroup, error) {
	out := map[string]*AddressGroup{}
	for _, r := range rules {
		if id := r.RemoteAddressGroupID; id != "" && out[id] == nil {
			o, err := tx.Get(AddressGroupKind, id)
			if err != nil {
				return nil, err
			}
			out[id] = o.(*AddressGroup)
		}
	}
	return out, nil
}

// retranslateGroup rewrites a group's chains from its current rules.
func (s *Service) retranslateGroup(tx *nsdb.Tx, g *SecurityGroup) error {
	rules, err := listOf[*SecurityGroupRule](tx, "security_group_id", g.ID)
	if err != nil {
		return err
	}
	ags, err := addressGroups(tx, rules)
	if err != nil {
		return err
	}
	return apply(tx, &g.Std, TranslateSecurityGroup(g, rules, ags))
}

// CreateSecurityGroup creates a group with Neutron's default egress rules.
func (s *Service) CreateSecurityGroup(ctx context.Context, c *identity.Context, r SecurityGroupRequest) (*SecurityGroup, error) {
	cr, err := s.PrepareSecurityGroup(c, r)
	return created[*SecurityGroup](ctx, s, cr, err)
}

// PrepareSecurityGroup checks a security group's create.
func (s *Service) PrepareSecurityGroup(c *identity.Context, r SecurityGroupRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_security_group")
	if err != nil {
		return nil, err
	}
	g := &SecurityGroup{Std: st, Stateful: true}
	r.apply(g)
	if g.Name == "default" {
		return nil, inUse("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
	}
	return creation(st.ProjectID, "security_group", func(tx *nsdb.Tx) (model.Object, error) {
		var out *SecurityGroup
		err := func() error {
			n := *g
			n.ID = newID()
			rules := []*SecurityGroupRule{s.newRule(&n, "egress", "IPv4", nil), s.newRule(&n, "egress", "IPv6", nil)}
			for _, r := range rules {
				if _, err := tx.Create(r); err != nil {
					return err
				}
			}
			out, err = createWith(tx, &n, TranslateSecurityGroup(&n, rules, nil))
			return err
		}()
		return out, err
	}), nil
}

func (r *SecurityGroupRequest) apply(g *SecurityGroup) {
	r.StdRequest.apply(&g.Std)
	set(&g.Stateful, r.Stateful)
}

// UpdateSecurityGroup changes a group's name, description or statefulness.
func (s *Service) UpdateSecurityGroup(ctx context.Context, c *identity.Context, id string, r SecurityGroupRequest, ifRev int64) (*SecurityGroup, error) {
	return modify(ctx, s, c, id, "update_security_group", ifRev, func(tx *nsdb.Tx, g *SecurityGroup) error {
		was := *g
		r.apply(g)
		if was.IsDefault && g.Name != "default" {
			return inUse("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
		}
		if !was.IsDefault && g.Name == "default" {
			return inUse("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
		}
		if g.Stateful != was.Stateful {
			users, err := tx.List(PortKind, "security_groups", id)
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return inUse("SecurityGroupInUse", "Security Group %s in use: its statefulness cannot change while ports use it.", id)
			}
		}
		s.touch(&g.Std)
		if err := s.retranslateGroup(tx, g); err != nil {
			return err
		}
		return tx.Put(g)
	})
}

// DeleteSecurityGroup deletes a group no port uses, with its rules and the
// rules of other groups that name it as their remote group.
func (s *Service) DeleteSecurityGroup(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_security_group", ifRev, func(tx *nsdb.Tx, g *SecurityGroup) error {
		if g.IsDefault && !c.IsAdmin() {
			return inUse("SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security group.")
		}
		users, err := tx.List(PortKind, "security_groups", id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return inUse("SecurityGroupInUse", "Security Group %s in use.", id)
		}
		refs, err := tx.List(SecurityGroupRuleKind, "remote_group_id", id)
		if err != nil {
			return err
		}
		touched := map[string]bool{}
		for _, o := range refs {
			r := o.(*SecurityGroupRule)
			if r.SecurityGroupID == id {
				continue
			}
			if err := tx.Delete(SecurityGroupRuleKind, r.ID); err != nil {
				return err
			}
			touched[r.SecurityGroupID] = true
		}
		for _, other := range slices.Sorted(maps.Keys(touched)) {
			o, err := tx.Get(SecurityGroupKind, other)
			if err != nil {
				return err
			}
			og := o.(*SecurityGroup)
			s.touch(&og.Std)
			if err := s.retranslateGroup(tx, og); err != nil {
				return err
			}
			if err := tx.Put(og); err != nil {
				return err
			}
		}
		if err := apply(tx, &g.Std, nil); err != nil {
			return err
		}
		return tx.Delete(SecurityGroupKind, id)
	})
	return err
}

// CreateSecurityGroupRule validates a rule as Neutron does and rewrites
// its group's chains.
func (s *Service) CreateSecurityGroupRule(ctx context.Context, c *identity.Context, req SecurityGroupRuleRequest) (*SecurityGroupRule, error) {
	cr, err := s.PrepareSecurityGroupRule(c, req)
	return created[*SecurityGroupRule](ctx, s, cr, err)
}

// PrepareSecurityGroupRule checks a security group rule's create.
func (s *Service) PrepareSecurityGroupRule(c *identity.Context, req SecurityGroupRuleRequest) (*Creation, error) {
	st, err := s.creating(c, &req.StdRequest, "create_security_group_rule")
	if err != nil {
		return nil, err
	}
	r := &SecurityGroupRule{Std: st, Ethertype: "IPv4"}
	if err := req.apply(r); err != nil {
		return nil, err
	}
	return creation(st.ProjectID, "security_group_rule", func(tx *nsdb.Tx) (model.Object, error) {
		var out *SecurityGroupRule
		err := func() error {
			g, err := get[*SecurityGroup](tx, c, r.SecurityGroupID)
			if err != nil {
				return err
			}
			if r.RemoteGroupID != "" {
				if _, err := get[*SecurityGroup](tx, c, r.RemoteGroupID); err != nil {
					return err
				}
			}
			if r.RemoteAddressGroupID != "" {
				if _, err := get[*AddressGroup](tx, c, r.RemoteAddressGroupID); err != nil {
					return err
				}
			}
			n := *r
			n.ID = newID()
			n.Fingerprint = fingerprint(&n)
			f := SecurityGroupRuleKind.Field("fingerprint")
			if owner, err := tx.UniqueOwner(SecurityGroupRuleKind, f, g.ID, n.Fingerprint); err != nil {
				return err
			} else if owner != "" {
				return conflict("SecurityGroupRuleExists", "Security group rule already exists. Rule id is %s.", owner)
			}
			o, err := tx.Create(&n)
			if err != nil {
				return err
			}
			out = o.(*SecurityGroupRule)
			s.touch(&g.Std)
			if err := s.retranslateGroup(tx, g); err != nil {
				return err
			}
			return tx.Put(g)
		}()
		return out, err
	}), nil
}

// validPortProtocols may carry port ranges (Neutron's list).
var validPortProtocols = map[uint8]bool{6: true, 17: true, 132: true, 33: true, 136: true}

func (req *SecurityGroupRuleRequest) apply(r *SecurityGroupRule) error {
	req.StdRequest.apply(&r.Std)
	r.SecurityGroupID, r.Direction = req.SecurityGroupID, req.Direction
	if req.Ethertype != "" {
		r.Ethertype = req.Ethertype
	}
	if p := req.Protocol; p != "" && p != "any" {
		if _, ok := protoNumber(p); !ok {
			return NewError(BadRequest, "SecurityGroupRuleInvalidProtocol", "Security group rule protocol %s not supported. Only protocol values [None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'hopopt', 'icmp', 'igmp', 'ipip', 'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', 'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and integer representations [0 to 255] are supported.", p)
		}
		r.Protocol = p
	}
	r.PortRangeMin, r.PortRangeMax = req.PortRangeMin, req.PortRangeMax
	r.RemoteIPPrefix, r.RemoteGroupID, r.RemoteAddressGroupID = req.RemoteIPPrefix, req.RemoteGroupID, req.RemoteAddressGroupID
	return r.validate()
}

// validate is Neutron's _validate_security_group_rule.
func (r *SecurityGroupRule) validate() error {
	if (r.RemoteIPPrefix.IsValid() && r.RemoteGroupID != "") || (r.RemoteAddressGroupID != "" && (r.RemoteIPPrefix.IsValid() || r.RemoteGroupID != "")) {
		return NewError(BadRequest, "SecurityGroupMultipleRemoteEntites", "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.")
	}
	if r.RemoteIPPrefix.IsValid() {
		if (r.Ethertype == "IPv4") != r.RemoteIPPrefix.Addr().Is4() {
			e := InvalidInput("Conflicting value ethertype %s for CIDR %s", r.Ethertype, r.RemoteIPPrefix)
			e.Type = "SecurityGroupRuleParameterConflict"
			return e
		}
	}
	proto, hasProto := protoNumber(r.Protocol)
	if !hasProto && (r.PortRangeMin != nil || r.PortRangeMax != nil) {
		return NewError(BadRequest, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given.")
	}
	if !hasProto {
		return nil
	}
	switch {
	case proto == 58 && r.Ethertype == "IPv4":
		return NewError(BadRequest, "SecurityGroupEthertypeConflictWithProtocol", "Invalid ethertype %s for protocol %s.", r.Ethertype, r.Protocol)
	case proto == 1 || proto == 58:
		for _, x := range []struct {
			v     *int
			field string
			attr  string
		}{{r.PortRangeMin, "type", "port_range_min"}, {r.PortRangeMax, "code", "port_range_max"}} {
			if x.v != nil && (*x.v < 0 || *x.v > 255) {
				return NewError(BadRequest, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP %s (%s) %d. It must be 0 to 255.", x.field, x.attr, *x.v)
			}
		}
		if r.PortRangeMin == nil && r.PortRangeMax != nil {
			return NewError(BadRequest, "SecurityGroupMissingIcmpType", "ICMP code (port-range-max) %d is provided but ICMP type (port-range-min) is missing.", *r.PortRangeMax)
		}
	case validPortProtocols[proto]:
		for _, v := range []*int{r.PortRangeMin, r.PortRangeMax} {
			if v != nil && (*v < 1 || *v > 65535) {
				return NewError(BadRequest, "SecurityGroupInvalidPortValue", "Invalid value for port %d.", *v)
			}
		}
		if r.PortRangeMin != nil && r.PortRangeMax != nil && *r.PortRangeMin > *r.PortRangeMax {
			return NewError(BadRequest, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
		}
		if r.PortRangeMin == nil && r.PortRangeMax != nil {
			return NewError(BadRequest, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
		}
	default:
		if r.PortRangeMin != nil || r.PortRangeMax != nil {
			return NewError(BadRequest, "SecurityGroupInvalidProtocolForPort", "Invalid protocol %s for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP.", r.Protocol)
		}
	}
	return nil
}

// DeleteSecurityGroupRule deletes a rule and rewrites its group's chains.
func (s *Service) DeleteSecurityGroupRule(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := tx.Get(SecurityGroupRuleKind, id)
		if errors.Is(err, model.ErrNotFound) {
			return NotFoundError(SecurityGroupRuleKind, id)
		}
		if err != nil {
			return err
		}
		r := o.(*SecurityGroupRule)
		// The rules of a group are its owner's to delete.
		g, err := get[*SecurityGroup](tx, c, r.SecurityGroupID)
		if e := (*Error)(nil); errors.As(err, &e) && e.Class == NotFound {
			return NotFoundError(SecurityGroupRuleKind, id)
		}
		if err != nil {
			return err
		}
		if err := may(c, "delete_security_group_rule"); err != nil {
			return err
		}
		if err := checkRevision(&r.Std, ifRev); err != nil {
			return err
		}
		if err := tx.Delete(SecurityGroupRuleKind, id); err != nil {
			return err
		}
		s.touch(&g.Std)
		if err := s.retranslateGroup(tx, g); err != nil {
			return err
		}
		return tx.Put(g)
	})
	return err
}
