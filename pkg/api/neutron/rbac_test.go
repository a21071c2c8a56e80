package neutron_test

import (
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/rbacpolicies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// TestRBACPolicies: an owner shares a network with one project
// (access_as_shared): that project sees it and its subnet and makes ports
// on it, a third project does not; the policy cannot go while the port
// needs it; access_as_external makes a network external for its target;
// a security group shared the same way is usable on the target's ports.
func TestRBACPolicies(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	owner, _ := e.project("owner")
	guest, guestID := e.project("guest")
	other, _ := e.project("other")

	n, err := networks.Create(ctx, owner, networks.CreateOpts{Name: "lent"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, owner, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.40.0.0/24"}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := networks.Get(ctx, guest, n.ID).Extract(); err == nil {
		t.Fatal("guest sees the network before it is shared")
	}
	pol, err := rbacpolicies.Create(ctx, owner, rbacpolicies.CreateOpts{Action: rbacpolicies.ActionAccessShared, ObjectType: "network",
		TargetTenant: guestID, ObjectID: n.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, err := networks.Get(ctx, guest, n.ID).Extract()
	if err != nil || !got.Shared || len(got.Subnets) != 1 {
		t.Fatalf("guest's view of the shared network: %+v %v", got, err)
	}
	if own, _ := networks.Get(ctx, owner, n.ID).Extract(); own == nil || own.Shared {
		t.Errorf("the owner's view says shared (no wildcard policy): %+v", own)
	}
	if _, err := networks.Get(ctx, other, n.ID).Extract(); err == nil {
		t.Error("a third project sees the network")
	}
	p, err := ports.Create(ctx, guest, ports.CreateOpts{NetworkID: n.ID}).Extract()
	if err != nil || len(p.FixedIPs) != 1 {
		t.Fatalf("guest's port on the shared network: %+v %v", p, err)
	}
	if _, err := ports.Create(ctx, other, ports.CreateOpts{NetworkID: n.ID}).Extract(); err == nil {
		t.Error("a third project made a port on the network")
	}
	if _, err := rbacpolicies.Get(ctx, guest, pol.ID).Extract(); err == nil {
		t.Error("the target sees the owner's policy")
	}
	// (The admin's project exists before the refusals: a project's first
	// create writes its default security group, as Neutron's does.)
	ext, err := networks.Create(ctx, e.admin, networks.CreateOpts{Name: "ext-for-guest"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	refusals := []refusal{
		{"policy the port depends on", "DELETE", "/v2.0/rbac-policies/" + pol.ID, "", 409, "RbacPolicyInUse", "Multiple tenants are using it"},
		{"retarget the policy the port depends on", "PUT", "/v2.0/rbac-policies/" + pol.ID, `{"rbac_policy": {"target_tenant": "` + "0123456789abcdef0123456789abcdef" + `"}}`, 409, "RbacPolicyInUse", "cannot be removed because other objects depend on it"},
		{"duplicate policy", "POST", "/v2.0/rbac-policies", `{"rbac_policy": {"object_type": "network", "object_id": "` + n.ID + `", "action": "access_as_shared", "target_tenant": "` + guestID + `"}}`, 409, "DuplicateRbacPolicy", "An RBAC policy already exists with those values."},
		{"target project missing", "POST", "/v2.0/rbac-policies", `{"rbac_policy": {"object_type": "network", "object_id": "` + n.ID + `", "action": "access_as_shared"}}`, 400, "HTTPBadRequest", "Required attribute 'target_tenant' not specified"},
		{"target project not an id", "POST", "/v2.0/rbac-policies", `{"rbac_policy": {"object_type": "network", "object_id": "` + n.ID + `", "action": "access_as_shared", "target_tenant": "somebody"}}`, 400, "InvalidInput", "'somebody' is not a valid target project ID; expected a UUID or '*'"},
		{"unknown object type", "POST", "/v2.0/rbac-policies", `{"rbac_policy": {"object_type": "router", "object_id": "` + n.ID + `", "action": "access_as_shared", "target_tenant": "*"}}`, 400, "InvalidInput", "'router' is not a valid RBAC object type"},
		{"action of another type", "POST", "/v2.0/rbac-policies", `{"rbac_policy": {"object_type": "security_group", "object_id": "` + n.ID + `", "action": "access_as_external", "target_tenant": "*"}}`, 400, "RbacPolicyInitError", "Invalid action access_as_external for object type security_group"},
		{"missing object", "POST", "/v2.0/rbac-policies", `{"rbac_policy": {"object_type": "network", "object_id": "0b5d2a5e-0000-4000-8000-000000000000", "action": "access_as_shared", "target_tenant": "*"}}`, 404, "NetworkNotFound", ""},
	}
	e.refused(refusals)
	if err := ports.Delete(ctx, guest, p.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := rbacpolicies.Delete(ctx, owner, pol.ID).ExtractErr(); err != nil {
		t.Fatalf("delete the policy nothing needs: %v", err)
	}
	if _, err := networks.Get(ctx, guest, n.ID).Extract(); err == nil {
		t.Error("guest still sees the network")
	}

	// shared=true is the wildcard policy; access_as_external makes the
	// network external for its target only.
	shared, err := networks.Update(ctx, e.admin, n.ID, networks.UpdateOpts{Shared: ptr(true)}).Extract()
	if err != nil || !shared.Shared {
		t.Fatalf("share with everyone: %+v %v", shared, err)
	}
	all, err := rbacpolicies.List(e.admin, rbacpolicies.ListOpts{ObjectID: n.ID}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps, _ := rbacpolicies.ExtractRBACPolicies(all); len(ps) != 1 || ps[0].TargetTenant != "*" || ps[0].Action != "access_as_shared" {
		t.Errorf("the wildcard policy of shared=true: %+v", ps)
	}
	if _, err := networks.Get(ctx, other, n.ID).Extract(); err != nil {
		t.Errorf("everyone sees a shared network: %v", err)
	}
	if _, err := rbacpolicies.Create(ctx, e.admin, rbacpolicies.CreateOpts{Action: rbacpolicies.ActionAccessExternal, ObjectType: "network",
		TargetTenant: guestID, ObjectID: ext.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	st, doc := e.raw(guest, "GET", "/v2.0/networks/"+ext.ID, "")
	if st != 200 || doc["network"].(map[string]any)["router:external"] != true {
		t.Errorf("guest's view of a network external for it: %d %v", st, doc)
	}
	if _, err := networks.Get(ctx, other, ext.ID).Extract(); err == nil {
		t.Error("a third project sees a network external for another")
	}

	// A security group shared with the guest is usable on its ports.
	g, err := groups.Create(ctx, owner, groups.CreateOpts{Name: "lent-sg"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	gn, err := networks.Create(ctx, guest, networks.CreateOpts{Name: "guest-net"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ports.Create(ctx, guest, ports.CreateOpts{NetworkID: gn.ID, SecurityGroups: &[]string{g.ID}}).Extract(); err == nil {
		t.Fatal("guest used a group not shared with it")
	}
	if _, err := rbacpolicies.Create(ctx, owner, rbacpolicies.CreateOpts{Action: rbacpolicies.ActionAccessShared, ObjectType: "security_group",
		TargetTenant: guestID, ObjectID: g.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := ports.Create(ctx, guest, ports.CreateOpts{NetworkID: gn.ID, SecurityGroups: &[]string{g.ID}}).Extract(); err != nil {
		t.Errorf("guest's port with the shared group: %v", err)
	}
	pages, err := groups.List(guest, groups.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := groups.ExtractGroups(pages)
	found := false
	for _, x := range gs {
		found = found || x.ID == g.ID
	}
	if !found {
		t.Error("guest's group list leaves out the group shared with it")
	}
}
