package neutron

import (
	"context"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Address scopes (address-scope): a family of subnet pools whose prefixes
// do not overlap, so that routing between their subnets needs no NAT.
// They have no native form: the pools and subnets they order do.

// AddressScope is a Neutron address scope.
type AddressScope struct {
	Std
	IPVersion int  `json:"ip_version"`
	Shared    bool `json:"shared"`
}

func (a *AddressScope) shared() bool     { return a.Shared }
func (a *AddressScope) setShared(v bool) { a.Shared = v }

var AddressScopeKind = model.RegisterInternal("neutron-address-scope", "neutron-address-scopes", "A Neutron address scope.", &AddressScope{}, nil)

// AddressScopeRequest is what a create or update of a scope asks.
type AddressScopeRequest struct {
	StdRequest
	IPVersion int // create only: 4 or 6
	Shared    *bool
}

// CreateAddressScope creates an address scope.
func (s *Service) CreateAddressScope(ctx context.Context, c *identity.Context, r AddressScopeRequest) (*AddressScope, error) {
	cr, err := s.PrepareAddressScope(c, r)
	return created[*AddressScope](ctx, s, cr, err)
}

// PrepareAddressScope checks an address scope's create.
func (s *Service) PrepareAddressScope(c *identity.Context, r AddressScopeRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_address_scope")
	if err != nil {
		return nil, err
	}
	a := &AddressScope{Std: st, IPVersion: r.IPVersion}
	r.StdRequest.apply(&a.Std)
	shared, _ := deref(r.Shared)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *a
		x.ID = newID()
		if _, err := tx.Create(&x); err != nil {
			return nil, err
		}
		if shared {
			if err := s.setWildcard(tx, "address_scope", x.ID, x.ProjectID, AccessShared, true); err != nil {
				return nil, err
			}
			x.Shared = true
		}
		return &x, nil
	}), nil
}

// UpdateAddressScope changes a scope's name or makes it shared (a shared
// scope cannot be unshared).
func (s *Service) UpdateAddressScope(ctx context.Context, c *identity.Context, id string, r AddressScopeRequest, ifRev int64) (*AddressScope, error) {
	return modify(ctx, s, c, id, "update_address_scope", ifRev, func(tx *nsdb.Tx, a *AddressScope) error {
		r.StdRequest.apply(&a.Std)
		if v, ok := deref(r.Shared); ok && v != a.Shared {
			if !v {
				return NewError(BadRequest, "AddressScopeUpdateError", "Unable to update address scope %s : Shared address scope can't be unshared.", id)
			}
			if err := s.setWildcard(tx, "address_scope", id, a.ProjectID, AccessShared, true); err != nil {
				return err
			}
			a.Shared = true
		}
		s.touch(&a.Std)
		return tx.Put(a)
	})
}

// DeleteAddressScope deletes a scope no subnet pool is in.
func (s *Service) DeleteAddressScope(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_address_scope", ifRev, func(tx *nsdb.Tx, a *AddressScope) error {
		pools, err := tx.List(SubnetPoolKind, "address_scope_id", id)
		if err != nil {
			return err
		}
		if len(pools) > 0 {
			return inUse("AddressScopeInUse", "Unable to complete operation on address scope %s. There are one or more subnet pools in use on the address scope.", id)
		}
		return tx.Delete(AddressScopeKind, id)
	})
	return err
}
