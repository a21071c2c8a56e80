package join

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/pki"
)

type fixture struct {
	t     *testing.T
	ctx   context.Context
	store *nsdb.Store
	ca    *pki.CA
	crl   string
	svc   *Service
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
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
	f := &fixture{t: t, ctx: ctx, store: st, ca: ca, crl: filepath.Join(t.TempDir(), "crl.pem"), now: time.Now()}
	f.svc, err = New(ctx, st, Options{CA: ca, CRLFile: f.crl, Validity: time.Hour, Endpoints: []string{"https://etcd:2379"},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.SetClock(func() time.Time { return f.now })
	return f
}

func (f *fixture) token(ttl time.Duration, uses int) string {
	f.t.Helper()
	tok, err := f.svc.CreateToken(f.ctx, ttl, uses, "test")
	if err != nil {
		f.t.Fatal(err)
	}
	if tok.CAHash != f.ca.Hash() {
		f.t.Fatalf("token pins %q, want the CA's %q", tok.CAHash, f.ca.Hash())
	}
	return tok.String()
}

func (f *fixture) csr(name string) []byte {
	f.t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		f.t.Fatal(err)
	}
	csr, err := pki.NewHostCSR(key, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return csr
}

func (f *fixture) rev() int64 {
	f.t.Helper()
	r, err := f.store.Client().Get(f.ctx, "/nagare/v1/schema-version")
	if err != nil {
		f.t.Fatal(err)
	}
	return r.Header.Revision
}

func (f *fixture) join(token, name string) (*Issued, error) {
	return f.svc.Join(f.ctx, Request{Token: token, CSR: f.csr(name), Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.9")},
		PhysicalNetworks: []string{"physnet1"}})
}

func classOf(err error) (Class, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Class, true
	}
	return 0, false
}

func leaf(t *testing.T, is *Issued) *x509.Certificate {
	t.Helper()
	c, err := pki.ParseCert(is.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCreateTokenBadInput(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		ttl  time.Duration
		uses int
	}{{0, 0}, {-time.Hour, 0}, {time.Hour, -1}} {
		if _, err := f.svc.CreateToken(f.ctx, c.ttl, c.uses, ""); !isClass(err, BadRequest) {
			t.Errorf("CreateToken(%v, %d): %v, want a bad request", c.ttl, c.uses, err)
		}
	}
}

// Every join that must not admit is refused with its class and writes
// nothing.
func TestJoinRefusals(t *testing.T) {
	f := newFixture(t)
	good := f.token(time.Hour, 0)
	once := f.token(time.Hour, 1)
	short := f.token(time.Minute, 0)
	wrong, err := pki.ParseJoinToken(good)
	if err != nil {
		t.Fatal(err)
	}
	wrong.Secret = strings.Repeat("0", len(wrong.Secret))
	if _, err := f.join(once, "hv-once"); err != nil {
		t.Fatal(err)
	}
	replayed := f.csr("hv-replay")
	if _, err := f.svc.Join(f.ctx, Request{Token: good, CSR: replayed}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.join(good, "hv-revoked"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Revoke(f.ctx, "hv-revoked"); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(2 * time.Minute) // short expires
	before := f.rev()
	for _, c := range []struct {
		what  string
		req   Request
		class Class
	}{
		{"malformed token", Request{Token: "nope", CSR: f.csr("hv1")}, Unauthorized},
		{"unknown token", Request{Token: pki.NewJoinToken(f.ca.Hash()).String(), CSR: f.csr("hv1")}, Unauthorized},
		{"wrong secret", Request{Token: wrong.String(), CSR: f.csr("hv1")}, Unauthorized},
		{"expired token", Request{Token: short, CSR: f.csr("hv1")}, Unauthorized},
		{"used-up token", Request{Token: once, CSR: f.csr("hv1")}, Unauthorized},
		{"garbage CSR", Request{Token: good, CSR: []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")}, BadRequest},
		{"no CSR", Request{Token: good}, BadRequest},
		{"replayed CSR", Request{Token: good, CSR: replayed}, Conflict},
		{"revoked host", Request{Token: good, CSR: f.csr("hv-revoked")}, Forbidden},
	} {
		_, err := f.svc.Join(f.ctx, c.req)
		if got, ok := classOf(err); !ok || got != c.class {
			t.Errorf("%s: %v, want class %d", c.what, err, c.class)
		}
	}
	if after := f.rev(); after != before {
		t.Errorf("etcd revision %d → %d after refused joins", before, after)
	}
	noCA, err := New(f.ctx, f.store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noCA.Join(f.ctx, Request{Token: good, CSR: f.csr("hv1")}); !isClass(err, Unavailable) {
		t.Errorf("a server without a CA key: %v, want unavailable", err)
	}
}

// A join creates the host with what it reported, records the serial,
// and a second join of the same name (a reinstalled host) keeps the host.
func TestJoinCreatesHost(t *testing.T) {
	f := newFixture(t)
	tok := f.token(time.Hour, 0)
	is, err := f.join(tok, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	c := leaf(t, is)
	if name, ok := pki.HostOf(c); !ok || name != "hv1" || c.NotAfter.Sub(c.NotBefore) > time.Hour+10*time.Minute { // NotBefore is backdated for clock skew
		t.Errorf("certificate for %q valid %v", name, c.NotAfter.Sub(c.NotBefore))
	}
	if err := c.CheckSignatureFrom(f.ca.Cert); err != nil {
		t.Errorf("certificate not signed by the CA: %v", err)
	}
	if len(is.Endpoints) != 1 || is.HostID == "" || string(is.CA) != string(f.ca.CertPEM) {
		t.Errorf("issued %+v", is)
	}
	o, err := f.store.Get(f.ctx, model.HostKind, is.HostID)
	if err != nil || o.(*model.Host).Name != "hv1" || len(o.(*model.Host).Addresses) != 1 || len(o.(*model.Host).PhysicalNetworks) != 1 {
		t.Fatalf("host %+v %v", o, err)
	}
	again, err := f.join(tok, "hv1")
	if err != nil || again.HostID != is.HostID {
		t.Fatalf("second join: %+v %v, want host %s", again, err, is.HostID)
	}
	cred, err := f.store.Get(f.ctx, CredentialKind, credentialID("hv1"))
	if err != nil || len(cred.(*Credential).Serials) != 2 {
		t.Fatalf("credential %+v %v, want two serials", cred, err)
	}
	if name, hostID, err := f.svc.Authenticate(f.ctx, c); err != nil || name != "hv1" || hostID != is.HostID {
		t.Errorf("Authenticate = %q %q %v", name, hostID, err)
	}
}

// Renewal needs the host's current certificate, a CSR for the same host
// and a new key; after revocation neither renewal nor Authenticate
// admits the host, and the CRL lists every serial it was given.
func TestRenewAndRevoke(t *testing.T) {
	f := newFixture(t)
	tok := f.token(time.Hour, 0)
	a, err := f.join(tok, "hv-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.join(tok, "hv-b")
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := leaf(t, a), leaf(t, b)
	stranger, _, err := f.ca.ClientCert("not-a-host", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := pki.ParseCert(stranger)
	if err != nil {
		t.Fatal(err)
	}
	forged := *ca
	forged.SerialNumber = big.NewInt(12345)
	reused := f.csr("hv-a")
	renewed, err := f.svc.Renew(f.ctx, ca, reused)
	if err != nil {
		t.Fatal(err)
	}
	if leaf(t, renewed).SerialNumber.Cmp(ca.SerialNumber) == 0 || renewed.HostID != a.HostID {
		t.Errorf("renewal %+v", renewed)
	}
	before := f.rev()
	for _, c := range []struct {
		what  string
		peer  *x509.Certificate
		csr   []byte
		class Class
	}{
		{"no certificate", nil, f.csr("hv-a"), Unauthorized},
		{"not a host's certificate", sc, f.csr("hv-a"), Unauthorized},
		{"another host's name", ca, f.csr("hv-b"), BadRequest},
		{"a serial this server never issued", &forged, f.csr("hv-a"), Unauthorized},
		{"a key signed before", ca, reused, Conflict},
	} {
		_, err := f.svc.Renew(f.ctx, c.peer, c.csr)
		if got, ok := classOf(err); !ok || got != c.class {
			t.Errorf("renewal with %s: %v, want class %d", c.what, err, c.class)
		}
	}
	if after := f.rev(); after != before {
		t.Errorf("etcd revision %d → %d after refused renewals", before, after)
	}
	if err := f.svc.Revoke(f.ctx, a.HostID); err != nil { // by id
		t.Fatal(err)
	}
	if revoked, err := f.svc.Revoked(f.ctx, "hv-a"); err != nil || !revoked {
		t.Errorf("Revoked(hv-a) = %v %v", revoked, err)
	}
	if _, err := f.svc.Renew(f.ctx, ca, f.csr("hv-a")); !isClass(err, Forbidden) {
		t.Errorf("a revoked host renews: %v", err)
	}
	if _, _, err := f.svc.Authenticate(f.ctx, ca); !isClass(err, Forbidden) {
		t.Errorf("a revoked host authenticates: %v", err)
	}
	if _, _, err := f.svc.Authenticate(f.ctx, cb); err != nil {
		t.Errorf("hv-b after hv-a's revocation: %v", err)
	}
	der, err := os.ReadFile(f.crl)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(f.ca.Cert); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = true
	}
	if len(listed) != 2 || !listed[ca.SerialNumber.Text(16)] || !listed[leaf(t, renewed).SerialNumber.Text(16)] || listed[cb.SerialNumber.Text(16)] {
		t.Errorf("CRL lists %v: want hv-a's two serials only", listed)
	}
	for _, bad := range []string{"no such host!", "00000000-0000-4000-8000-000000000009"} {
		if err := f.svc.Revoke(f.ctx, bad); err == nil {
			t.Errorf("Revoke(%q) succeeded", bad)
		}
	}
	// A host that never joined can be revoked ahead (it then cannot join).
	if err := f.svc.Revoke(f.ctx, "hv-later"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.join(tok, "hv-later"); !isClass(err, Forbidden) {
		t.Errorf("a host revoked ahead joins: %v", err)
	}
}

func isClass(err error, c Class) bool {
	got, ok := classOf(err)
	return ok && got == c
}
