package neutron

// Attribute maps: which attributes a resource has, which a POST or a PUT
// may set, which only admins may set or see. Like Neutron's API layer, the
// API refuses a request the map refuses before it decodes anything.

import (
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// attr describes one attribute of a resource the way Neutron's attribute
// maps do: whether POST and PUT may set it, whether POST requires it, and
// the attribute-level policy around it (oslo.policy rules such as
// create_network:shared, which Neutron enforces in its API layer too).
type attr struct {
	post, put bool
	required  bool // POST must carry it
	// adminSet: only admins may set it (provider:*, binding:host_id,
	// router:external, shared, …); others get 403.
	adminSet bool
	// adminPut: only admins may change it (a port's mac_address).
	adminPut bool
	// adminView: only admins see it (provider:*, binding:* but vnic_type).
	adminView bool
}

// attrs is a resource's attribute map.
type attrs map[string]attr

// std are the attributes of every resource with standard attributes.
var std = attrs{
	"id":              {},
	"tenant_id":       {post: true},
	"project_id":      {post: true},
	"description":     {post: true, put: true},
	"tags":            {post: true},
	"created_at":      {},
	"updated_at":      {},
	"revision_number": {},
}

// with is the map with more attributes.
func (s attrs) with(more attrs) attrs {
	out := maps.Clone(s)
	maps.Copy(out, more)
	return out
}

// check applies the attribute map to a request: unknown attributes and
// attributes the method may not set are refused as Neutron's API layer
// refuses them (400), admin-only ones with the policy engine's 403.
func (s attrs) check(b Body, post bool, c *identity.Context, resource string) error {
	var unknown []string
	for k := range b {
		if _, ok := s[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return neutron.HTTPBadRequest("Unrecognized attribute(s) '%s'", strings.Join(unknown, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		a := s[k]
		switch {
		case post && !a.post:
			return neutron.HTTPBadRequest("Attribute '%s' not allowed in POST", k)
		case !post && !a.put:
			return neutron.HTTPBadRequest("Cannot update read-only attribute %s", k)
		}
		if (a.adminSet || (a.adminPut && !post)) && !c.IsAdmin() {
			return neutron.PolicyNotAuthorized(verb(post) + "_" + resource + ":" + k)
		}
	}
	if post {
		for _, k := range slices.Sorted(maps.Keys(s)) {
			if s[k].required {
				if _, ok := b[k]; !ok {
					return neutron.HTTPBadRequest("Failed to parse request. Required attribute '%s' not specified", k)
				}
			}
		}
	}
	return nil
}

// attribute reports whether name is an attribute (for filters, fields and
// sort keys), and whether the caller may see it.
func (s attrs) attribute(name string, c *identity.Context) (exists, visible bool) {
	a, ok := s[name]
	if !ok {
		return false, false
	}
	return true, !a.adminView || c.IsAdmin()
}

// verb names a write in policy actions.
func verb(post bool) string {
	if post {
		return "create"
	}
	return "update"
}
