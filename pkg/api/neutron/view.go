package neutron

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// Views: objects as Neutron shows them. Each resource's view<Resource>
// builds a map (so filters, sorting and fields work on any attribute) for
// one caller, hiding what only admins see; a viewer carries the caller and
// the domain's reader, which answers what a view needs besides the object
// (a port's network, a network's subnets, a group's rules).

// viewer renders objects for one caller within one snapshot.
type viewer struct {
	*neutron.Reader
	admin bool
}

func newViewer(r *neutron.Reader) *viewer { return &viewer{Reader: r, admin: r.Caller().IsAdmin()} }

// viewAs adapts a typed view to the resource table.
func viewAs[T model.Object](f func(*viewer, T) map[string]any) func(*viewer, model.Object) map[string]any {
	return func(v *viewer, o model.Object) map[string]any { return f(v, o.(T)) }
}

// stdView is the standard attributes.
func stdView(st *neutron.Std, withName bool) map[string]any {
	tags := st.Tags
	if tags == nil {
		tags = []string{}
	}
	// Sized for the largest views (a port has ~30 attributes), so that
	// adding a resource's own attributes never grows the map: a 10,000-port
	// list made 20,000 map growths.
	m := make(map[string]any, 32)
	m["id"], m["tenant_id"], m["project_id"], m["description"] = st.ID, st.ProjectID, st.ProjectID, st.Description
	m["tags"], m["created_at"], m["updated_at"], m["revision_number"] = tags, st.CreatedAt, st.UpdatedAt, st.RevisionNumber
	if withName {
		m["name"] = st.Name
	}
	return m
}

func addrOrNil(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// routesView is a subnet's host routes or a router's static routes.
func routesView(routes []neutron.Route) []map[string]string {
	out := make([]map[string]string, len(routes))
	for i, r := range routes {
		out[i] = map[string]string{"destination": r.Destination.String(), "nexthop": r.NextHop.String()}
	}
	return out
}

// fixedIPsView is a port's fixed_ips (and a gateway's external_fixed_ips).
func fixedIPsView(ips []neutron.FixedIP) []map[string]string {
	out := make([]map[string]string, len(ips))
	for i, f := range ips {
		out[i] = map[string]string{"subnet_id": f.SubnetID, "ip_address": f.IPAddress.String()}
	}
	return out
}

// nonNil is a list as Neutron shows it: [] rather than null.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
