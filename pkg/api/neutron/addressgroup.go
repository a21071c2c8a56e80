package neutron

import (
	"net/http"
	"net/netip"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Address groups (address-group): CRUD and PUT add_addresses and
// remove_addresses.

var addressGroupAttrs = std.with(attrs{
	"name":      {post: true, put: true},
	"addresses": {post: true},
	"shared":    {},
})

func init() { delete(addressGroupAttrs, "tags") } // address groups have no tags

func decodeAddressGroup(b Body, _ *identity.Context, _ bool) (neutron.AddressGroupRequest, error) {
	var r neutron.AddressGroupRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if b.has("addresses") {
		ps, err := addresses(b)
		if err != nil {
			return r, err
		}
		r.Addresses = &ps
	}
	return r, nil
}

// addresses reads addresses: prefixes or single addresses, host bits
// allowed (the group masks them, as Neutron does).
func addresses(b Body) ([]netip.Prefix, error) {
	var raw []string
	if _, err := b.raw("addresses", &raw, "not a list of IP addresses or prefixes"); err != nil {
		return nil, err
	}
	out := []netip.Prefix{}
	for _, s := range raw {
		p, err := parsePrefixLoose(s)
		if err != nil {
			return nil, invalid("addresses", "'%s' is not a valid IP subnet", s)
		}
		out = append(out, p)
	}
	return out, nil
}

func viewAddressGroup(_ *viewer, x *neutron.AddressGroup) map[string]any {
	m := stdView(&x.Std, true)
	delete(m, "tags")
	m["addresses"], m["shared"] = prefixTexts(x.Addresses), x.Shared
	return m
}

// registerAddressGroupActions adds add_addresses and remove_addresses:
// {"addresses": [...]} in, {"address_group": {...}} out.
func (a *API) registerAddressGroupActions(mux *http.ServeMux) {
	for _, add := range []bool{true, false} {
		name := "remove_addresses"
		if add {
			name = "add_addresses"
		}
		a.action(mux, "address-groups/{id}/"+name, func(r *http.Request, c *identity.Context, id string, b Body) (any, error) {
			for k := range b {
				if k != "addresses" {
					return nil, neutron.HTTPBadRequest("Unrecognized attribute(s) '%s'", k)
				}
			}
			if !b.has("addresses") {
				return nil, neutron.HTTPBadRequest("Unable to find 'addresses' in request body")
			}
			ps, err := addresses(b)
			if err != nil {
				return nil, err
			}
			g, err := a.svc.ChangeAddresses(r.Context(), c, id, ps, add)
			if err != nil {
				return nil, err
			}
			m, err := a.viewOne(r, a.resource("address_group"), g)
			return map[string]any{"address_group": m}, err
		})
	}
}
