package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/pki"
	"github.com/nagare/nagare/pkg/server"
)

func writeFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for path, b := range files {
		if err := pki.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExternalEtcdTLS: a secure server on an external cluster (Debian's
// etcd, with TLS and client-certificate authentication) whose serving
// certificate another CA issued, the server authenticating with the
// operator's client certificate (--etcd-cafile, --etcd-certfile,
// --etcd-keyfile). The server turns RBAC on; a joined agent, told the
// cluster's CA, writes its own state and not the topology; no
// certificate, no connection.
func TestExternalEtcdTLS(t *testing.T) {
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd (Debian etcd-server) not installed; run scripts/setup.sh")
	}
	data, files := t.TempDir(), t.TempDir()
	nagareCA, _, err := pki.LoadOrCreateCA(filepath.Join(data, "pki"), "nagare CA") // the server's, made ahead
	if err != nil {
		t.Fatal(err)
	}
	etcdCA, err := pki.NewCA("etcd CA")
	if err != nil {
		t.Fatal(err)
	}
	serving, servingKey, err := etcdCA.ServerCert("etcd", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	operator, operatorKey, err := nagareCA.ClientCert("nagare-operator", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(files, name) }
	writeFiles(t, map[string][]byte{f("etcd.crt"): serving, f("etcd.key"): servingKey, f("etcd-ca.crt"): etcdCA.CertPEM,
		f("nagare-ca.crt"): nagareCA.CertPEM, f("op.crt"): operator, f("op.key"): operatorKey})
	clientURL := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	etcd := exec.Command(etcdBin, "--name", "ext", "--data-dir", filepath.Join(t.TempDir(), "ext"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "ext="+peerURL,
		"--cert-file", f("etcd.crt"), "--key-file", f("etcd.key"), "--client-cert-auth", "--trusted-ca-file", f("nagare-ca.crt"),
		"--log-level", "error")
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Process.Kill(); _ = etcd.Wait() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var srv *server.Server
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) { // etcd starting
		srv, err = server.Start(ctx, server.Config{DataDir: data, Listen: "127.0.0.1:0", TLS: true, Auth: server.AuthNoAuth,
			EtcdEndpoints: []string{clientURL}, EtcdCAFile: f("etcd-ca.crt"), EtcdCertFile: f("op.crt"), EtcdKeyFile: f("op.key"),
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if _, err := srv.Store().Create(ctx, &model.Bridge{Name: "b"}); err != nil {
		t.Fatalf("the server writes through the operator's certificate: %v", err)
	}
	tok, err := srv.Join().CreateToken(ctx, time.Hour, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := joinAs(t, srv, "hv-a", tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Endpoints) != 1 || a.Endpoints[0] != clientURL || a.EtcdCA == "" {
		t.Fatalf("the agent is told etcd %v and CA %q, want %s and the cluster's CA", a.Endpoints, a.EtcdCA, clientURL)
	}
	dial := func(tc *tls.Config) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: a.Endpoints, DialTimeout: 3 * time.Second, TLS: tc, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.Close() })
		return cli
	}
	host := dial(a.EtcdTLSConfig())
	if _, err := host.Put(ctx, nsdb.DatapathStatusKey(a.HostID), "{}"); err != nil {
		t.Errorf("the agent writes its own status: %v", err)
	}
	if _, err := host.Put(ctx, "/nagare/v1/obj/bridge/x", "{}"); !nsdb.IsPermissionDenied(err) {
		t.Errorf("the agent writes the topology: %v, want permission denied", err)
	}
	if r, err := host.Get(ctx, "/nagare/v1/obj/bridge/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 1 {
		t.Errorf("the agent reads the topology: %v", err)
	}
	noCert := dial(&tls.Config{RootCAs: etcdCA.Pool(), MinVersion: tls.VersionTLS12})
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	if _, err := noCert.Get(cctx, "/nagare/v1/obj/", clientv3.WithPrefix()); err == nil {
		t.Error("a client without a certificate read the cluster")
	}
	ec, err := server.ReadClientFile(data)
	if err != nil || ec.CertFile != f("op.crt") || ec.CAFile != f("etcd-ca.crt") {
		t.Errorf("the recorded etcd client %+v %v, want the operator's files", ec, err)
	}
}
