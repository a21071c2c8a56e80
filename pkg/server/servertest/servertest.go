// Package servertest runs a real nagare-server for tests of its HTTP
// surfaces: in the test's process, over a real embedded etcd, with the
// built-in identity service (password authentication), so that tests log
// in and act as administrators and project members the way clients do.
package servertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/server"
)

// AdminPassword is the password of user admin (project admin, role admin).
const AdminPassword = "s3cret-admin"

// Start starts a server with password authentication on a free loopback
// port; it stops when the test ends. base is its URL.
func Start(t testing.TB) (srv *server.Server, base string) {
	t.Helper()
	return StartWith(t, nil)
}

// StartWith is Start with the configuration changed by change first
// (nil: unchanged).
func StartWith(t testing.TB, change func(*server.Config)) (srv *server.Server, base string) {
	t.Helper()
	cli := nsdbtest.Start(t)
	cfg := server.Config{Listen: "127.0.0.1:0", EtcdEndpoints: cli.Endpoints(),
		Auth: server.AuthPassword, AdminPassword: AdminPassword, BcryptCost: 4}
	if change != nil {
		change(&cfg)
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, "http://" + srv.Addr()
}

// Login asks the server's identity API for a project-scoped token (users
// and projects of the Default domain).
func Login(t testing.TB, base, user, password, project string) string {
	t.Helper()
	body := fmt.Sprintf(`{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": %q, "password": %q, "domain": {"name": "Default"}}}},
		"scope": {"project": {"name": %q, "domain": {"name": "Default"}}}}}`, user, password, project)
	resp, err := http.Post(base+"/identity/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	tok := resp.Header.Get("X-Subject-Token")
	if resp.StatusCode != http.StatusCreated || tok == "" {
		t.Fatalf("log in %s/%s: %s", user, project, resp.Status)
	}
	return tok
}
