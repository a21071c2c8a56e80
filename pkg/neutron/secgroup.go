package neutron

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

var groupSpec = std.with(spec{
	"name":                 {post: true, put: true},
	"stateful":             {post: true, put: true},
	"security_group_rules": {},
	"shared":               {},
})

var ruleSpec = std.with(spec{
	"security_group_id":       {post: true, required: true},
	"direction":               {post: true, required: true},
	"ethertype":               {post: true},
	"protocol":                {post: true},
	"port_range_min":          {post: true},
	"port_range_max":          {post: true},
	"remote_ip_prefix":        {post: true},
	"remote_group_id":         {post: true},
	"remote_address_group_id": {post: true},
	"normalized_cidr":         {},
	"belongs_to_default_sg":   {},
})

func init() { delete(ruleSpec, "tags") } // Neutron does not tag rules' creation

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
	if err := apply(tx, &g.Std, TranslateSecurityGroup(g, rules)); err != nil {
		return err
	}
	_, err := tx.Create(g)
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
	return strings.Join([]string{r.Direction, r.Ethertype, proto, num(r.PortRangeMin), num(r.PortRangeMax), prefix, r.RemoteGroupID}, "|")
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

func (s *Service) getGroup(tx *nsdb.Tx, c *identity.Context, id string) (*SecurityGroup, error) {
	o, err := tx.Get(SecurityGroupKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, securityGroupNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	g := o.(*SecurityGroup)
	if !owns(c, &g.Std) {
		return nil, securityGroupNotFound(id)
	}
	return g, nil
}

// retranslateGroup rewrites a group's chains from its current rules.
func (s *Service) retranslateGroup(tx *nsdb.Tx, g *SecurityGroup) error {
	rules, err := groupRules(tx, g.ID)
	if err != nil {
		return err
	}
	return apply(tx, &g.Std, TranslateSecurityGroup(g, rules))
}

func groupRules(tx *nsdb.Tx, id string) ([]*SecurityGroupRule, error) {
	objs, err := tx.List(SecurityGroupRuleKind, "security_group_id", id)
	if err != nil {
		return nil, err
	}
	rules := make([]*SecurityGroupRule, len(objs))
	for i, o := range objs {
		rules[i] = o.(*SecurityGroupRule)
	}
	return rules, nil
}

// CreateSecurityGroup creates a group with Neutron's default egress rules.
func (s *Service) CreateSecurityGroup(ctx context.Context, c *identity.Context, b Body) (*SecurityGroup, error) {
	if err := groupSpec.check(b, true, c, "security_group"); err != nil {
		return nil, err
	}
	if err := may(c, "create_security_group"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	g := &SecurityGroup{Std: s.newStd(project), Stateful: true}
	if err := g.decode(b); err != nil {
		return nil, err
	}
	if g.Name == "default" {
		return nil, inUse("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
	}
	if err := s.checkQuota(ctx, project, "security_group", 1); err != nil {
		return nil, err
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	var out *SecurityGroup
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		n := *g
		n.ID = newID()
		rules := []*SecurityGroupRule{s.newRule(&n, "egress", "IPv4", nil), s.newRule(&n, "egress", "IPv6", nil)}
		for _, r := range rules {
			if _, err := tx.Create(r); err != nil {
				return err
			}
		}
		if err := apply(tx, &n.Std, TranslateSecurityGroup(&n, rules)); err != nil {
			return err
		}
		o, err := tx.Create(&n)
		if err == nil {
			out = o.(*SecurityGroup)
		}
		return err
	})
	return out, err
}

func (g *SecurityGroup) decode(b Body) error {
	if err := decodeStd(b, &g.Std); err != nil {
		return err
	}
	if v, ok, err := b.str("name", 255); err != nil {
		return err
	} else if ok {
		g.Name = v
	}
	if v, ok, err := b.boolean("stateful"); err != nil {
		return err
	} else if ok {
		g.Stateful = v
	}
	return nil
}

// decodeStd reads the writable standard attributes.
func decodeStd(b Body, st *Std) error {
	if v, ok, err := b.str("description", 255); err != nil {
		return err
	} else if ok {
		st.Description = v
	}
	if v, ok, err := b.tags("tags"); err != nil {
		return err
	} else if ok {
		st.Tags = v
	}
	return nil
}

// UpdateSecurityGroup changes a group's name, description or statefulness.
func (s *Service) UpdateSecurityGroup(ctx context.Context, c *identity.Context, id string, b Body, ifRev int64) (*SecurityGroup, error) {
	if err := groupSpec.check(b, false, c, "security_group"); err != nil {
		return nil, err
	}
	var out *SecurityGroup
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		g, err := s.getGroup(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "update_security_group"); err != nil {
			return err
		}
		if err := checkRevision(&g.Std, ifRev); err != nil {
			return err
		}
		was := *g
		if err := g.decode(b); err != nil {
			return err
		}
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
		out = g
		return tx.Put(g)
	})
	return out, err
}

// DeleteSecurityGroup deletes a group no port uses, with its rules and the
// rules of other groups that name it as their remote group.
func (s *Service) DeleteSecurityGroup(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		g, err := s.getGroup(tx, c, id)
		if err != nil {
			return err
		}
		if err := may(c, "delete_security_group"); err != nil {
			return err
		}
		if err := checkRevision(&g.Std, ifRev); err != nil {
			return err
		}
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
		for _, other := range sortedKeys(touched) {
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
func (s *Service) CreateSecurityGroupRule(ctx context.Context, c *identity.Context, b Body) (*SecurityGroupRule, error) {
	if err := ruleSpec.check(b, true, c, "security_group_rule"); err != nil {
		return nil, err
	}
	if err := may(c, "create_security_group_rule"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	r := &SecurityGroupRule{Std: s.newStd(project), Ethertype: "IPv4"}
	if err := r.decode(b); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, project, "security_group_rule", 1); err != nil {
		return nil, err
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	var out *SecurityGroupRule
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		g, err := s.getGroup(tx, c, r.SecurityGroupID)
		if err != nil {
			return err
		}
		if r.RemoteGroupID != "" {
			if _, err := s.getGroup(tx, c, r.RemoteGroupID); err != nil {
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
	})
	return out, err
}

// validPortProtocols may carry port ranges (Neutron's list).
var validPortProtocols = map[uint8]bool{6: true, 17: true, 132: true, 33: true, 136: true}

func (r *SecurityGroupRule) decode(b Body) error {
	if err := decodeStd(b, &r.Std); err != nil {
		return err
	}
	var err error
	if r.SecurityGroupID, _, err = b.uuid("security_group_id"); err != nil {
		return err
	}
	dir, _, err := b.str("direction", 0)
	if err != nil {
		return err
	}
	if dir != "ingress" && dir != "egress" {
		return invalid("direction", "'%s' is not in ['ingress', 'egress']", dir)
	}
	r.Direction = dir
	if v, ok, err := b.str("ethertype", 0); err != nil {
		return err
	} else if ok {
		switch strings.ToLower(v) {
		case "ipv4":
			r.Ethertype = "IPv4"
		case "ipv6":
			r.Ethertype = "IPv6"
		default:
			return invalid("ethertype", "'%s' is not in ['IPv4', 'IPv6']", v)
		}
	}
	if b.has("protocol") && !b.isNull("protocol") {
		var x any
		_, _ = b.raw("protocol", &x, "not a protocol")
		p := strings.ToLower(fmt.Sprint(x))
		if f, ok := x.(float64); ok {
			p = strconv.Itoa(int(f))
		}
		if _, ok := protoNumber(p); !ok && p != "any" {
			return newErr(400, "SecurityGroupRuleInvalidProtocol", "Security group rule protocol %s not supported. Only protocol values [None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'hopopt', 'icmp', 'igmp', 'ipip', 'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', 'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and integer representations [0 to 255] are supported.", p)
		}
		if p != "any" {
			r.Protocol = p
		}
	}
	for _, name := range []string{"port_range_min", "port_range_max"} {
		n, null, ok, err := b.integer(name)
		if err != nil {
			return err
		}
		if ok && !null {
			v := n
			if name == "port_range_min" {
				r.PortRangeMin = &v
			} else {
				r.PortRangeMax = &v
			}
		}
	}
	if p, ok, err := b.cidr("remote_ip_prefix"); err != nil {
		// Neutron keeps a prefix with host bits as given (normalized_cidr
		// shows it masked).
		s, _, _ := b.str("remote_ip_prefix", 0)
		pp, perr := netip.ParsePrefix(strings.TrimSpace(s))
		if perr != nil {
			return err
		}
		r.RemoteIPPrefix = pp
	} else if ok {
		r.RemoteIPPrefix = p
	}
	if v, ok, err := b.uuid("remote_group_id"); err != nil {
		return err
	} else if ok {
		r.RemoteGroupID = v
	}
	if b.has("remote_address_group_id") && !b.isNull("remote_address_group_id") {
		return badRequest("security_group_rule", "remote_address_group_id is not supported: address groups are not implemented")
	}
	return r.validate()
}

// validate is Neutron's _validate_security_group_rule.
func (r *SecurityGroupRule) validate() error {
	if r.RemoteIPPrefix.IsValid() && r.RemoteGroupID != "" {
		return newErr(400, "SecurityGroupRemoteGroupAndRemoteIpPrefix", "Only remote_ip_prefix or remote_group_id may be provided.")
	}
	if r.RemoteIPPrefix.IsValid() {
		if (r.Ethertype == "IPv4") != r.RemoteIPPrefix.Addr().Is4() {
			e := invalidInput("Conflicting value ethertype %s for CIDR %s", r.Ethertype, r.RemoteIPPrefix)
			e.Type = "SecurityGroupRuleParameterConflict"
			return e
		}
	}
	proto, hasProto := protoNumber(r.Protocol)
	if !hasProto && (r.PortRangeMin != nil || r.PortRangeMax != nil) {
		return newErr(400, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given.")
	}
	if !hasProto {
		return nil
	}
	switch {
	case proto == 58 && r.Ethertype == "IPv4":
		return newErr(400, "SecurityGroupEthertypeConflictWithProtocol", "Invalid ethertype %s for protocol %s.", r.Ethertype, r.Protocol)
	case proto == 1 || proto == 58:
		for _, x := range []struct {
			v     *int
			field string
			attr  string
		}{{r.PortRangeMin, "type", "port_range_min"}, {r.PortRangeMax, "code", "port_range_max"}} {
			if x.v != nil && (*x.v < 0 || *x.v > 255) {
				return newErr(400, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP %s (%s) %d. It must be 0 to 255.", x.field, x.attr, *x.v)
			}
		}
		if r.PortRangeMin == nil && r.PortRangeMax != nil {
			return newErr(400, "SecurityGroupMissingIcmpType", "ICMP code (port-range-max) %d is provided but ICMP type (port-range-min) is missing.", *r.PortRangeMax)
		}
	case validPortProtocols[proto]:
		for _, v := range []*int{r.PortRangeMin, r.PortRangeMax} {
			if v != nil && (*v < 1 || *v > 65535) {
				return newErr(400, "SecurityGroupInvalidPortValue", "Invalid value for port %d.", *v)
			}
		}
		if r.PortRangeMin != nil && r.PortRangeMax != nil && *r.PortRangeMin > *r.PortRangeMax {
			return newErr(400, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
		}
		if r.PortRangeMin == nil && r.PortRangeMax != nil {
			return newErr(400, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
		}
	default:
		if r.PortRangeMin != nil || r.PortRangeMax != nil {
			return newErr(400, "SecurityGroupInvalidProtocolForPort", "Invalid protocol %s for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP.", r.Protocol)
		}
	}
	return nil
}

// DeleteSecurityGroupRule deletes a rule and rewrites its group's chains.
func (s *Service) DeleteSecurityGroupRule(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := tx.Get(SecurityGroupRuleKind, id)
		if errors.Is(err, model.ErrNotFound) {
			return securityGroupRuleNotFound(id)
		}
		if err != nil {
			return err
		}
		r := o.(*SecurityGroupRule)
		g, err := s.getGroup(tx, c, r.SecurityGroupID)
		if err != nil || !(owns(c, &r.Std) || owns(c, &g.Std)) {
			return securityGroupRuleNotFound(id)
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
