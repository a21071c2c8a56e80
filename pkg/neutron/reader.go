package neutron

import (
	"context"
	"errors"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Reads: what a caller may see, in one consistent snapshot. How Neutron
// shows it is the API's business (package api/neutron renders what a
// Reader returns).

// Reader reads objects for one caller within one snapshot, applying each
// resource's get policy and caching what rendering many objects shares
// (the networks of ports, the subnets of networks, the rules of groups).
type Reader struct {
	tx       *nsdb.Tx
	c        *identity.Context
	networks map[string]*Network
	subnets  map[string][]string // network → subnet ids, when all were listed
	rules    map[string][]*SecurityGroupRule
	rbac     map[string][]*RBACPolicy // object id → its policies
	trunks   map[string]*Trunk        // parent port id → its trunk, once read
	// err is the first failure of a read that has no error result (the
	// helpers views call); Read returns it.
	err error
}

// Read runs fn with a reader over one consistent snapshot. It fails when
// fn does or when a read fn made through the reader's helpers failed.
func (s *Service) Read(ctx context.Context, c *identity.Context, fn func(r *Reader) error) error {
	return s.view(ctx, func(tx *nsdb.Tx) error {
		r := s.reader(tx, c)
		if err := fn(r); err != nil {
			return err
		}
		return r.err
	})
}

// failed records a helper's read failure; a missing object is no failure.
func (r *Reader) failed(err error) {
	if err != nil && !errors.Is(err, model.ErrNotFound) && r.err == nil {
		r.err = err
	}
}

func (s *Service) reader(tx *nsdb.Tx, c *identity.Context) *Reader {
	return &Reader{tx: tx, c: c, networks: map[string]*Network{}}
}

// Caller is whom the reader reads for.
func (r *Reader) Caller() *identity.Context { return r.c }

// Network is a network by id, nil when it is gone.
func (r *Reader) Network(id string) *Network {
	if n, ok := r.networks[id]; ok {
		return n
	}
	o, err := r.tx.Get(NetworkKind, id)
	r.failed(err)
	var n *Network
	if err == nil {
		n = o.(*Network)
	}
	r.networks[id] = n
	return n
}

// Port is a port by id, nil when it is gone.
func (r *Reader) Port(id string) *Port { return lookup[*Port](r, id) }

// SecurityGroup is a group by id, nil when it is gone.
func (r *Reader) SecurityGroup(id string) *SecurityGroup { return lookup[*SecurityGroup](r, id) }

// lookup reads an object by id whatever the caller may see (views name
// related objects), the zero T when it is gone.
func lookup[T model.Object](r *Reader, id string) T {
	var zero T
	o, err := r.tx.Get(model.KindOf(zero), id)
	if err != nil {
		r.failed(err)
		return zero
	}
	return o.(T)
}

// Get returns one object of a kind the caller may see (the kind's
// NotFoundError otherwise).
func (r *Reader) Get(k *model.Kind, id string) (model.Object, error) {
	o, err := r.tx.Get(k, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, NotFoundError(k, id)
	}
	if err != nil {
		return nil, err
	}
	if !r.visible(o) {
		return nil, NotFoundError(k, id)
	}
	return o, nil
}

// visible is each resource's get policy.
func (r *Reader) visible(o model.Object) bool {
	c := r.c
	if c.IsAdmin() {
		return true
	}
	switch x := o.(type) {
	case *Network:
		return networkVisible(c, x) || r.Granted("network", x.ID, "")
	case *Subnet:
		n := r.Network(x.NetworkID)
		return subnetVisible(c, x, n) || (n != nil && r.Granted("network", n.ID, AccessShared))
	case *SecurityGroup:
		return owns(c, &x.Std) || r.Granted("security_group", x.ID, "")
	case *AddressScope:
		return owns(c, &x.Std) || x.Shared || r.Granted("address_scope", x.ID, "")
	case *SubnetPool:
		return owns(c, &x.Std) || x.Shared || r.Granted("subnetpool", x.ID, "")
	case *QoSPolicy:
		return owns(c, &x.Std) || x.Shared || r.Granted("qos_policy", x.ID, "")
	case *AddressGroup:
		return owns(c, &x.Std) || x.Shared || r.Granted("address_group", x.ID, "")
	case *QoSRule:
		p := lookup[*QoSPolicy](r, x.PolicyID)
		return p != nil && r.visible(p)
	case *FirewallRule:
		return owns(c, &x.Std) || x.Shared
	case *FirewallPolicy:
		return owns(c, &x.Std) || x.Shared
	case *FirewallGroup:
		return owns(c, &x.Std) || x.Shared
	case *Port:
		return portVisible(c, x, r.Network(x.NetworkID))
	case *SecurityGroupRule:
		if owns(c, &x.Std) {
			return true
		}
		g := r.SecurityGroup(x.SecurityGroupID)
		return g != nil && owns(c, &g.Std)
	case Object:
		return owns(c, x.std())
	}
	return false
}

// List returns the objects of a kind the caller may see, in creation
// order. narrowField, when not empty, is a reference filter (network_id,
// device_id of router ports, security_group_id, …) with a single value
// that the store answers from its index instead of scanning the kind.
func (r *Reader) List(k *model.Kind, narrowField, narrowValue string) ([]model.Object, error) {
	var objs []model.Object
	var err error
	switch {
	case narrowField != "":
		objs, err = r.tx.List(k, narrowField, narrowValue)
	case r.c.IsAdmin() || k == NetworkKind || k == SubnetKind:
		objs, err = r.tx.List(k, "", "")
	default:
		// A project's own objects come from its index; ports on its
		// shared networks and rules of its groups are added.
		objs, err = r.tx.List(k, "project_ref", projectObjectID(r.c.ProjectID))
		if err == nil {
			objs, err = r.addShared(k, objs)
		}
	}
	if err != nil {
		return nil, err
	}
	if k == SubnetKind && narrowField == "" {
		r.indexSubnets(objs)
	}
	out := objs[:0]
	for _, o := range objs {
		if r.visible(o) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (r *Reader) addShared(k *model.Kind, own []model.Object) ([]model.Object, error) {
	seen := map[string]bool{}
	for _, o := range own {
		seen[o.GetMeta().ID] = true
	}
	var parents, more []model.Object
	var err error
	switch k {
	case SecurityGroupKind, AddressScopeKind, SubnetPoolKind, QoSPolicyKind, AddressGroupKind:
		// Objects other projects share with this one.
		ids, err := r.grantedIDs(map[*model.Kind]string{SecurityGroupKind: "security_group", AddressScopeKind: "address_scope",
			SubnetPoolKind: "subnetpool", QoSPolicyKind: "qos_policy", AddressGroupKind: "address_group"}[k])
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			o, err := r.tx.Get(k, id)
			if err == nil {
				more = append(more, o)
			} else if !errors.Is(err, model.ErrNotFound) {
				return nil, err
			}
		}
	case FirewallRuleKind, FirewallPolicyKind, FirewallGroupKind:
		// Other projects' shared ones (FWaaS's own shared flag).
		all, err := r.tx.List(k, "", "")
		if err != nil {
			return nil, err
		}
		more = all
	case PortKind:
		// Ports on the project's shared networks.
		if parents, err = r.tx.List(NetworkKind, "project_ref", projectObjectID(r.c.ProjectID)); err != nil {
			return nil, err
		}
		for _, n := range parents {
			if !n.(*Network).Shared {
				continue
			}
			ps, err := r.tx.List(PortKind, "network_id", n.GetMeta().ID)
			if err != nil {
				return nil, err
			}
			more = append(more, ps...)
		}
	case SecurityGroupRuleKind:
		// Rules of the project's groups.
		if parents, err = r.tx.List(SecurityGroupKind, "project_ref", projectObjectID(r.c.ProjectID)); err != nil {
			return nil, err
		}
		for _, g := range parents {
			rs, err := r.tx.List(SecurityGroupRuleKind, "security_group_id", g.GetMeta().ID)
			if err != nil {
				return nil, err
			}
			more = append(more, rs...)
		}
	}
	for _, o := range more {
		if !seen[o.GetMeta().ID] {
			seen[o.GetMeta().ID] = true
			own = append(own, o)
		}
	}
	return own, nil
}

// SubnetIDs are the ids of a network's subnets.
func (r *Reader) SubnetIDs(netID string) []string {
	if r.subnets != nil {
		if ids := r.subnets[netID]; ids != nil {
			return ids
		}
		return []string{}
	}
	objs, err := r.tx.List(SubnetKind, "network_id", netID)
	ids := []string{}
	if err != nil {
		r.failed(err)
		return ids
	}
	for _, o := range objs {
		ids = append(ids, o.GetMeta().ID)
	}
	return ids
}

// LoadSubnets lists every subnet once so that rendering many networks
// does not list each network's subnets separately.
func (r *Reader) LoadSubnets() error {
	objs, err := r.tx.List(SubnetKind, "", "")
	if err != nil {
		return err
	}
	r.indexSubnets(objs)
	return nil
}

func (r *Reader) indexSubnets(objs []model.Object) {
	r.subnets = map[string][]string{}
	for _, o := range objs {
		s := o.(*Subnet)
		r.subnets[s.NetworkID] = append(r.subnets[s.NetworkID], s.ID)
	}
}

// GroupRules are the rules of a security group.
func (r *Reader) GroupRules(id string) []*SecurityGroupRule {
	if r.rules == nil {
		r.rules = map[string][]*SecurityGroupRule{}
	}
	if rs, ok := r.rules[id]; ok {
		return rs
	}
	rs, err := listOf[*SecurityGroupRule](r.tx, "security_group_id", id)
	r.failed(err)
	r.rules[id] = rs
	return rs
}
