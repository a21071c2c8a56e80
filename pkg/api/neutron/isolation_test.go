package neutron_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
)

// TestIsolation: a project sees and changes only its own resources (plus
// shared and external networks), admin-only attributes are refused to
// members, unauthenticated requests get 401, and the native API is for
// admins only.
func TestIsolation(t *testing.T) {
	e := newEnv(t)
	a, aID := e.project("alpha")
	b, bID := e.project("beta")
	admin := e.admin
	post := func(c any, path, body, key string) string {
		t.Helper()
		cl := e.admin
		switch x := c.(type) {
		case string:
			if x == "a" {
				cl = a
			} else {
				cl = b
			}
		}
		st, doc := e.raw(cl, "POST", path, body)
		if st != 201 {
			t.Fatalf("POST %s: %d %v", path, st, doc)
		}
		return doc[key].(map[string]any)["id"].(string)
	}
	ext := post(nil, "/v2.0/networks", `{"network": {"name": "public", "router:external": true}}`, "network")
	extSub := post(nil, "/v2.0/subnets", `{"subnet": {"network_id": "`+ext+`", "ip_version": 4, "cidr": "203.0.113.0/24"}}`, "subnet")
	shared := post(nil, "/v2.0/networks", `{"network": {"name": "shared", "shared": true}}`, "network")
	sharedSub := post(nil, "/v2.0/subnets", `{"subnet": {"network_id": "`+shared+`", "ip_version": 4, "cidr": "10.50.0.0/24"}}`, "subnet")

	net := post("a", "/v2.0/networks", `{"network": {"name": "alpha-net"}}`, "network")
	sub := post("a", "/v2.0/subnets", `{"subnet": {"network_id": "`+net+`", "ip_version": 4, "cidr": "10.0.0.0/24"}}`, "subnet")
	port := post("a", "/v2.0/ports", `{"port": {"network_id": "`+net+`"}}`, "port")
	router := post("a", "/v2.0/routers", `{"router": {"name": "alpha-router", "external_gateway_info": {"network_id": "`+ext+`"}}}`, "router")
	if st, doc := e.raw(a, "PUT", "/v2.0/routers/"+router+"/add_router_interface", `{"subnet_id": "`+sub+`"}`); st != 200 {
		t.Fatalf("add interface: %d %v", st, doc)
	}
	fip := post("a", "/v2.0/floatingips", `{"floatingip": {"floating_network_id": "`+ext+`", "port_id": "`+port+`"}}`, "floatingip")
	sg := post("a", "/v2.0/security-groups", `{"security_group": {"name": "alpha-sg"}}`, "security_group")
	post("b", "/v2.0/networks", `{"network": {"name": "beta-net"}}`, "network")

	ids := func(cl *gophercloud.ServiceClient, path, coll string) string {
		t.Helper()
		st, doc := e.raw(cl, "GET", path, "")
		if st != 200 {
			t.Fatalf("GET %s: %d %v", path, st, doc)
		}
		var out []string
		for _, x := range doc[coll].([]any) {
			m := x.(map[string]any)
			out = append(out, fmt.Sprint(m["name"], "@", m["project_id"]))
		}
		return strings.Join(out, " ")
	}
	// What beta sees.
	nets := ids(b, "/v2.0/networks", "networks")
	if strings.Contains(nets, "alpha") || !strings.Contains(nets, "public") || !strings.Contains(nets, "shared") || !strings.Contains(nets, "beta-net") {
		t.Errorf("beta's networks: %s", nets)
	}
	if subs := ids(b, "/v2.0/subnets", "subnets"); strings.Contains(subs, aID) || !strings.Contains(subs, "@") {
		t.Errorf("beta's subnets: %s (want the shared network's only)", subs)
	}
	st, doc := e.raw(b, "GET", "/v2.0/subnets/"+extSub, "")
	if st != 404 {
		t.Errorf("beta reads the external network's subnet: %d %v (Neutron hides subnets of unshared networks)", st, doc)
	}
	for _, coll := range []string{"ports", "routers", "floatingips", "security-groups", "security-group-rules"} {
		key := strings.ReplaceAll(coll, "-", "_")
		if got := ids(b, "/v2.0/"+coll, key); strings.Contains(got, aID) {
			t.Errorf("beta sees alpha's %s: %s", coll, got)
		}
	}
	// Beta cannot read, change or delete alpha's objects: they do not exist for it.
	for _, x := range []struct{ path, typ string }{
		{"/v2.0/networks/" + net, "NetworkNotFound"}, {"/v2.0/subnets/" + sub, "SubnetNotFound"}, {"/v2.0/ports/" + port, "PortNotFound"},
		{"/v2.0/routers/" + router, "RouterNotFound"}, {"/v2.0/floatingips/" + fip, "FloatingIPNotFound"}, {"/v2.0/security-groups/" + sg, "SecurityGroupNotFound"},
	} {
		for _, m := range []string{"GET", "DELETE"} {
			before := e.rev()
			st, doc := e.raw(b, m, x.path, "")
			if st != 404 || doc["NeutronError"].(map[string]any)["type"] != x.typ {
				t.Errorf("beta %s %s: %d %v, want 404 %s", m, x.path, st, doc, x.typ)
			}
			if e.rev() != before {
				t.Errorf("beta %s %s wrote", m, x.path)
			}
		}
	}
	if st, _ := e.raw(b, "PUT", "/v2.0/networks/"+net, `{"network": {"name": "mine"}}`); st != 404 {
		t.Errorf("beta renames alpha's network: %d", st)
	}
	if st, _ := e.raw(b, "POST", "/v2.0/ports", `{"port": {"network_id": "`+net+`"}}`); st != 404 {
		t.Errorf("beta creates a port on alpha's network: %d", st)
	}
	if st, _ := e.raw(b, "PUT", "/v2.0/routers/"+router+"/add_router_interface", `{"subnet_id": "`+sub+`"}`); st != 404 {
		t.Errorf("beta attaches to alpha's router: %d", st)
	}
	if st, _ := e.raw(b, "POST", "/v2.0/floatingips", `{"floatingip": {"floating_network_id": "`+ext+`", "port_id": "`+port+`"}}`); st != 404 {
		t.Errorf("beta points a floating IP at alpha's port: %d", st)
	}
	if st, _ := e.raw(b, "POST", "/v2.0/ports", `{"port": {"network_id": "`+net+`", "security_groups": ["`+sg+`"]}}`); st != 404 {
		t.Errorf("beta uses alpha's group: %d", st)
	}
	// The shared network: others may attach ports, not change it.
	if st, doc := e.raw(b, "POST", "/v2.0/ports", `{"port": {"network_id": "`+shared+`", "fixed_ips": [{"subnet_id": "`+sharedSub+`"}]}}`); st != 201 {
		t.Errorf("beta's port on the shared network: %d %v", st, doc)
	}
	if st, doc := e.raw(b, "PUT", "/v2.0/networks/"+shared, `{"network": {"name": "mine"}}`); st != 403 || doc["NeutronError"].(map[string]any)["type"] != "PolicyNotAuthorized" {
		t.Errorf("beta renames the shared network: %d %v, want 403", st, doc)
	}
	// A project cannot create for another.
	if st, doc := e.raw(a, "POST", "/v2.0/networks", `{"network": {"tenant_id": "`+bID+`"}}`); st != 400 || !strings.Contains(fmt.Sprint(doc), "other than the authenticated project") {
		t.Errorf("alpha creates for beta: %d %v", st, doc)
	}

	// Admin-only attributes: 403 to members, hidden from their views.
	for _, x := range []struct{ path, body, rule string }{
		{"/v2.0/networks", `{"network": {"provider:network_type": "vxlan"}}`, "create_network:provider:network_type"},
		{"/v2.0/networks", `{"network": {"router:external": true}}`, "create_network:router:external"},
		{"/v2.0/networks", `{"network": {"shared": true}}`, "create_network:shared"},
		{"/v2.0/ports", `{"port": {"network_id": "` + net + `", "binding:host_id": "compute-1"}}`, "create_port:binding:host_id"},
		{"/v2.0/ports", `{"port": {"network_id": "` + net + `", "binding:profile": {"a": 1}}}`, "create_port:binding:profile"},
		{"/v2.0/routers", `{"router": {"external_gateway_info": {"network_id": "` + ext + `", "enable_snat": false}}}`, "create_router:external_gateway_info:enable_snat"},
		{"/v2.0/floatingips", `{"floatingip": {"floating_network_id": "` + ext + `", "floating_ip_address": "203.0.113.77"}}`, "create_floatingip:floating_ip_address"},
	} {
		before := e.rev()
		st, doc := e.raw(a, "POST", x.path, x.body)
		if st != 403 || doc["NeutronError"].(map[string]any)["type"] != "PolicyNotAuthorized" || !strings.Contains(fmt.Sprint(doc), x.rule) {
			t.Errorf("member POST %s %s: %d %v, want 403 naming %s", x.path, x.body, st, doc, x.rule)
		}
		if e.rev() != before {
			t.Errorf("refused POST %s wrote", x.path)
		}
	}
	_, doc = e.raw(a, "GET", "/v2.0/ports/"+port, "")
	if p := doc["port"].(map[string]any); p["binding:host_id"] != nil || p["binding:vif_type"] != nil || p["binding:vnic_type"] != "normal" {
		t.Errorf("member's view of a port shows admin attributes: %v", p)
	}
	_, doc = e.raw(a, "GET", "/v2.0/networks/"+net, "")
	if n := doc["network"].(map[string]any); n["provider:network_type"] != nil {
		t.Errorf("member's view of a network shows provider attributes: %v", n)
	}
	_, doc = e.raw(admin, "GET", "/v2.0/ports/"+port, "")
	if p := doc["port"].(map[string]any); p["binding:vif_type"] != "unbound" {
		t.Errorf("admin's view of a port lacks binding attributes: %v", p)
	}
	if st, _ := e.raw(a, "GET", "/v2.0/networks?provider:network_type=vxlan", ""); st != 400 {
		t.Errorf("member filters on an admin-only attribute: %d, want 400", st)
	}
	// Admins see every project's objects.
	if got := ids(admin, "/v2.0/networks", "networks"); !strings.Contains(got, aID) || !strings.Contains(got, bID) {
		t.Errorf("admin's networks: %s", got)
	}

	// Unauthenticated and badly authenticated requests.
	st, doc = e.raw(nil, "GET", "/v2.0/networks", "")
	if st != 401 || fmt.Sprint(doc["error"]) == "" {
		t.Errorf("no token: %d %v", st, doc)
	}
	req := "/v2.0/networks"
	st, _ = e.raw(nil, "GET", req, "", "X-Auth-Token", "ngr1.forged.token")
	if st != 401 {
		t.Errorf("forged token: %d", st)
	}
	// The native API is the operators': admin only.
	if st, _ := e.raw(a, "GET", "/api/v1/bridges", ""); st != 403 {
		t.Errorf("member on the native API: %d, want 403", st)
	}
	if st, _ := e.raw(nil, "GET", "/api/v1/bridges", ""); st != 401 {
		t.Errorf("no token on the native API: %d, want 401", st)
	}
	if st, _ := e.raw(admin, "GET", "/api/v1/bridges", ""); st != 200 {
		t.Errorf("admin on the native API: %d, want 200", st)
	}

	// A reader may look, not touch.
	u, err := users.Create(e.ctx, e.identity, users.CreateOpts{Name: "auditor", Password: "pw-auditor"}).Extract()
	must(t, err)
	rs, _ := roles.List(e.identity, roles.ListOpts{Name: "reader"}).AllPages(e.ctx)
	reader, _ := roles.ExtractRoles(rs)
	alpha, err := projects.Get(e.ctx, e.identity, aID).Extract()
	must(t, err)
	must(t, roles.Assign(e.ctx, e.identity, reader[0].ID, roles.AssignOpts{UserID: u.ID, ProjectID: alpha.ID}).ExtractErr())
	r, _ := e.login("auditor", "pw-auditor", "alpha")
	if got := ids(r, "/v2.0/networks", "networks"); !strings.Contains(got, "alpha-net") {
		t.Errorf("reader's networks: %s", got)
	}
	st, doc = e.raw(r, "POST", "/v2.0/networks", `{"network": {"name": "nope"}}`)
	if st != 403 {
		t.Errorf("reader creates a network: %d %v", st, doc)
	}
}
