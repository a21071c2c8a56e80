package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	joinapi "github.com/nagare/nagare/pkg/api/join"
	"github.com/nagare/nagare/pkg/join"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/pki"
	"github.com/nagare/nagare/pkg/server"
)

// startSecure runs a server in-process in secure mode on loopback (--tls).
func startSecure(t *testing.T) *server.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := server.Start(ctx, server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", EtcdListen: "http://127.0.0.1:0",
		TLS: true, Auth: server.AuthNoAuth, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func caPool(t *testing.T, srv *server.Server) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(srv.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("no CA in", srv.CAFile())
	}
	return p
}

// etcdAs connects to the server's etcd with tlsCfg (nil: plain TCP).
func etcdAs(t *testing.T, srv *server.Server, tlsCfg *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.EtcdEndpoints(), DialTimeout: 3 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func revision(t *testing.T, srv *server.Server) int64 {
	t.Helper()
	r, err := srv.Store().Client().Get(context.Background(), "/nagare/v1/schema-version")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

func joinAs(t *testing.T, srv *server.Server, name, token string) (*joinapi.Identity, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return joinapi.Join(ctx, joinapi.JoinOptions{Server: srv.URL(), Token: token, Name: name, Dir: t.TempDir(),
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}})
}

func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var se *joinapi.StatusError
	if !errors.As(err, &se) || se.Status != status {
		t.Errorf("%s: err %v, want status %d", what, err, status)
	}
}

// TestSecureNSDB is the threat model of the NSDB: a host's certificate
// reads the topology and writes its own state only; a client without a
// certificate cannot connect; a revoked host is refused at its next
// request; and nothing refused changes etcd's revision.
func TestSecureNSDB(t *testing.T) {
	srv := startSecure(t)
	ctx := context.Background()
	tok, err := srv.Join().CreateToken(ctx, time.Hour, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := joinAs(t, srv, "hv-a", tok.String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := joinAs(t, srv, "hv-b", tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(a.Dir, joinapi.IdentityKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("host key file: %v %v, want mode 0600", st.Mode(), err)
	}
	h, err := srv.Store().Get(ctx, model.HostKind, a.HostID)
	if err != nil || h.(*model.Host).Name != "hv-a" || len(h.(*model.Host).Addresses) != 1 {
		t.Fatalf("join created host %+v %v", h, err)
	}
	ea := etcdAs(t, srv, a.TLSConfig())
	lease, err := ea.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("host a grants a lease: %v", err)
	}
	aliveA := "/nagare/v1/state/host/" + a.HostID + "/alive"
	if _, err := ea.Put(ctx, aliveA, "", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("host a writes its own liveness: %v", err)
	}
	if _, err := ea.Put(ctx, nsdb.NATBlockKey(a.HostID, "dev", netip.MustParseAddr("203.0.113.1"), 3), a.HostID, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("host a leases a NAT block: %v", err)
	}
	if r, err := ea.Get(ctx, "/nagare/v1/obj/host/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 2 {
		t.Fatalf("host a reads the topology: %v (%d hosts)", err, len(r.Kvs))
	}
	eb := etcdAs(t, srv, b.TLSConfig())
	blockOfA := nsdb.NATBlockKey(a.HostID, "dev", netip.MustParseAddr("203.0.113.1"), 3)
	before := revision(t, srv)
	for _, tc := range []struct {
		what string
		do   func() error
	}{
		{"b changes the topology", func() error { _, err := eb.Put(ctx, "/nagare/v1/obj/host/"+a.HostID, "{}"); return err }},
		{"b deletes a host", func() error { _, err := eb.Delete(ctx, "/nagare/v1/obj/host/"+a.HostID); return err }},
		{"b writes a reference", func() error { _, err := eb.Put(ctx, "/nagare/v1/ref/x/y/z/w", ""); return err }},
		{"b marks a dead", func() error { _, err := eb.Delete(ctx, aliveA); return err }},
		{"b writes a's status", func() error { _, err := eb.Put(ctx, nsdb.DatapathStatusKey(a.HostID), "{}"); return err }},
		{"b deletes a's NAT block", func() error { _, err := eb.Delete(ctx, blockOfA); return err }},
		{"b takes a's NAT block key", func() error { _, err := eb.Put(ctx, blockOfA, b.HostID); return err }},
		{"b reads the services' data", func() error { _, err := eb.Get(ctx, "/nagare/v1/svc/", clientv3.WithPrefix()); return err }},
		{"b revokes a's lease", func() error { _, err := eb.Revoke(ctx, lease.ID); return err }},
		{"b writes the schema", func() error { _, err := eb.Put(ctx, "/nagare/v1/schema-version", "2"); return err }},
		{"b enables its own role", func() error { _, err := eb.UserGrantRole(ctx, nsdb.HostUser("hv-b"), "root"); return err }},
		{"b writes a learned MAC as a", func() error {
			_, err := eb.Put(ctx, nsdb.LearnedMAC{Host: a.HostID, BridgeID: "b", MAC: [6]byte{2, 0, 0, 0, 0, 1}}.Key(), "p")
			return err
		}},
		{"b writes a neighbor as a", func() error {
			_, err := eb.Put(ctx, nsdb.LearnedNeighbor{Host: a.HostID, RouterID: "r", IP: netip.MustParseAddr("10.0.0.1")}.Key(), "x")
			return err
		}},
		{"b writes a member's health as a", func() error {
			_, err := eb.Put(ctx, nsdb.MemberStatusKey(a.HostID, "00000000-0000-4000-8000-000000000001"), "down")
			return err
		}},
		{"b deletes a's member statuses", func() error {
			_, err := eb.Delete(ctx, nsdb.MemberStatusKey(a.HostID, ""), clientv3.WithPrefix())
			return err
		}},
		{"b writes a in a transaction", func() error {
			_, err := eb.Txn(ctx).Then(clientv3.OpPut(nsdb.DatapathStatusKey(b.HostID), "{}"), clientv3.OpDelete(aliveA)).Commit()
			return err
		}},
	} {
		if err := tc.do(); !nsdb.IsPermissionDenied(err) {
			t.Errorf("%s: err %v, want permission denied", tc.what, err)
		}
	}
	if _, err := eb.Put(ctx, nsdb.DatapathStatusKey(b.HostID), "{}"); err != nil {
		t.Errorf("b writes its own status: %v", err)
	}
	if err := nsdb.New(eb).PutLearnedMAC(ctx, nsdb.LearnedMAC{Host: b.HostID, BridgeID: "b", MAC: [6]byte{2, 0, 0, 0, 0, 2}, PortID: "p"}, nsdb.NoLease); err != nil {
		t.Errorf("b publishes its own learned MAC: %v", err)
	}
	if after := revision(t, srv); after != before+2 {
		t.Errorf("etcd revision %d → %d: refused requests wrote something", before, after)
	}

	// No certificate: no connection at all.
	pool := caPool(t, srv)
	noCert := etcdAs(t, srv, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := noCert.Get(cctx, "/nagare/v1/obj/", clientv3.WithPrefix()); err == nil {
		t.Error("a client without a certificate read the NSDB")
	}
	cancel()
	plain := etcdAs(t, srv, nil)
	cctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	if _, err := plain.Get(cctx, "/nagare/v1/obj/", clientv3.WithPrefix()); err == nil {
		t.Error("a plain-TCP client read the NSDB")
	}
	cancel()

	// Revoked: refused at once on the open connection, and its state gone.
	if err := srv.Join().Revoke(ctx, "hv-a"); err != nil {
		t.Fatal(err)
	}
	before = revision(t, srv)
	if _, err := ea.Put(ctx, nsdb.DatapathStatusKey(a.HostID), "{}"); !nsdb.IsPermissionDenied(err) {
		t.Errorf("revoked host writes: err %v, want permission denied", err)
	}
	if _, err := ea.Get(ctx, "/nagare/v1/obj/", clientv3.WithPrefix()); !nsdb.IsPermissionDenied(err) {
		t.Errorf("revoked host reads: err %v, want permission denied", err)
	}
	if r, err := srv.Store().Client().Get(ctx, aliveA); err != nil || len(r.Kvs) != 0 {
		t.Errorf("revoked host still alive: %v %v", r, err)
	}
	// A new connection with the revoked certificate fails the CRL.
	fresh := etcdAs(t, srv, a.TLSConfig())
	cctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	if _, err := fresh.Get(cctx, "/nagare/v1/obj/", clientv3.WithPrefix()); err == nil {
		t.Error("a new connection with a revoked certificate read the NSDB")
	}
	cancel()
	if after := revision(t, srv); after != before {
		t.Errorf("etcd revision %d → %d after the revoked host's requests", before, after)
	}
	// It can neither renew nor join again.
	wantStatus(t, "revoked host renews", a.Renew(ctx), http.StatusForbidden)
	_, err = joinAs(t, srv, "hv-a", tok.String())
	wantStatus(t, "revoked host joins again", err, http.StatusForbidden)
	if after := revision(t, srv); after != before {
		t.Errorf("etcd revision %d → %d after the revoked host's renewal and join", before, after)
	}
	// b is unaffected, and renews.
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("b renews: %v", err)
	}
	if _, err := etcdAs(t, srv, b.TLSConfig()).Put(ctx, nsdb.DatapathStatusKey(b.HostID), "{}"); err != nil {
		t.Errorf("b with its renewed certificate: %v", err)
	}
}

// TestJoinThreats: every bad join is refused with its status and writes
// nothing.
func TestJoinThreats(t *testing.T) {
	srv := startSecure(t)
	ctx := context.Background()
	tok, err := srv.Join().CreateToken(ctx, time.Hour, 1, "single use")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := srv.Join().CreateToken(ctx, time.Second, 0, "short")
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := tok
	wrongSecret.Secret = strings.Repeat("0", len(tok.Secret))
	otherCA, err := pki.NewCA("impostor")
	if err != nil {
		t.Fatal(err)
	}
	pinnedElsewhere := tok
	pinnedElsewhere.CAHash = otherCA.Hash()
	time.Sleep(1100 * time.Millisecond) // expired expires
	before := revision(t, srv)
	_, err = joinAs(t, srv, "hv1", expired.String())
	wantStatus(t, "expired token", err, http.StatusUnauthorized)
	_, err = joinAs(t, srv, "hv1", wrongSecret.String())
	wantStatus(t, "wrong secret", err, http.StatusUnauthorized)
	forged := pki.NewJoinToken(tok.CAHash)
	_, err = joinAs(t, srv, "hv1", forged.String())
	wantStatus(t, "unknown token", err, http.StatusUnauthorized)
	if _, err := joinAs(t, srv, "hv1", pinnedElsewhere.String()); err == nil || !strings.Contains(err.Error(), "pins") {
		t.Errorf("token pinning another CA: err %v, want a CA mismatch", err)
	}
	if after := revision(t, srv); after != before {
		t.Fatalf("etcd revision %d → %d after refused joins", before, after)
	}
	// The single-use token admits once.
	id, err := joinAs(t, srv, "hv1", tok.String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = joinAs(t, srv, "hv2", tok.String())
	wantStatus(t, "used-up token", err, http.StatusUnauthorized)

	// A replayed CSR (same key) is refused even with a fresh token.
	key, _ := pki.NewKey()
	csr, _ := pki.NewHostCSR(key, "hv3")
	tok2, err := srv.Join().CreateToken(ctx, time.Hour, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Join().Join(ctx, joinRequest(tok2.String(), csr)); err != nil {
		t.Fatal(err)
	}
	before = revision(t, srv)
	_, err = srv.Join().Join(ctx, joinRequest(tok2.String(), csr))
	if !isClass(err, join.Conflict) {
		t.Errorf("replayed CSR: %v, want a conflict", err)
	}
	// Renewal with no certificate, over plain TLS.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, srv)}}}
	resp, err := hc.Post(srv.URL()+"/api/v1/join/renew", "application/json", strings.NewReader(`{"csr": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("renew without a certificate: %d, want 401", resp.StatusCode)
	}
	// Renewal of another host's name with one's own certificate.
	other, _ := pki.NewKey()
	otherCSR, _ := pki.NewHostCSR(other, "hv3")
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: id.TLSConfig()}}
	resp, err = hc.Post(srv.URL()+"/api/v1/join/renew", "application/json", strings.NewReader(`{"csr": `+quote(string(otherCSR))+`}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("hv1 renews as hv3: %d, want 400", resp.StatusCode)
	}
	if after := revision(t, srv); after != before {
		t.Errorf("etcd revision %d → %d after refused renewals", before, after)
	}
}

// TestTLSDowngrade: the HTTPS API refuses plain HTTP and TLS older than 1.2.
func TestTLSDowngrade(t *testing.T) {
	srv := startSecure(t)
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the HTTPS API: %d, want 400", resp.StatusCode)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: caPool(t, srv), MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, srv)}}}
	resp, err = hc.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HTTPS healthz: %d", resp.StatusCode)
	}
	// The client that trusts nothing but the system's roots refuses the server.
	if _, err := http.Get(srv.URL() + "/healthz"); err == nil {
		t.Error("a client without the CA trusted the server")
	}
}

func joinRequest(token string, csr []byte) join.Request {
	return join.Request{Token: token, CSR: csr}
}

func isClass(err error, c join.Class) bool {
	var je *join.Error
	return errors.As(err, &je) && je.Class == c
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
