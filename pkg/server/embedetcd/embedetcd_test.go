package embedetcd

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func start(t *testing.T, dir string) *Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := Start(ctx, Config{DataDir: dir, ClientURL: "http://127.0.0.1:0", UnsafeNoFsync: true, LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func client(t *testing.T, e *Etcd) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// TestRestartKeepsData writes, stops etcd, starts it again on the same
// directory and reads the value back: the embedded NSDB survives restarts.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	e := start(t, dir)
	u, err := url.Parse(e.Endpoints()[0])
	if err != nil || u.Port() == "0" || u.Port() == "" {
		t.Fatalf("endpoint %q does not name the bound port", e.Endpoints()[0])
	}
	cli := client(t, e)
	if _, err := cli.Put(ctx, "/nagare/test", "kept"); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()
	e.Close()
	e.Close() // idempotent

	e2 := start(t, dir)
	r, err := client(t, e2).Get(ctx, "/nagare/test")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "kept" {
		t.Fatalf("after restart got %v, want the value written before", r.Kvs)
	}
}

// TestLargeTransactions checks MaxTxnOps is raised: the store's cascading
// deletes need far more than etcd's default of 128 operations.
func TestLargeTransactions(t *testing.T) {
	cli := client(t, start(t, t.TempDir()))
	ops := make([]clientv3.Op, 1000)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("/k/%04d", i), "v")
	}
	if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		t.Fatalf("1000-operation transaction: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{DataDir: "x", ClientURL: "127.0.0.1"},
		{DataDir: "x", ClientURL: "https://127.0.0.1:2379"},
		{DataDir: "x", PeerURL: "http://127.0.0.1"},
	} {
		if _, err := c.embedConfig(); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	// HOST:PORT without a scheme is what etcdctl and operators type.
	for _, in := range []string{"127.0.0.1:2379", "[::1]:2379", "localhost:2379", "http://127.0.0.1:2379"} {
		cfg, err := Config{DataDir: "x", ClientURL: in, PeerURL: "127.0.0.1:2390"}.embedConfig()
		if err != nil {
			t.Errorf("client URL %q: %v", in, err)
			continue
		}
		if got := cfg.ListenClientUrls[0]; got.Scheme != "http" || got.Port() != "2379" || cfg.ListenPeerUrls[0].String() != "http://127.0.0.1:2390" {
			t.Errorf("client URL %q: listening on %s, peers on %s", in, got.String(), cfg.ListenPeerUrls[0].String())
		}
	}
	cfg, err := Config{DataDir: "/d"}.embedConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != "/d/etcd" || cfg.MaxTxnOps != maxTxnOps || cfg.AutoCompactionRetention != "1h" ||
		cfg.QuotaBackendBytes != 8<<30 || cfg.ListenPeerUrls[0].Port() != "2380" || cfg.LogLevel != "error" {
		t.Errorf("production defaults not applied: dir %s ops %d retention %s quota %d peer %s log %s",
			cfg.Dir, cfg.MaxTxnOps, cfg.AutoCompactionRetention, cfg.QuotaBackendBytes, cfg.ListenPeerUrls[0].String(), cfg.LogLevel)
	}
}
