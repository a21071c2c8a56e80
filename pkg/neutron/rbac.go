package neutron

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// RBAC policies (rbac-policies): an object's owner grants another project,
// or every project ("*"), access to it. access_as_shared makes a network
// usable for ports (and its subnets visible), an address scope, subnet
// pool, security group, QoS policy or address group usable;
// access_as_external makes a network usable as an external network
// (router gateways, floating IPs). A network's "shared" and
// "router:external" are the wildcard policies seen from the network: the
// API keeps the two in step. Policies have no native form: they decide
// who may see and use objects, not how packets flow.

// RBAC actions.
const (
	AccessShared   = "access_as_shared"
	AccessExternal = "access_as_external"
	AnyProject     = "*"
)

// rbacType is an object type policies apply to.
type rbacType struct {
	kind    *model.Kind
	field   string // the policy's reference field for the type
	actions []string
}

// rbacTypes are the object types, by Neutron's name.
var rbacTypes = map[string]rbacType{
	"network":        {NetworkKind, "network_id", []string{AccessExternal, AccessShared}},
	"address_scope":  {AddressScopeKind, "address_scope_id", []string{AccessShared}},
	"subnetpool":     {SubnetPoolKind, "subnetpool_id", []string{AccessShared}},
	"security_group": {SecurityGroupKind, "security_group_id", []string{AccessShared}},
	"qos_policy":     {QoSPolicyKind, "qos_policy_id", []string{AccessShared}},
	"address_group":  {AddressGroupKind, "address_group_id", []string{AccessShared}},
}

// RBACObjectTypes are the object types policies apply to.
func RBACObjectTypes() []string {
	out := make([]string, 0, len(rbacTypes))
	for t := range rbacTypes {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// RBACPolicy is an RBAC policy. Its project is its owner's; the reference
// field of its object type names the object, so that deleting the object
// deletes its policies.
type RBACPolicy struct {
	Std
	ObjectType     string `json:"object_type"`
	ObjectID       string `json:"object_id"`
	NetworkID      string `json:"network_id,omitempty" nagare:"ref=neutron-network,ondelete=cascade"`
	AddressScopeID string `json:"address_scope_id,omitempty" nagare:"ref=neutron-address-scope,ondelete=cascade"`
	SubnetPoolID   string `json:"subnetpool_id,omitempty" nagare:"ref=neutron-subnetpool,ondelete=cascade"`
	SecGroupID     string `json:"security_group_id,omitempty" nagare:"ref=neutron-security-group,ondelete=cascade"`
	QoSPolicyID    string `json:"qos_policy_id,omitempty" nagare:"ref=neutron-qos-policy,ondelete=cascade"`
	AddressGroupID string `json:"address_group_id,omitempty" nagare:"ref=neutron-address-group,ondelete=cascade"`
	Target         string `json:"target_project"`
	Action         string `json:"action"`
	// Key (type/object/action/target) is unique: DuplicateRbacPolicy.
	Key string `json:"key" nagare:"unique"`
}

var RBACPolicyKind = model.RegisterInternal("neutron-rbac-policy", "neutron-rbac-policies", "A Neutron RBAC policy.", &RBACPolicy{}, nil)

// RBACRequest is what a create or update of a policy asks.
type RBACRequest struct {
	StdRequest
	ObjectType, ObjectID, Action string // create only
	Target                       string // a project id or "*"
}

func (p *RBACPolicy) setObject(typ, id string) {
	p.ObjectType, p.ObjectID = typ, id
	p.NetworkID, p.AddressScopeID, p.SubnetPoolID, p.SecGroupID, p.QoSPolicyID, p.AddressGroupID = "", "", "", "", "", ""
	switch typ {
	case "network":
		p.NetworkID = id
	case "address_scope":
		p.AddressScopeID = id
	case "subnetpool":
		p.SubnetPoolID = id
	case "security_group":
		p.SecGroupID = id
	case "qos_policy":
		p.QoSPolicyID = id
	case "address_group":
		p.AddressGroupID = id
	}
	p.setKey()
}

func (p *RBACPolicy) setKey() {
	p.Key = strings.Join([]string{p.ObjectType, p.ObjectID, p.Action, p.Target}, "/")
}

// rbacPolicies are the policies on an object.
func rbacPolicies(tx *nsdb.Tx, typ, id string) ([]*RBACPolicy, error) {
	t, ok := rbacTypes[typ]
	if !ok {
		return nil, nil
	}
	return listOf[*RBACPolicy](tx, t.field, id)
}

// grants reports whether policies grant project an action ("" any).
func grants(pols []*RBACPolicy, action, project string) bool {
	return slices.ContainsFunc(pols, func(p *RBACPolicy) bool {
		return (action == "" || p.Action == action) && (p.Target == AnyProject || p.Target == project)
	})
}

// granted reports whether an object's policies grant the caller an action
// ("" any) within a write's transaction.
func granted(tx *nsdb.Tx, c *identity.Context, typ, id, action string) (bool, error) {
	pols, err := rbacPolicies(tx, typ, id)
	return grants(pols, action, c.ProjectID), err
}

// Granted reports whether an object's policies grant the reader's caller
// an action ("" any). The policies of an object are read once per reader.
func (r *Reader) Granted(typ, id, action string) bool {
	if r.rbac == nil {
		r.rbac = map[string][]*RBACPolicy{}
	}
	pols, ok := r.rbac[id]
	if !ok {
		var err error
		pols, err = rbacPolicies(r.tx, typ, id)
		r.failed(err)
		r.rbac[id] = pols
	}
	return grants(pols, action, r.c.ProjectID)
}

// grantedIDs are the ids of the objects of a type the caller was granted
// (for lists: a project's own objects come from its index).
func (r *Reader) grantedIDs(typ string) ([]string, error) {
	pols, err := listOf[*RBACPolicy](r.tx, "", "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pols {
		if p.ObjectType == typ && (p.Target == AnyProject || p.Target == r.c.ProjectID) && !slices.Contains(out, p.ObjectID) {
			out = append(out, p.ObjectID)
		}
	}
	return out, nil
}

// CreateRBACPolicy grants a project access to an object the caller owns.
func (s *Service) CreateRBACPolicy(ctx context.Context, c *identity.Context, r RBACRequest) (*RBACPolicy, error) {
	cr, err := s.PrepareRBACPolicy(c, r)
	return created[*RBACPolicy](ctx, s, cr, err)
}

// PrepareRBACPolicy checks a policy's create.
func (s *Service) PrepareRBACPolicy(c *identity.Context, r RBACRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_rbac_policy")
	if err != nil {
		return nil, err
	}
	t, ok := rbacTypes[r.ObjectType]
	if !ok {
		return nil, InvalidInput("'%s' is not a valid RBAC object type", r.ObjectType)
	}
	if !slices.Contains(t.actions, r.Action) {
		return nil, NewError(BadRequest, "RbacPolicyInitError", "Failed to create RBAC policy on object %s because Invalid action %s for object type %s. Valid actions: %s.",
			r.ObjectID, r.Action, r.ObjectType, strings.Join(t.actions, ", "))
	}
	p := &RBACPolicy{Std: st, Action: r.Action, Target: r.Target}
	p.setObject(r.ObjectType, r.ObjectID)
	return creation(st.ProjectID, "rbac_policy", func(tx *nsdb.Tx) (model.Object, error) {
		x := *p
		x.ID = newID()
		if err := s.rbacObjectOwned(tx, c, &x); err != nil {
			return nil, err
		}
		if owner, err := tx.UniqueOwner(RBACPolicyKind, RBACPolicyKind.Field("key"), "", x.Key); err != nil {
			return nil, err
		} else if owner != "" {
			return nil, conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
		}
		if _, err := tx.Create(&x); err != nil {
			return nil, err
		}
		return &x, s.rbacChanged(tx, &x)
	}), nil
}

// rbacObjectOwned checks that the policy's object exists for the caller
// and that the caller owns it (admins own everything).
func (s *Service) rbacObjectOwned(tx *nsdb.Tx, c *identity.Context, p *RBACPolicy) error {
	k := rbacTypes[p.ObjectType].kind
	o, err := tx.Get(k, p.ObjectID)
	if errors.Is(err, model.ErrNotFound) {
		return NotFoundError(k, p.ObjectID)
	}
	if err != nil {
		return err
	}
	obj := o.(Object)
	if owns(c, obj.std()) {
		return nil
	}
	if !(&Reader{tx: tx, c: c, networks: map[string]*Network{}}).visible(o) {
		return NotFoundError(k, p.ObjectID)
	}
	if p.ObjectType == "network" {
		return InvalidInput("Only admins can manipulate policies on networks they do not own")
	}
	return InvalidInput("Only admins can manipulate policies on objects they do not own")
}

// rbacChanged keeps the object's flags in step with its policies: a
// network's shared (a wildcard access_as_shared) and external (any
// access_as_external; to everyone with a wildcard), the shared flag of the
// other types (a wildcard policy).
func (s *Service) rbacChanged(tx *nsdb.Tx, p *RBACPolicy) error {
	pols, err := rbacPolicies(tx, p.ObjectType, p.ObjectID)
	if err != nil {
		return err
	}
	wildcard := func(action string) bool {
		return slices.ContainsFunc(pols, func(x *RBACPolicy) bool { return x.Action == action && x.Target == AnyProject })
	}
	k := rbacTypes[p.ObjectType].kind
	o, err := tx.Get(k, p.ObjectID)
	if errors.Is(err, model.ErrNotFound) {
		return nil // going with its object
	}
	if err != nil {
		return err
	}
	switch x := o.(type) {
	case *Network:
		external := slices.ContainsFunc(pols, func(x *RBACPolicy) bool { return x.Action == AccessExternal })
		if x.Shared == wildcard(AccessShared) && x.External == external && x.ExternalTargeted == (external && !wildcard(AccessExternal)) {
			return nil
		}
		x.Shared, x.External = wildcard(AccessShared), external
		x.ExternalTargeted = external && !wildcard(AccessExternal)
		return tx.Put(x)
	case sharable:
		if x.shared() == wildcard(AccessShared) {
			return nil
		}
		x.setShared(wildcard(AccessShared))
		return tx.Put(o)
	}
	return nil
}

// sharable is an object whose shared attribute is its wildcard policy.
type sharable interface {
	shared() bool
	setShared(bool)
}

// UpdateRBACPolicy changes a policy's target project.
func (s *Service) UpdateRBACPolicy(ctx context.Context, c *identity.Context, id string, r RBACRequest, ifRev int64) (*RBACPolicy, error) {
	return modify(ctx, s, c, id, "update_rbac_policy", ifRev, func(tx *nsdb.Tx, p *RBACPolicy) error {
		if r.Target == "" || r.Target == p.Target {
			return nil
		}
		if err := s.rbacObjectOwned(tx, c, p); err != nil {
			return err
		}
		if err := s.rbacInUse(tx, p, r.Target); err != nil {
			return err
		}
		p.Target = r.Target
		p.setKey()
		if owner, err := tx.UniqueOwner(RBACPolicyKind, RBACPolicyKind.Field("key"), "", p.Key); err != nil {
			return err
		} else if owner != "" && owner != p.ID {
			return conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
		}
		s.touch(&p.Std)
		if err := tx.Put(p); err != nil {
			return err
		}
		return s.rbacChanged(tx, p)
	})
}

// DeleteRBACPolicy deletes a policy nothing depends on.
func (s *Service) DeleteRBACPolicy(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_rbac_policy", ifRev, func(tx *nsdb.Tx, p *RBACPolicy) error {
		if err := s.rbacInUse(tx, p, ""); err != nil {
			return err
		}
		if err := tx.Delete(RBACPolicyKind, id); err != nil {
			return err
		}
		return s.rbacChanged(tx, p)
	})
	return err
}

// rbacInUse refuses to take access from projects that depend on it (the
// policy's target loses it; next is the new target on an update, "" on a
// delete): their ports on a shared network, routers on an external one,
// and the like for the other types.
func (s *Service) rbacInUse(tx *nsdb.Tx, p *RBACPolicy, next string) error {
	if p.Target == next || next == AnyProject {
		return nil
	}
	pols, err := rbacPolicies(tx, p.ObjectType, p.ObjectID)
	if err != nil {
		return err
	}
	others := slices.DeleteFunc(slices.Clone(pols), func(x *RBACPolicy) bool { return x.ID == p.ID || x.Action != p.Action })
	k := rbacTypes[p.ObjectType].kind
	o, err := tx.Get(k, p.ObjectID)
	if err != nil {
		return err
	}
	owner := o.(Object).std().ProjectID
	// still reports whether a project keeps access without the policy.
	still := func(project string) bool {
		return project == "" || project == owner || (project == next && next != "") || grants(others, p.Action, project)
	}
	losing := func(project string) bool { return (p.Target == AnyProject || project == p.Target) && !still(project) }
	busy := func(details string) error {
		return inUse("RbacPolicyInUse", "RBAC policy on object %s cannot be removed because other objects depend on it.\nDetails: %s", p.ObjectID, details)
	}
	var users []Object
	switch {
	case p.ObjectType == "network" && p.Action == AccessShared:
		ports, err := listOf[*Port](tx, "network_id", p.ObjectID)
		if err != nil {
			return err
		}
		for _, x := range ports {
			if !strings.HasPrefix(x.DeviceOwner, ownerNetworkPrefix) {
				users = append(users, x)
			}
		}
		for _, u := range users {
			if losing(u.std().ProjectID) {
				return busy("Unable to reconfigure sharing settings for network " + p.ObjectID + ". Multiple tenants are using it.")
			}
		}
		return nil
	case p.ObjectType == "network":
		routers, err := listOf[*Router](tx, "gw_network_id", p.ObjectID)
		if err != nil {
			return err
		}
		for _, r := range routers {
			if losing(r.ProjectID) {
				return busy("There are routers attached to this network that depend on this policy for access.")
			}
		}
		return nil
	}
	deps, err := s.rbacDependents(tx, p.ObjectType, p.ObjectID)
	if err != nil {
		return err
	}
	for _, d := range deps {
		if losing(d.std().ProjectID) {
			return busy("Objects of another project use " + strings.ReplaceAll(p.ObjectType, "_", " ") + " " + p.ObjectID + ".")
		}
	}
	return nil
}

// rbacDependents are the objects that use an object of a sharable type
// (ports of a security group or QoS policy, subnets of a pool, pools of an
// address scope, rules of an address group).
func (s *Service) rbacDependents(tx *nsdb.Tx, typ, id string) ([]Object, error) {
	var out []Object
	add := func(k *model.Kind, field string) error {
		objs, err := tx.List(k, field, id)
		for _, o := range objs {
			out = append(out, o.(Object))
		}
		return err
	}
	var err error
	switch typ {
	case "security_group":
		err = add(PortKind, "security_groups")
	case "subnetpool":
		err = add(SubnetKind, "subnetpool_id")
	case "address_scope":
		err = add(SubnetPoolKind, "address_scope_id")
	case "qos_policy":
		if err = add(PortKind, "qos_policy_id"); err == nil {
			err = add(NetworkKind, "qos_policy_id")
		}
	case "address_group":
		err = add(SecurityGroupRuleKind, "remote_address_group_id")
	}
	return out, err
}

// setWildcard creates or removes an object's wildcard policy of an action
// (a network's shared and router:external, the shared attribute of the
// other types), owned by the object's project, and keeps the flags in
// step.
func (s *Service) setWildcard(tx *nsdb.Tx, typ, id, project, action string, on bool) error {
	p := &RBACPolicy{Std: s.newStd(project), Action: action, Target: AnyProject}
	p.setObject(typ, id)
	owner, err := tx.UniqueOwner(RBACPolicyKind, RBACPolicyKind.Field("key"), "", p.Key)
	if err != nil {
		return err
	}
	switch {
	case on && owner == "":
		p.ID = newID()
		if _, err := tx.Create(p); err != nil {
			return err
		}
	case !on && owner != "":
		p.ID = owner
		if err := s.rbacInUse(tx, p, ""); err != nil {
			return err
		}
		if err := tx.Delete(RBACPolicyKind, owner); err != nil {
			return err
		}
	default:
		return nil
	}
	return s.rbacChanged(tx, p)
}
