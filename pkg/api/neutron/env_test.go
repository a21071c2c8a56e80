package neutron_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"

	"github.com/nagare/nagare/pkg/server"
	"github.com/nagare/nagare/pkg/server/servertest"
)

// env is a real nagare-server (in this process, over a real etcd) with
// password authentication, and gophercloud clients logged in through its
// identity API.
type env struct {
	t        *testing.T
	ctx      context.Context
	srv      *server.Server
	base     string
	admin    *gophercloud.ServiceClient // network client, admin in project admin
	identity *gophercloud.ServiceClient // identity client, admin
}

const adminPassword = servertest.AdminPassword

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, base := servertest.Start(t)
	e := &env{t: t, ctx: context.Background(), srv: srv, base: base}
	e.admin, e.identity = e.login("admin", adminPassword, "admin")
	return e
}

// login authenticates with a password, scoped to a project.
func (e *env) login(user, password, project string) (network, identity *gophercloud.ServiceClient) {
	e.t.Helper()
	p, err := openstack.AuthenticatedClient(e.ctx, gophercloud.AuthOptions{IdentityEndpoint: e.base + "/identity/v3",
		Username: user, Password: password, DomainName: "Default", TenantName: project})
	if err != nil {
		e.t.Fatalf("login %s/%s: %v", user, project, err)
	}
	n, err := openstack.NewNetworkV2(p, gophercloud.EndpointOpts{})
	if err != nil {
		e.t.Fatal(err)
	}
	i, err := openstack.NewIdentityV3(p, gophercloud.EndpointOpts{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n, i
}

// project creates a project and a user with role member in it, and logs
// the user in.
func (e *env) project(name string) (*gophercloud.ServiceClient, string) {
	e.t.Helper()
	p, err := projects.Create(e.ctx, e.identity, projects.CreateOpts{Name: name}).Extract()
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := users.Create(e.ctx, e.identity, users.CreateOpts{Name: name + "-user", Password: "pw-" + name, DefaultProjectID: p.ID}).Extract()
	if err != nil {
		e.t.Fatal(err)
	}
	rs, err := roles.List(e.identity, roles.ListOpts{Name: "member"}).AllPages(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	member, err := roles.ExtractRoles(rs)
	if err != nil || len(member) != 1 {
		e.t.Fatalf("role member: %v %v", member, err)
	}
	if err := roles.Assign(e.ctx, e.identity, member[0].ID, roles.AssignOpts{UserID: u.ID, ProjectID: p.ID}).ExtractErr(); err != nil {
		e.t.Fatal(err)
	}
	n, _ := e.login(name+"-user", "pw-"+name, name)
	return n, p.ID
}

// neutronError is the NeutronError body of a failed gophercloud call.
type neutronError struct {
	Status  int
	Type    string
	Message string
	Detail  string
}

func asNeutronError(err error) (neutronError, bool) {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return neutronError{}, false
	}
	var b struct {
		NeutronError neutronError
	}
	_ = json.Unmarshal(ue.Body, &b)
	b.NeutronError.Status = ue.Actual
	return b.NeutronError, true
}

// wantError checks a failed call's status and NeutronError type (and that
// the message mentions each of msg).
func wantError(t *testing.T, what string, err error, status int, typ string, msg ...string) {
	t.Helper()
	ne, ok := asNeutronError(err)
	if !ok {
		t.Errorf("%s: got %v, want HTTP %d %s", what, err, status, typ)
		return
	}
	if ne.Status != status || (typ != "" && ne.Type != typ) {
		t.Errorf("%s: got %d %s (%q), want %d %s", what, ne.Status, ne.Type, ne.Message, status, typ)
	}
	for _, m := range msg {
		if !strings.Contains(ne.Message+" "+ne.Detail, m) {
			t.Errorf("%s: message %q does not say %q", what, ne.Message, m)
		}
	}
}

// raw sends a request with the client's token and returns status and body.
func (e *env) raw(c *gophercloud.ServiceClient, method, path string, body string, hdr ...string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if c != nil {
		req.Header.Set("X-Auth-Token", c.Token())
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// rawList is raw for endpoints that answer a JSON list (the native API).
func (e *env) rawList(c *gophercloud.ServiceClient, path string) (int, []map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", c.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var l []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&l)
	return resp.StatusCode, l
}

// rev is the NSDB's current revision: a refused request must leave it.
func (e *env) rev() int64 {
	resp, err := e.srv.Store().Client().Get(e.ctx, "/nagare/v1/schema-version")
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

func ptr[T any](v T) *T { return &v }

// native sends a request to the native API as the admin and fails on a
// status other than 2xx.
func (e *env) native(method, path, body string) error {
	e.t.Helper()
	st, doc := e.raw(e.admin, method, path, body)
	if st < 200 || st > 299 {
		return &nativeError{st, doc}
	}
	return nil
}

type nativeError struct {
	status int
	doc    map[string]any
}

func (n *nativeError) Error() string { return fmt.Sprintf("native API: %d %v", n.status, n.doc) }
