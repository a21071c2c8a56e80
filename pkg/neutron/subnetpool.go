package neutron

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Subnet pools (subnet_allocation, subnetpool-prefix-ops,
// default-subnetpools): prefixes that subnets of any network are carved
// from, never twice. A pool may belong to an address scope, whose pools
// never overlap. Like address scopes they have no native form.

// SubnetPool is a Neutron subnet pool.
type SubnetPool struct {
	Std
	IPVersion        int            `json:"ip_version"`
	Prefixes         []netip.Prefix `json:"prefixes"`
	DefaultPrefixLen int            `json:"default_prefixlen"`
	MinPrefixLen     int            `json:"min_prefixlen"`
	MaxPrefixLen     int            `json:"max_prefixlen"`
	// DefaultQuota caps a project's allocations, in addresses (IPv4) or
	// /64s (IPv6); nil: none.
	DefaultQuota   *int   `json:"default_quota,omitempty"`
	Shared         bool   `json:"shared"`
	IsDefault      bool   `json:"is_default"`
	AddressScopeID string `json:"address_scope_id,omitempty" nagare:"ref=neutron-address-scope,ondelete=restrict"`
	// DefaultFamily ("4", "6") is set on the default pool of a family: one
	// per family.
	DefaultFamily string `json:"default_family,omitempty" nagare:"unique"`
}

func (p *SubnetPool) shared() bool     { return p.Shared }
func (p *SubnetPool) setShared(v bool) { p.Shared = v }

var SubnetPoolKind = model.RegisterInternal("neutron-subnetpool", "neutron-subnetpools", "A Neutron subnet pool.", &SubnetPool{}, nil)

// SubnetPoolRequest is what a create or update of a pool asks.
type SubnetPoolRequest struct {
	StdRequest
	Prefixes                                     *[]netip.Prefix
	DefaultPrefixLen, MinPrefixLen, MaxPrefixLen *int
	DefaultQuota                                 **int // non-nil: given (a nil *int: null)
	Shared                                       *bool // create only
	IsDefault                                    *bool
	AddressScopeID                               *string // "": none
}

// maxBits is the longest prefix of a family.
func maxBits(ver int) int {
	if ver == 6 {
		return 128
	}
	return 32
}

// compact merges overlapping and adjacent prefixes (netaddr's
// IPSet.compact), in order.
func compact(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	for changed := true; changed; {
		changed = false
		slices.SortFunc(out, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		for i := 0; i+1 < len(out); i++ {
			a, b := out[i], out[i+1]
			switch {
			case a.Overlaps(b): // the shorter one holds the other
				if b.Bits() < a.Bits() {
					out[i] = b
				}
				out = slices.Delete(out, i+1, i+2)
				changed = true
			case a.Bits() == b.Bits() && a.Bits() > 0:
				if parent := netip.PrefixFrom(a.Addr(), a.Bits()-1).Masked(); parent.Addr() == a.Addr() && lastAddr(parent) == lastAddr(b) {
					out[i] = parent
					out = slices.Delete(out, i+1, i+2)
					changed = true
				}
			}
			if changed {
				break
			}
		}
	}
	return out
}

// covers reports whether prefixes cover p entirely.
func covers(ps []netip.Prefix, p netip.Prefix) bool {
	return slices.ContainsFunc(compact(ps), func(x netip.Prefix) bool { return x.Bits() <= p.Bits() && x.Contains(p.Addr()) })
}

func overlapsAny(ps []netip.Prefix, p netip.Prefix) bool {
	return slices.ContainsFunc(ps, p.Overlaps)
}

// apply checks and sets what a create or an update asks, as Neutron's
// SubnetPoolReader does.
func (r *SubnetPoolRequest) apply(p *SubnetPool, fresh bool) error {
	r.StdRequest.apply(&p.Std)
	if r.Prefixes != nil {
		ps := *r.Prefixes
		if len(ps) == 0 {
			return NewError(BadRequest, "EmptySubnetPoolPrefixList", "Empty subnet pool prefix list.")
		}
		for _, x := range ps[1:] {
			if x.Addr().Is4() != ps[0].Addr().Is4() {
				return NewError(BadRequest, "PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
			}
		}
		ver := 6
		if ps[0].Addr().Is4() {
			ver = 4
		}
		if !fresh {
			if ver != p.IPVersion {
				return NewError(BadRequest, "PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
			}
			for _, old := range p.Prefixes {
				if !covers(ps, old) {
					return NewError(BadRequest, "IllegalSubnetPoolPrefixUpdate", "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.")
				}
			}
		}
		p.IPVersion, p.Prefixes = ver, compact(ps)
	}
	if fresh {
		p.MinPrefixLen, p.MaxPrefixLen = 8, 32
		if p.IPVersion == 6 {
			p.MinPrefixLen, p.MaxPrefixLen = 64, 128
		}
		p.DefaultPrefixLen = -1
	}
	set(&p.MinPrefixLen, r.MinPrefixLen)
	set(&p.MaxPrefixLen, r.MaxPrefixLen)
	set(&p.DefaultPrefixLen, r.DefaultPrefixLen)
	if p.DefaultPrefixLen < 0 {
		p.DefaultPrefixLen = p.MinPrefixLen
	}
	bounds := func(typ string, n int, base string, b int) error {
		return NewError(BadRequest, "IllegalSubnetPoolPrefixBounds", "Illegal prefix bounds: %s=%d, %s=%d.", typ, n, base, b)
	}
	switch {
	case p.MinPrefixLen < 0:
		return NewError(BadRequest, "UnsupportedMinSubnetPoolPrefix", "Prefix '%d' not supported in IPv%d pool.", p.MinPrefixLen, p.IPVersion)
	case p.MinPrefixLen > p.MaxPrefixLen:
		return bounds("min_prefixlen", p.MinPrefixLen, "max_prefixlen", p.MaxPrefixLen)
	case p.MaxPrefixLen > maxBits(p.IPVersion):
		return bounds("max_prefixlen", p.MaxPrefixLen, "ip_version_max", maxBits(p.IPVersion))
	case p.DefaultPrefixLen < p.MinPrefixLen:
		return bounds("default_prefixlen", p.DefaultPrefixLen, "min_prefixlen", p.MinPrefixLen)
	case p.DefaultPrefixLen > p.MaxPrefixLen:
		return bounds("default_prefixlen", p.DefaultPrefixLen, "max_prefixlen", p.MaxPrefixLen)
	}
	if r.DefaultQuota != nil {
		p.DefaultQuota = *r.DefaultQuota
	}
	set(&p.IsDefault, r.IsDefault)
	p.DefaultFamily = ""
	if p.IsDefault {
		p.DefaultFamily = fmt.Sprint(p.IPVersion)
	}
	set(&p.AddressScopeID, r.AddressScopeID)
	return nil
}

// checkPool checks a pool's default flag and address scope against the
// other pools (Neutron's _check_default_subnetpool_exists and
// _validate_address_scope_id).
func (s *Service) checkPool(tx *nsdb.Tx, c *identity.Context, p *SubnetPool, wasDefault bool) error {
	if p.IsDefault && !wasDefault {
		owner, err := tx.UniqueOwner(SubnetPoolKind, SubnetPoolKind.Field("default_family"), "", p.DefaultFamily)
		if err != nil {
			return err
		}
		if owner != "" && owner != p.ID {
			return InvalidInput("A default subnetpool for this IP family has already been set. Only one default may exist per IP family")
		}
	}
	if p.AddressScopeID == "" {
		return nil
	}
	a, err := get[*AddressScope](tx, c, p.AddressScopeID)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Class == NotFound {
			return NewError(BadRequest, "IllegalSubnetPoolAssociationToAddressScope", "Illegal subnetpool association: subnetpool %s cannot be associated with address scope %s.", p.ID, p.AddressScopeID)
		}
		return err
	}
	if a.IPVersion != p.IPVersion {
		return NewError(BadRequest, "IllegalSubnetPoolIpVersionAssociationToAddressScope", "Illegal subnetpool association: subnetpool %s cannot associate with address scope %s because subnetpool ip_version is not %d.", p.ID, a.ID, a.IPVersion)
	}
	others, err := listOf[*SubnetPool](tx, "address_scope_id", a.ID)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID == p.ID {
			continue
		}
		for _, x := range p.Prefixes {
			if overlapsAny(o.Prefixes, x) {
				return conflict("AddressScopePrefixConflict", "Failed to associate address scope: subnetpools within an address scope must have unique prefixes.")
			}
		}
	}
	return nil
}

// CreateSubnetPool creates a subnet pool.
func (s *Service) CreateSubnetPool(ctx context.Context, c *identity.Context, r SubnetPoolRequest) (*SubnetPool, error) {
	cr, err := s.PrepareSubnetPool(c, r)
	return created[*SubnetPool](ctx, s, cr, err)
}

// PrepareSubnetPool checks a subnet pool's create.
func (s *Service) PrepareSubnetPool(c *identity.Context, r SubnetPoolRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_subnetpool")
	if err != nil {
		return nil, err
	}
	if r.Prefixes == nil {
		return nil, HTTPBadRequest("Failed to parse request. Required attribute 'prefixes' not specified")
	}
	p := &SubnetPool{Std: st}
	if err := r.apply(p, true); err != nil {
		return nil, err
	}
	shared, _ := deref(r.Shared)
	return creation(st.ProjectID, "subnetpool", func(tx *nsdb.Tx) (model.Object, error) {
		x := *p
		x.ID = newID()
		if err := s.checkPool(tx, c, &x, false); err != nil {
			return nil, err
		}
		if _, err := tx.Create(&x); err != nil {
			return nil, err
		}
		if shared {
			if err := s.setWildcard(tx, "subnetpool", x.ID, x.ProjectID, AccessShared, true); err != nil {
				return nil, err
			}
			x.Shared = true
		}
		return &x, nil
	}), nil
}

// UpdateSubnetPool changes a pool: prefixes may only grow, bounds must
// hold, a pool in another project's shared address scope does not change.
func (s *Service) UpdateSubnetPool(ctx context.Context, c *identity.Context, id string, r SubnetPoolRequest, ifRev int64) (*SubnetPool, error) {
	return modify(ctx, s, c, id, "update_subnetpool", ifRev, func(tx *nsdb.Tx, p *SubnetPool) error {
		if p.AddressScopeID != "" && !c.IsAdmin() {
			o, err := tx.Get(AddressScopeKind, p.AddressScopeID)
			if err != nil {
				return err
			}
			if o.(*AddressScope).ProjectID != c.ProjectID {
				return NewError(BadRequest, "IllegalSubnetPoolUpdate", "Illegal subnetpool update : subnetpool %s cannot be updated when associated with shared address scope %s.", id, p.AddressScopeID)
			}
		}
		was := *p
		if err := r.apply(p, false); err != nil {
			return err
		}
		if err := s.checkPool(tx, c, p, was.IsDefault); err != nil {
			return err
		}
		s.touch(&p.Std)
		return tx.Put(p)
	})
}

// ChangePoolPrefixes adds prefixes to a pool or removes them
// (subnetpool-prefix-ops); a prefix a subnet uses stays.
func (s *Service) ChangePoolPrefixes(ctx context.Context, c *identity.Context, id string, prefixes []netip.Prefix, add bool) ([]netip.Prefix, error) {
	action := "remove_prefixes"
	if add {
		action = "add_prefixes"
	}
	p, err := modify(ctx, s, c, id, action, 0, func(tx *nsdb.Tx, p *SubnetPool) error {
		if len(prefixes) == 0 {
			return nil
		}
		for _, x := range prefixes {
			if x.Addr().Is4() != (p.IPVersion == 4) {
				return NewError(BadRequest, "PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
			}
		}
		var next []netip.Prefix
		if add {
			next = append(slices.Clone(p.Prefixes), prefixes...)
		} else {
			subs, err := listOf[*Subnet](tx, "subnetpool_id", id)
			if err != nil {
				return err
			}
			for _, sub := range subs {
				if overlapsAny(prefixes, sub.CIDR) {
					return NewError(BadRequest, "IllegalSubnetPoolPrefixUpdate", "Illegal update to prefixes: One or more the prefixes to be removed is in use by a subnet.")
				}
			}
			next = subtract(p.Prefixes, prefixes)
			if len(next) == 0 {
				return NewError(BadRequest, "EmptySubnetPoolPrefixList", "Empty subnet pool prefix list.")
			}
		}
		p.Prefixes = compact(next)
		if err := s.checkPool(tx, c, p, p.IsDefault); err != nil {
			return err
		}
		s.touch(&p.Std)
		return tx.Put(p)
	})
	if err != nil {
		return nil, err
	}
	return p.Prefixes, nil
}

// subtract is have without the addresses of gone, as prefixes.
func subtract(have, gone []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	var cut func(p netip.Prefix)
	cut = func(p netip.Prefix) {
		if covers(gone, p) {
			return
		}
		if !overlapsAny(gone, p) {
			out = append(out, p)
			return
		}
		lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
		cut(lo)
		cut(netip.PrefixFrom(lastAddr(lo).Next(), p.Bits()+1))
	}
	for _, p := range have {
		cut(p)
	}
	return out
}

// DeleteSubnetPool deletes a pool no subnet came from.
func (s *Service) DeleteSubnetPool(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_subnetpool", ifRev, func(tx *nsdb.Tx, p *SubnetPool) error {
		subs, err := tx.List(SubnetKind, "subnetpool_id", id)
		if err != nil {
			return err
		}
		if len(subs) > 0 {
			return NewError(BadRequest, "SubnetPoolDeleteError", "Unable to delete subnet pool: Subnet pool has existing allocations.")
		}
		pols, err := rbacPolicies(tx, "subnetpool", id)
		if err != nil {
			return err
		}
		for _, x := range pols {
			if err := tx.Delete(RBACPolicyKind, x.ID); err != nil {
				return err
			}
		}
		return tx.Delete(SubnetPoolKind, id)
	})
	return err
}

// quotaUnits is what a prefix counts against a pool's quota: addresses
// (IPv4) or /64s (IPv6).
func quotaUnits(p netip.Prefix) *big.Int {
	unit := 32
	if !p.Addr().Is4() {
		unit = 64
	}
	if p.Bits() >= unit {
		return big.NewInt(1)
	}
	return new(big.Int).Lsh(big.NewInt(1), uint(unit-p.Bits()))
}

// allocateFromPool picks or checks a new subnet's prefix in its pool
// (Neutron's SubnetAllocator): a requested CIDR must lie in the pool's
// prefixes and overlap none of its subnets; otherwise the first free
// prefix of the requested length (the pool's default). The length must
// be within the pool's bounds, and the project within its quota.
func (s *Service) allocateFromPool(tx *nsdb.Tx, p *SubnetPool, sub *Subnet, prefixLen int) error {
	if sub.IPVersion != p.IPVersion {
		return BadResourceRequest("subnets", "Cannot allocate IPv%d subnet from IPv%d subnet pool", sub.IPVersion, p.IPVersion)
	}
	if sub.CIDR.IsValid() {
		prefixLen = sub.CIDR.Bits()
	} else if prefixLen == 0 {
		prefixLen = p.DefaultPrefixLen
	}
	switch {
	case prefixLen > p.MaxPrefixLen:
		return NewError(BadRequest, "MaxPrefixSubnetAllocationError", "Unable to allocate subnet with prefix length %d, maximum allowed prefix is %d.", prefixLen, p.MaxPrefixLen)
	case prefixLen < p.MinPrefixLen:
		return NewError(BadRequest, "MinPrefixSubnetAllocationError", "Unable to allocate subnet with prefix length %d, minimum allowed prefix is %d.", prefixLen, p.MinPrefixLen)
	}
	used, err := listOf[*Subnet](tx, "subnetpool_id", p.ID)
	if err != nil {
		return err
	}
	if p.DefaultQuota != nil {
		total := quotaUnits(netip.PrefixFrom(p.Prefixes[0].Addr(), prefixLen))
		for _, u := range used {
			if u.ProjectID == sub.ProjectID {
				total.Add(total, quotaUnits(u.CIDR))
			}
		}
		if total.Cmp(big.NewInt(int64(*p.DefaultQuota))) > 0 {
			return conflict("SubnetPoolQuotaExceeded", "Per-project subnet pool prefix quota exceeded.")
		}
	}
	var taken []netip.Prefix
	for _, u := range used {
		taken = append(taken, u.CIDR)
	}
	if sub.CIDR.IsValid() {
		if !covers(p.Prefixes, sub.CIDR) || overlapsAny(taken, sub.CIDR) {
			return conflict("SubnetAllocationError", "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.")
		}
		return nil
	}
	for _, free := range subtract(p.Prefixes, taken) {
		if free.Bits() <= prefixLen {
			sub.CIDR = netip.PrefixFrom(free.Addr(), prefixLen)
			return nil
		}
	}
	return conflict("SubnetAllocationError", "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /%d.", prefixLen)
}

// AddressScope is the address scope of a network's subnets of an IP
// version: that of the pool they came from ("" none).
func (r *Reader) AddressScope(netID string, ver int) string {
	for _, id := range r.SubnetIDs(netID) {
		sub := lookup[*Subnet](r, id)
		if sub == nil || sub.IPVersion != ver || sub.SubnetPoolID == "" {
			continue
		}
		if p := lookup[*SubnetPool](r, sub.SubnetPoolID); p != nil {
			return p.AddressScopeID
		}
	}
	return ""
}
