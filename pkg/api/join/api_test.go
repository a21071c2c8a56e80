package join

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/join"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/pki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	t     *testing.T
	store *nsdb.Store
	ca    *pki.CA
	svc   *join.Service
	url   string
}

// newEnv serves the API over TLS as nagare-server does (a client
// certificate verified when given) on loopback; the admin routes want the
// header X-Admin (the server puts authentication there).
func newEnv(t *testing.T) *env {
	t.Helper()
	st := nsdb.New(nsdbtest.Start(t))
	ctx := context.Background()
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := join.New(ctx, st, join.Options{CA: ca, Endpoints: []string{"https://0.0.0.0:2379"}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(svc, hostclaim.New(st), ca.CertPEM, quiet).Register(mux, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Admin") == "" {
				writeError(w, http.StatusForbidden, "Forbidden", "admins only")
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	certPEM, keyPEM, err := ca.ServerCert("server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &env{t: t, store: st, ca: ca, svc: svc, url: srv.URL}
}

func (e *env) token() pki.JoinToken {
	e.t.Helper()
	tok, err := e.svc.CreateToken(context.Background(), time.Hour, 0, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// post sends a raw body over TLS trusting the CA, with extra headers.
func (e *env) post(path, body string, header ...string) (int, errorBody) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b errorBody
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &b) // success bodies are not error documents
	return resp.StatusCode, b
}

// The agent's whole client side against the API: discovery pinned by
// the token, the join, the identity files (0600, loaded back), renewal,
// and a claim authenticated by the certificate.
func TestClientJoinRenewClaim(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "identity")
	id, err := Join(ctx, JoinOptions{Server: e.url, Token: e.token().String(), Name: "hv1", Dir: dir,
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}})
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(strings.TrimPrefix(e.url, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://" + net.JoinHostPort(host, "2379"); len(id.Endpoints) != 1 || id.Endpoints[0] != want {
		t.Errorf("etcd endpoints %v, want the wildcard given as %s (the address the agent reached)", id.Endpoints, want)
	}
	for _, f := range []string{IdentityCertFile, IdentityKeyFile, IdentityCAFile, identityInfoFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
	loaded, err := LoadIdentity(dir)
	if err != nil || loaded.HostID != id.HostID || loaded.Name != "hv1" || loaded.Server != e.url {
		t.Fatalf("LoadIdentity: %+v %v", loaded, err)
	}
	c := loaded.Certificate().Leaf
	life := c.NotAfter.Sub(c.NotBefore)
	if due := loaded.RenewDue(); due.Sub(c.NotBefore) != life*2/3 {
		t.Errorf("renewal due %v after issue, want two thirds of %v", due.Sub(c.NotBefore), life)
	}
	if err := loaded.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if n := loaded.Certificate().Leaf.SerialNumber; n.Cmp(c.SerialNumber) == 0 {
		t.Error("renewal kept the serial")
	}
	if again, err := LoadIdentity(dir); err != nil || again.Certificate().Leaf.SerialNumber.Cmp(loaded.Certificate().Leaf.SerialNumber) != 0 {
		t.Errorf("the renewed certificate was not stored: %v", err)
	}
	addr := []netip.Addr{netip.MustParseAddr("192.0.2.2")}
	if err := loaded.Claims().SetHost(ctx, loaded.HostID, hostclaim.HostInfo{Addresses: addr}); err != nil {
		t.Fatal(err)
	}
	h, err := e.store.Get(ctx, model.HostKind, id.HostID)
	if err != nil || h.(*model.Host).Addresses[0] != addr[0] {
		t.Errorf("host after the claim: %+v %v", h, err)
	}
	if err := loaded.Claims().SetHost(ctx, "someone-else", hostclaim.HostInfo{}); err == nil {
		t.Error("the client claims for another host")
	}
	_, err = loaded.Claims().EnsureHealthPort(ctx, loaded.HostID, "00000000-0000-4000-8000-000000000009")
	if !hostclaim.IsClass(err, hostclaim.NotFound) {
		t.Errorf("a claim of an unknown router: %v, want the class back (not found)", err)
	}
}

// CA discovery trusts only the CA the token pins, or the CA file.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other, err := pki.NewCA("impostor")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	otherFile := filepath.Join(t.TempDir(), "other.crt")
	if err := pki.WriteFile(caFile, e.ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(otherFile, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pinnedElsewhere := e.token()
	pinnedElsewhere.CAHash = other.Hash()
	unpinned := e.token()
	unpinned.CAHash = ""
	for i, c := range []struct {
		what   string
		token  string
		caFile string
		ok     bool
	}{
		{"the token's pin", e.token().String(), "", true},
		{"a pin of another CA", pinnedElsewhere.String(), "", false},
		{"no pin, no CA file", unpinned.String(), "", false},
		{"no pin, the CA file", unpinned.String(), caFile, true},
		{"a pinned token and another CA's file", e.token().String(), otherFile, false},
		{"a malformed token", "abc", "", false},
	} {
		_, err := Join(ctx, JoinOptions{Server: e.url, Token: c.token, CAFile: c.caFile, Name: fmt.Sprintf("hv%d", i), Dir: t.TempDir()})
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.what, err, c.ok)
		}
	}
}

// Bodies: malformed, unknown fields and oversized are 400 naming the
// problem; the admin routes sit behind the wrapper; refusals carry their
// status.
func TestRequests(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		what, path, body string
		header           []string
		status           int
		says             string
	}{
		{"malformed JSON", "/api/v1/join", "{", nil, 400, "malformed JSON"},
		{"an unknown field", "/api/v1/join", `{"token": "x", "root": true}`, nil, 400, "unknown field"},
		{"an oversized body", "/api/v1/join", `{"csr": "` + strings.Repeat("A", maxBody) + `"}`, nil, 400, "malformed JSON"},
		{"a bad token", "/api/v1/join", `{"token": "abc.def", "csr": ""}`, nil, 401, "invalid"},
		{"renewal without a certificate", "/api/v1/join/renew", `{"csr": ""}`, nil, 401, "certificate"},
		{"a claim without a certificate", "/api/v1/host-claims/host", `{}`, nil, 401, "certificate"},
		{"a token by a non-admin", "/api/v1/join-tokens", `{"ttl": "1h"}`, nil, 403, "admins only"},
		{"a token with a bad TTL", "/api/v1/join-tokens", `{"ttl": "soon"}`, []string{"X-Admin", "yes"}, 400, "ttl"},
		{"a token with no TTL", "/api/v1/join-tokens", `{"ttl": "0s"}`, []string{"X-Admin", "yes"}, 400, "TTL"},
		{"revoking a malformed host name", "/api/v1/hosts/no%20such/revoke", ``, []string{"X-Admin", "yes"}, 400, "host"},
		{"revoking an unknown host id", "/api/v1/hosts/00000000-0000-4000-8000-000000000009/revoke", ``, []string{"X-Admin", "yes"}, 404, "not"},
	} {
		st, b := e.post(c.path, c.body, c.header...)
		if st != c.status || b.Error.Code != c.status || !strings.Contains(b.Error.Message, c.says) {
			t.Errorf("%s: %d %+v, want %d saying %q", c.what, st, b, c.status, c.says)
		}
	}
	st, _ := e.post("/api/v1/join-tokens", `{"ttl": "1h", "uses": 2}`, "X-Admin", "yes")
	if st != http.StatusCreated {
		t.Errorf("an admin's token: %d", st)
	}
}

// The server's failures say nothing of their internals; model errors
// keep their meaning; refusals of both domains their class.
func TestFail(t *testing.T) {
	a := &API{log: quiet}
	for _, c := range []struct {
		err    error
		status int
		says   string
	}{
		{&join.Error{Class: join.Conflict, Message: "replayed"}, 409, "replayed"},
		{&hostclaim.Error{Class: hostclaim.Forbidden, Message: "not yours"}, 403, "not yours"},
		{&model.FieldError{Field: "interface_name", Msg: "already used"}, 400, "interface_name"},
		{model.Conflictf("kept conflicting"), 409, "kept conflicting"},
		{fmt.Errorf("port x: %w", model.ErrNotFound), 404, "port x"},
		{errors.New("etcd exploded at 10.0.0.1"), 500, "see its log"},
	} {
		w := httptest.NewRecorder()
		a.fail(w, httptest.NewRequest("POST", "/api/v1/join", nil), c.err)
		var b errorBody
		if err := json.NewDecoder(w.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status || !strings.Contains(b.Error.Message, c.says) || strings.Contains(b.Error.Message, "10.0.0.1") {
			t.Errorf("%v: %d %q, want %d saying %q", c.err, w.Code, b.Error.Message, c.status, c.says)
		}
	}
	for class, st := range claimStatuses {
		if err := claimErr(&StatusError{Status: st, Message: "m"}); !hostclaim.IsClass(err, class) {
			t.Errorf("status %d back as %v, want class %d", st, err, class)
		}
	}
	if err := claimErr(&StatusError{Status: 500, Message: "m"}); !errors.As(err, new(*StatusError)) {
		t.Errorf("a 500 became %v", err)
	}
}
