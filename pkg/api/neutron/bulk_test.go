package neutron_test

import (
	"fmt"
	"strings"
	"testing"

	externalext "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// refusal is a request Neutron refuses: its status, NeutronError type and
// a piece of its message.
type refusal struct {
	name, method, path, body string
	status                   int
	typ, msg                 string
}

// refused sends each request and checks the refusal and that it wrote
// nothing (the NSDB's revision does not move).
func (e *env) refused(cases []refusal) {
	e.t.Helper()
	for _, tc := range cases {
		before := e.rev()
		st, doc := e.raw(e.admin, tc.method, tc.path, tc.body)
		ne, _ := doc["NeutronError"].(map[string]any)
		if st != tc.status || ne["type"] != tc.typ || !strings.Contains(fmt.Sprint(ne["message"], " ", ne["detail"]), tc.msg) {
			e.t.Errorf("%s: got %d %v, want %d %s %q", tc.name, st, doc, tc.status, tc.typ, tc.msg)
		}
		if after := e.rev(); after != before {
			e.t.Errorf("%s: the refused request wrote (revision %d -> %d)", tc.name, before, after)
		}
	}
}

// TestBulkCreate: the resources Neutron creates in bulk (networks, subnets,
// ports, security groups and rules) take {"<plural>": [...]} and create
// all or nothing; the others refuse it.
func TestBulkCreate(t *testing.T) {
	e := newEnv(t)
	c := e.admin
	g, err := groups.Create(e.ctx, c, groups.CreateOpts{Name: "web"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	opts := make([]rules.CreateOpts, 3)
	for i := range opts {
		opts[i] = rules.CreateOpts{Direction: rules.DirIngress, EtherType: rules.EtherType4, SecGroupID: g.ID,
			Protocol: rules.ProtocolTCP, PortRangeMin: 8080 + i, PortRangeMax: 8080 + i, Description: fmt.Sprint("rule ", i)}
	}
	rs, err := rules.CreateBulk(e.ctx, c, opts).Extract()
	if err != nil || len(rs) != 3 {
		t.Fatalf("bulk rules: %v %v", rs, err)
	}
	for i, r := range rs {
		if r.PortRangeMin != 8080+i || r.Description != fmt.Sprint("rule ", i) || r.SecGroupID != g.ID {
			t.Errorf("rule %d: %+v", i, r)
		}
	}
	if got, err := groups.Get(e.ctx, c, g.ID).Extract(); err != nil || len(got.Rules) != 5 {
		t.Fatalf("group after the bulk: %d rules (%v), want 2 default + 3", len(got.Rules), err)
	}

	st, doc := e.raw(c, "POST", "/v2.0/networks", `{"networks": [{"name": "a"}, {"name": "b"}]}`)
	if st != 201 || len(doc["networks"].([]any)) != 2 {
		t.Fatalf("bulk networks: %d %v", st, doc)
	}
	all, err := networks.List(c, networks.ListOpts{}).AllPages(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ns, _ := networks.ExtractNetworks(all); len(ns) != 2 {
		t.Fatalf("networks after the bulk: %d", len(ns))
	}

	dup := `{"security_group_id": "` + g.ID + `", "direction": "ingress", "protocol": "udp", "port_range_min": 53, "port_range_max": 53}`
	e.refused([]refusal{
		{"one bad item refuses all", "POST", "/v2.0/security-group-rules", `{"security_group_rules": [` + dup + `, ` + dup + `]}`,
			409, "SecurityGroupRuleExists", "Security group rule already exists."},
		{"one invalid item refuses all", "POST", "/v2.0/networks", `{"networks": [{"name": "c"}, {"mtu": 9000}]}`,
			400, "InvalidInput", "Requested MTU is too big"},
		{"unknown attribute in an item", "POST", "/v2.0/ports", `{"ports": [{"network_id": "` + rs[0].ID + `", "colour": "red"}]}`,
			400, "HTTPBadRequest", "Unrecognized attribute(s) 'colour'"},
		{"empty bulk", "POST", "/v2.0/networks", `{"networks": []}`, 400, "HTTPBadRequest", "Resources required"},
		{"routers are not created in bulk", "POST", "/v2.0/routers", `{"routers": [{"name": "r"}]}`, 400, "HTTPBadRequest", "Bulk operation not supported"},
	})
}

// network creates a network (external if external) with an IPv4 subnet
// as the admin.
func (e *env) network(name, cidr string, external bool) (*networks.Network, *subnets.Subnet) {
	e.t.Helper()
	var opts networks.CreateOptsBuilder = networks.CreateOpts{Name: name}
	if external {
		opts = externalext.CreateOptsExt{CreateOptsBuilder: opts, External: &external}
	}
	n, err := networks.Create(e.ctx, e.admin, opts).Extract()
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := subnets.Create(e.ctx, e.admin, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: cidr}).Extract()
	if err != nil {
		e.t.Fatal(err)
	}
	return n, s
}
