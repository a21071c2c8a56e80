package neutron

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Address groups (address-group, security-groups-remote-address-group):
// sets of prefixes that security group rules name as their remote
// (remote_address_group_id). A rule naming one translates to one native
// rule per prefix of its family, so changing a group's addresses rewrites
// the chains of the groups whose rules name it.

// AddressGroup is a Neutron address group.
type AddressGroup struct {
	Std
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Shared    bool           `json:"shared"`
}

func (a *AddressGroup) shared() bool     { return a.Shared }
func (a *AddressGroup) setShared(v bool) { a.Shared = v }

var AddressGroupKind = model.RegisterInternal("neutron-address-group", "neutron-address-groups", "A Neutron address group.", &AddressGroup{}, nil)

// AddressGroupRequest is what a create or update of an address group asks.
type AddressGroupRequest struct {
	StdRequest
	Addresses *[]netip.Prefix // create only
}

// normalized is an address list as Neutron stores it: masked, each once.
func normalized(ps []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{}
	for _, p := range ps {
		if m := p.Masked(); !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func prefixList(ps []netip.Prefix) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = "'" + p.String() + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// CreateAddressGroup creates an address group.
func (s *Service) CreateAddressGroup(ctx context.Context, c *identity.Context, r AddressGroupRequest) (*AddressGroup, error) {
	cr, err := s.PrepareAddressGroup(c, r)
	return created[*AddressGroup](ctx, s, cr, err)
}

// PrepareAddressGroup checks an address group's create.
func (s *Service) PrepareAddressGroup(c *identity.Context, r AddressGroupRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_address_group")
	if err != nil {
		return nil, err
	}
	g := &AddressGroup{Std: st}
	r.StdRequest.apply(&g.Std)
	if r.Addresses != nil {
		g.Addresses = normalized(*r.Addresses)
	}
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *g
		x.ID = newID()
		_, err := tx.Create(&x)
		return &x, err
	}), nil
}

// UpdateAddressGroup changes a group's name or description.
func (s *Service) UpdateAddressGroup(ctx context.Context, c *identity.Context, id string, r AddressGroupRequest, ifRev int64) (*AddressGroup, error) {
	return rename[*AddressGroup](ctx, s, c, id, "update_address_group", r.StdRequest, ifRev)
}

// ChangeAddresses adds addresses to a group (each must be new) or removes
// them (each must be there), and rewrites the chains of the security
// groups whose rules name it.
func (s *Service) ChangeAddresses(ctx context.Context, c *identity.Context, id string, addrs []netip.Prefix, add bool) (*AddressGroup, error) {
	action := "remove_addresses"
	if add {
		action = "add_addresses"
	}
	return modify(ctx, s, c, id, action, 0, func(tx *nsdb.Tx, g *AddressGroup) error {
		var in, out []netip.Prefix
		for _, a := range normalized(addrs) {
			if slices.Contains(g.Addresses, a) {
				in = append(in, a)
			} else {
				out = append(out, a)
			}
		}
		switch {
		case add && len(in) > 0:
			return NewError(BadRequest, "AddressesAlreadyExist", "Addresses %s already exist in the address group %s.", prefixList(in), id)
		case !add && len(out) > 0:
			return NewError(NotFound, "AddressesNotFound", "Addresses %s not found in the address group %s.", prefixList(out), id)
		case add:
			g.Addresses = append(g.Addresses, out...)
		default:
			g.Addresses = slices.DeleteFunc(g.Addresses, func(a netip.Prefix) bool { return slices.Contains(in, a) })
		}
		s.touch(&g.Std)
		if err := tx.Put(g); err != nil {
			return err
		}
		return s.retranslateUsers(tx, id)
	})
}

// retranslateUsers rewrites the chains of the security groups whose rules
// name an address group.
func (s *Service) retranslateUsers(tx *nsdb.Tx, addressGroupID string) error {
	rules, err := listOf[*SecurityGroupRule](tx, "remote_address_group_id", addressGroupID)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, r := range rules {
		if done[r.SecurityGroupID] {
			continue
		}
		done[r.SecurityGroupID] = true
		o, err := tx.Get(SecurityGroupKind, r.SecurityGroupID)
		if err != nil {
			return err
		}
		g := o.(*SecurityGroup)
		if err := s.retranslateGroup(tx, g); err != nil {
			return err
		}
		if err := tx.Put(g); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAddressGroup deletes a group no rule names.
func (s *Service) DeleteAddressGroup(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_address_group", ifRev, func(tx *nsdb.Tx, g *AddressGroup) error {
		users, err := tx.List(SecurityGroupRuleKind, "remote_address_group_id", id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return inUse("AddressGroupInUse", "Address group %s is in use on one or more security group rules.", id)
		}
		return tx.Delete(AddressGroupKind, id)
	})
	return err
}
