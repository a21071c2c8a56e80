package neutron

import (
	"net/http"
	"net/netip"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Address scopes and subnet pools (address-scope, subnet_allocation,
// subnetpool-prefix-ops, default-subnetpools).

var scopeAttrs = attrs{
	"id":         {},
	"tenant_id":  {post: true},
	"project_id": {post: true},
	"name":       {post: true, put: true},
	"shared":     {post: true, put: true, adminSet: true},
	"ip_version": {post: true, required: true},
}

func decodeAddressScope(b Body, _ *identity.Context, post bool) (neutron.AddressScopeRequest, error) {
	var r neutron.AddressScopeRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.IPVersion, err = ipVersion(b); err != nil {
			return r, err
		}
	}
	r.Shared, err = b.optBool("shared")
	return r, err
}

// ipVersion reads ip_version: 4 or 6.
func ipVersion(b Body) (int, error) {
	v, _, _, err := b.integer("ip_version")
	if err != nil {
		return 0, err
	}
	if v != 4 && v != 6 {
		return 0, invalid("ip_version", "'%s' is not in [4, 6]", rawText(b["ip_version"]))
	}
	return v, nil
}

func viewAddressScope(_ *viewer, x *neutron.AddressScope) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name,
		"shared": x.Shared, "ip_version": x.IPVersion}
}

var poolAttrs = std.with(attrs{
	"name":              {post: true, put: true},
	"prefixes":          {post: true, put: true, required: true},
	"default_prefixlen": {post: true, put: true},
	"min_prefixlen":     {post: true, put: true},
	"max_prefixlen":     {post: true, put: true},
	"default_quota":     {post: true, put: true},
	"ip_version":        {},
	"shared":            {post: true, adminSet: true},
	"is_default":        {post: true, put: true, adminSet: true},
	"address_scope_id":  {post: true, put: true},
})

func decodeSubnetPool(b Body, _ *identity.Context, _ bool) (neutron.SubnetPoolRequest, error) {
	var r neutron.SubnetPoolRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if b.has("prefixes") {
		ps, err := prefixes(b, "prefixes")
		if err != nil {
			return r, err
		}
		r.Prefixes = &ps
	}
	for _, f := range []struct {
		name string
		dst  **int
	}{{"default_prefixlen", &r.DefaultPrefixLen}, {"min_prefixlen", &r.MinPrefixLen}, {"max_prefixlen", &r.MaxPrefixLen}} {
		n, null, ok, err := b.integer(f.name)
		if err != nil {
			return r, err
		}
		if ok && !null {
			if n < 0 {
				return r, invalid(f.name, "'%d' should be non-negative", n)
			}
			*f.dst = &n
		}
	}
	if n, null, ok, err := b.integer("default_quota"); err != nil {
		return r, err
	} else if ok {
		var q *int
		if !null {
			if n < 0 {
				return r, invalid("default_quota", "'%d' should be non-negative", n)
			}
			q = &n
		}
		r.DefaultQuota = &q
	}
	if r.Shared, err = b.optBool("shared"); err != nil {
		return r, err
	}
	if r.IsDefault, err = b.optBool("is_default"); err != nil {
		return r, err
	}
	if b.has("address_scope_id") {
		id := ""
		if !b.isNull("address_scope_id") {
			if id, _, err = b.uuid("address_scope_id"); err != nil {
				return r, err
			}
		}
		r.AddressScopeID = &id
	}
	return r, nil
}

// prefixes reads a list of subnets (Neutron's type:subnet_list).
func prefixes(b Body, name string) ([]netip.Prefix, error) {
	var raw []string
	if _, err := b.raw(name, &raw, "not a list of subnets"); err != nil {
		return nil, err
	}
	out := []netip.Prefix{}
	for _, s := range raw {
		p, err := parseCIDR(s)
		if err != nil {
			return nil, invalid(name, "%s", err.Error())
		}
		out = append(out, p)
	}
	return out, nil
}

func prefixTexts(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func viewSubnetPool(_ *viewer, x *neutron.SubnetPool) map[string]any {
	m := stdView(&x.Std, true)
	m["prefixes"], m["ip_version"] = prefixTexts(x.Prefixes), x.IPVersion
	m["default_prefixlen"], m["min_prefixlen"], m["max_prefixlen"] = x.DefaultPrefixLen, x.MinPrefixLen, x.MaxPrefixLen
	m["default_quota"] = intOrNil(x.DefaultQuota)
	m["shared"], m["is_default"], m["address_scope_id"] = x.Shared, x.IsDefault, strOrNil(x.AddressScopeID)
	return m
}

// registerPoolActions adds PUT add_prefixes and remove_prefixes:
// {"prefixes": [...]} in and out.
func (a *API) registerPoolActions(mux *http.ServeMux) {
	for _, add := range []bool{true, false} {
		name := "remove_prefixes"
		if add {
			name = "add_prefixes"
		}
		a.action(mux, "subnetpools/{id}/"+name, func(r *http.Request, c *identity.Context, id string, b Body) (any, error) {
			for k := range b {
				if k != "prefixes" {
					return nil, neutron.HTTPBadRequest("Unrecognized attribute(s) '%s'", k)
				}
			}
			ps, err := prefixes(b, "prefixes")
			if err != nil {
				return nil, err
			}
			out, err := a.svc.ChangePoolPrefixes(r.Context(), c, id, ps, add)
			return map[string]any{"prefixes": prefixTexts(out)}, err
		})
	}
}
