package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/server"
	"github.com/nagare/nagare/pkg/server/servertest"
)

// call sends a request with a token ("" for none) and returns the status
// and the decoded JSON body (nil when there is none).
func call(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 {
		_ = json.Unmarshal(b, &out) // error documents and empty 204s alike
	}
	return resp.StatusCode, out
}

// mustCall is call that fails the test unless the status is want; it
// returns the body.
func mustCall(t *testing.T, want int, method, url, token string, body any) map[string]any {
	t.Helper()
	st, out := call(t, method, url, token, body)
	if st != want {
		t.Fatalf("%s %s: %d %v, want %d", method, url, st, out, want)
	}
	return out
}

func idOf(t *testing.T, doc map[string]any, key string) string {
	t.Helper()
	o, _ := doc[key].(map[string]any)
	id, _ := o["id"].(string)
	if id == "" {
		t.Fatalf("no %s id in %v", key, doc)
	}
	return id
}

// member creates project and a user holding role member on it, and logs
// it in.
func member(t *testing.T, base, admin, project, user string) string {
	t.Helper()
	pid := idOf(t, mustCall(t, 201, "POST", base+"/identity/v3/projects", admin, map[string]any{"project": map[string]any{"name": project}}), "project")
	uid := idOf(t, mustCall(t, 201, "POST", base+"/identity/v3/users", admin,
		map[string]any{"user": map[string]any{"name": user, "password": user + "-pw", "default_project_id": pid}}), "user")
	roles := mustCall(t, 200, "GET", base+"/identity/v3/roles?name=member", admin, nil)["roles"].([]any)
	rid := roles[0].(map[string]any)["id"].(string)
	mustCall(t, 204, "PUT", base+"/identity/v3/projects/"+pid+"/users/"+uid+"/roles/"+rid, admin, nil)
	return servertest.Login(t, base, user, user+"-pw", project)
}

func etcdRevision(t *testing.T, srv *server.Server) int64 {
	t.Helper()
	r, err := srv.Store().Client().Get(context.Background(), "/nagare/v1/schema-version")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

// forge rewrites a token's payload (keeping its signature) with change.
func forge(t *testing.T, tok string, change func(map[string]any)) string {
	t.Helper()
	rest, _ := strings.CutPrefix(tok, "ngr1.")
	p, sig, ok := strings.Cut(rest, ".")
	if !ok {
		t.Fatalf("token %q is not ngr1.<payload>.<signature>", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	change(claims)
	raw, err = json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return "ngr1." + base64.RawURLEncoding.EncodeToString(raw) + "." + sig
}

// TestAPITokenThreats is the API's threat model: wrong, forged and
// expired tokens are 401; a member on admin-only routes is 403; a token of
// project A on project B's Neutron objects is 404, as Neutron answers
// (the object is hidden, not forbidden); and none of it writes anything.
func TestAPITokenThreats(t *testing.T) {
	srv, base := servertest.Start(t)
	admin := servertest.Login(t, base, "admin", servertest.AdminPassword, "admin")
	alice := member(t, base, admin, "project-a", "alice")
	bob := member(t, base, admin, "project-b", "bob")
	net := idOf(t, mustCall(t, 201, "POST", base+"/v2.0/networks", bob, map[string]any{"network": map[string]any{"name": "bobs"}}), "network")
	sg := idOf(t, mustCall(t, 201, "POST", base+"/v2.0/security-groups", bob, map[string]any{"security_group": map[string]any{"name": "bobs"}}), "security_group")
	// Alice's token claiming to be the admin's user, signature kept.
	var adminUser string
	{
		req, _ := http.NewRequest("GET", base+"/identity/v3/auth/tokens", nil)
		req.Header.Set("X-Auth-Token", admin)
		req.Header.Set("X-Subject-Token", admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Token struct {
				User struct{ ID string } `json:"user"`
			} `json:"token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		adminUser = doc.Token.User.ID
	}
	asAdmin := forge(t, alice, func(c map[string]any) {
		c["u"] = strings.ToLower(adminUser[:8] + "-" + adminUser[8:12] + "-" + adminUser[12:16] + "-" + adminUser[16:20] + "-" + adminUser[20:])
	})
	longer := forge(t, alice, func(c map[string]any) { c["e"] = time.Now().Add(24 * time.Hour).UnixMilli() })
	otherKey := forge(t, alice, func(c map[string]any) { c["k"] = "no-such-key" })

	before := etcdRevision(t, srv)
	for name, tok := range map[string]string{"none": "", "garbage": "garbage", "empty claims": "ngr1.e30.AAAA",
		"forged user": asAdmin, "forged expiry": longer, "unknown key": otherKey, "truncated": alice[:len(alice)-4]} {
		refused(t, base, name, tok, net)
	}
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/bridges", nil},
		{"POST", "/api/v1/bridges", map[string]any{"name": "mine"}},
		{"GET", "/api/v1/hosts", nil},
		{"POST", "/api/v1/token-signing-keys/rotate", nil},
		{"GET", "/api/v1/token-signing-keys", nil},
		{"POST", "/identity/v3/projects", map[string]any{"project": map[string]any{"name": "mine"}}},
		{"GET", "/identity/v3/users", nil},
		{"POST", "/identity/v3/roles", map[string]any{"role": map[string]any{"name": "boss"}}},
	} {
		if st, out := call(t, r.method, base+r.path, alice, r.body); st != http.StatusForbidden {
			t.Errorf("member on %s %s: %d %v, want 403", r.method, r.path, st, out)
		}
	}
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v2.0/networks/" + net, nil},
		{"PUT", "/v2.0/networks/" + net, map[string]any{"network": map[string]any{"name": "alices now"}}},
		{"DELETE", "/v2.0/networks/" + net, nil},
		{"GET", "/v2.0/security-groups/" + sg, nil},
		{"PUT", "/v2.0/security-groups/" + sg, map[string]any{"security_group": map[string]any{"name": "alices now"}}},
		{"DELETE", "/v2.0/security-groups/" + sg, nil},
	} {
		if st, out := call(t, r.method, base+r.path, alice, r.body); st != http.StatusNotFound {
			t.Errorf("project a's token on project b's %s %s: %d %v, want 404", r.method, r.path, st, out)
		}
	}
	if list := mustCall(t, 200, "GET", base+"/v2.0/networks", alice, nil)["networks"].([]any); len(list) != 0 {
		t.Errorf("project a lists project b's networks: %v", list)
	}
	if after := etcdRevision(t, srv); after != before {
		t.Errorf("etcd revision %d → %d: a refused request wrote something", before, after)
	}
	// The owner still has them, unchanged.
	if got := mustCall(t, 200, "GET", base+"/v2.0/networks/"+net, bob, nil)["network"].(map[string]any)["name"]; got != "bobs" {
		t.Errorf("bob's network is now named %v", got)
	}
}

// refused checks that tok is refused with 401 on a write and a read of
// every API.
func refused(t *testing.T, base, name, tok, net string) {
	t.Helper()
	for _, r := range []struct{ method, path string }{
		{"GET", "/v2.0/networks"}, {"POST", "/v2.0/networks"}, {"DELETE", "/v2.0/networks/" + net},
		{"GET", "/api/v1/bridges"}, {"POST", "/api/v1/bridges"}, {"GET", "/identity/v3/projects"},
		{"POST", "/api/v1/token-signing-keys/rotate"},
	} {
		body := map[string]any{"network": map[string]any{"name": "x"}}
		if st, out := call(t, r.method, base+r.path, tok, body); st != http.StatusUnauthorized {
			t.Errorf("%s token on %s %s: %d %v, want 401", name, r.method, r.path, st, out)
		}
	}
}

// TestExpiredToken: a token past its expiry is refused everywhere, and
// writes nothing.
func TestExpiredToken(t *testing.T) {
	srv, base := servertest.StartWith(t, func(c *server.Config) { c.TokenTTL = 2 * time.Second })
	issued := time.Now()
	admin := servertest.Login(t, base, "admin", servertest.AdminPassword, "admin")
	net := idOf(t, mustCall(t, 201, "POST", base+"/v2.0/networks", admin, map[string]any{"network": map[string]any{"name": "n"}}), "network")
	time.Sleep(time.Until(issued.Add(2100 * time.Millisecond)))
	before := etcdRevision(t, srv)
	refused(t, base, "expired", admin, net)
	if after := etcdRevision(t, srv); after != before {
		t.Errorf("etcd revision %d → %d: a refused request wrote something", before, after)
	}
}

// TestLoginLockoutHTTP: failed logins from one address lock the user out
// there (the right password is refused too); other users are not locked.
func TestLoginLockoutHTTP(t *testing.T) {
	_, base := servertest.StartWith(t, func(c *server.Config) {
		c.LockoutFailureAttempts, c.LockoutDuration = 3, time.Hour
	})
	login := func(user, pw string) int {
		body := fmt.Sprintf(`{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": %q, "password": %q, "domain": {"name": "Default"}}}},
			"scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}`, user, pw)
		resp, err := http.Post(base+"/identity/v3/auth/tokens", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if st := login("admin", fmt.Sprint("guess", i)); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, st)
		}
	}
	if st := login("admin", servertest.AdminPassword); st != http.StatusUnauthorized {
		t.Errorf("the right password while locked out: %d, want 401", st)
	}
	if st := login("nobody", "x"); st != http.StatusUnauthorized {
		t.Errorf("another user: %d", st)
	}
}

// lockedBuffer is a log destination tests read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPasswordsNeverLogged: a server started with --admin-password, and
// logins right and wrong, log no password, even at debug level.
func TestPasswordsNeverLogged(t *testing.T) {
	const pw, wrong = "Adm1n-secret-8b1e", "Wr0ng-guess-5d2c"
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, base := servertest.StartWith(t, func(c *server.Config) { c.AdminPassword, c.Log, c.LockoutFailureAttempts = pw, log, 2 })
	admin := servertest.Login(t, base, "admin", pw, "admin")
	for range 3 {
		body := fmt.Sprintf(`{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": %q, "domain": {"name": "Default"}}}}}}`, wrong)
		resp, err := http.Post(base+"/identity/v3/auth/tokens", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mustCall(t, 201, "POST", base+"/identity/v3/users", admin, map[string]any{"user": map[string]any{"name": "carol", "password": wrong + "-carol"}})
	out := logs.String()
	if !strings.Contains(out, "created user admin") || !strings.Contains(out, "locked out") {
		t.Fatalf("the log lacks what it should say (bootstrap, lockout):\n%s", out)
	}
	for _, secret := range []string{pw, wrong, admin} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q:\n%s", secret, out)
		}
	}
}
