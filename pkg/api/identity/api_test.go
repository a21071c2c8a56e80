package identity_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"

	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/server"
)

func start(t *testing.T, cfg server.Config) string {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.EtcdEndpoints = nsdbtest.Start(t).Endpoints()
	cfg.BcryptCost = 4
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return "http://" + srv.Addr()
}

func login(t *testing.T, base, user, password, project string) (*gophercloud.ProviderClient, error) {
	t.Helper()
	return openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{IdentityEndpoint: base + "/identity/v3",
		Username: user, Password: password, DomainName: "Default", TenantName: project})
}

func get(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestIdentityAPI drives the Keystone subset with gophercloud's identity
// packages: password tokens with their catalog, validation and
// revocation, and the administration of projects, users and roles.
func TestIdentityAPI(t *testing.T) {
	ctx := context.Background()
	base := start(t, server.Config{Auth: server.AuthPassword, AdminPassword: "adm"})
	if _, err := login(t, base, "admin", "wrong", "admin"); err == nil {
		t.Fatal("a wrong password authenticates")
	}
	p, err := login(t, base, "admin", "adm", "admin")
	if err != nil {
		t.Fatal(err)
	}
	id, err := openstack.NewIdentityV3(p, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	// The token: project, roles, and a catalog whose network endpoint is this server.
	res := tokens.Get(ctx, id, p.Token())
	tok, err := res.ExtractToken()
	if err != nil || tok.ExpiresAt.IsZero() {
		t.Fatalf("token: %+v %v", tok, err)
	}
	proj, _ := res.ExtractProject()
	rs, _ := res.ExtractRoles()
	cat, _ := res.ExtractServiceCatalog()
	if proj == nil || proj.Name != "admin" || len(rs) != 1 || rs[0].Name != "admin" {
		t.Errorf("token scope: %+v roles %+v", proj, rs)
	}
	url, err := openstack.V3EndpointURL(cat, gophercloud.EndpointOpts{Type: "network", Availability: gophercloud.AvailabilityPublic})
	if err != nil || strings.TrimRight(url, "/") != base {
		t.Errorf("catalog network endpoint %q (%v), want %s", url, err, base)
	}
	if ok, err := tokens.Validate(ctx, id, p.Token()); !ok || err != nil {
		t.Errorf("validate: %v %v", ok, err)
	}

	// Projects, users, roles, assignments.
	demo, err := projects.Create(ctx, id, projects.CreateOpts{Name: "demo", Description: "a demo"}).Extract()
	if err != nil || len(demo.ID) != 32 || demo.DomainID != "default" {
		t.Fatalf("project: %+v %v", demo, err)
	}
	if _, err := projects.Create(ctx, id, projects.CreateOpts{Name: "demo"}).Extract(); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("duplicate project name: %v, want 409", err)
	}
	u, err := users.Create(ctx, id, users.CreateOpts{Name: "alice", Password: "alice-pw", DefaultProjectID: demo.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, base, "alice", "alice-pw", "demo"); err == nil {
		t.Error("alice logs into demo without a role on it")
	}
	member := findRole(t, id, "member")
	if err := roles.Assign(ctx, id, member, roles.AssignOpts{UserID: u.ID, ProjectID: demo.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	ap, err := login(t, base, "alice", "alice-pw", "demo")
	if err != nil {
		t.Fatalf("alice's login: %v", err)
	}
	pages, _ := roles.ListAssignments(id, roles.ListAssignmentsOpts{UserID: u.ID}).AllPages(ctx)
	if as, _ := roles.ExtractRoleAssignments(pages); len(as) != 1 || as[0].Role.ID != member || as[0].Scope.Project.ID != demo.ID {
		t.Errorf("assignments: %+v", as)
	}
	// A member may not administer identity; may read itself.
	aid, _ := openstack.NewIdentityV3(ap, gophercloud.EndpointOpts{})
	if _, err := projects.Create(ctx, aid, projects.CreateOpts{Name: "mine"}).Extract(); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("member creates a project: %v, want 403", err)
	}
	if me, err := users.Get(ctx, aid, u.ID).Extract(); err != nil || me.Name != "alice" {
		t.Errorf("member reads itself: %+v %v", me, err)
	}
	// Changing the password; removing the role; revoking the token.
	if _, err := users.Update(ctx, id, u.ID, users.UpdateOpts{Password: "alice-new"}).Extract(); err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, base, "alice", "alice-pw", "demo"); err == nil {
		t.Error("the old password still works")
	}
	if err := tokens.Revoke(ctx, id, ap.Token()).Err; err != nil {
		t.Fatal(err)
	}
	if st := get(t, base+"/v2.0/networks", ap.Token()); st != 401 {
		t.Errorf("revoked token on /v2.0: %d, want 401", st)
	}
	if err := roles.Unassign(ctx, id, member, roles.UnassignOpts{UserID: u.ID, ProjectID: demo.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, base, "alice", "alice-new", "demo"); err == nil {
		t.Error("alice logs into demo after losing her role")
	}
	if err := users.Delete(ctx, id, u.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := projects.Delete(ctx, id, demo.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
}

func findRole(t *testing.T, id *gophercloud.ServiceClient, name string) string {
	t.Helper()
	pages, err := roles.List(id, roles.ListOpts{Name: name}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := roles.ExtractRoles(pages)
	if len(rs) != 1 {
		t.Fatalf("role %s: %v", name, rs)
	}
	return rs[0].ID
}

// TestExternalKeystone: with --auth keystone a server validates tokens
// against another Keystone (here, another nagare-server's identity API).
func TestExternalKeystone(t *testing.T) {
	keystone := start(t, server.Config{Auth: server.AuthPassword, AdminPassword: "adm"})
	base := start(t, server.Config{Auth: server.AuthKeystone, KeystoneURL: keystone + "/identity"})
	p, err := login(t, keystone, "admin", "adm", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if st := get(t, base+"/v2.0/networks", p.Token()); st != 200 {
		t.Errorf("a Keystone token on the other server: %d, want 200", st)
	}
	if st := get(t, base+"/api/v1/bridges", p.Token()); st != 200 {
		t.Errorf("an admin token on the other server's native API: %d, want 200", st)
	}
	if st := get(t, base+"/v2.0/networks", "ngr1.not.valid"); st != 401 {
		t.Errorf("an invalid token: %d, want 401", st)
	}
	if st := get(t, base+"/identity/v3", ""); st != 404 {
		t.Errorf("a keystone-mode server serves identity itself: %d", st)
	}
}

// TestNoAuth: --auth noauth lets everyone in as admin (demos only).
func TestNoAuth(t *testing.T) {
	base := start(t, server.Config{Auth: server.AuthNoAuth})
	if st := get(t, base+"/v2.0/networks", ""); st != 200 {
		t.Errorf("noauth: %d", st)
	}
	if st := get(t, base+"/api/v1/bridges", ""); st != 200 {
		t.Errorf("noauth native API: %d", st)
	}
}
