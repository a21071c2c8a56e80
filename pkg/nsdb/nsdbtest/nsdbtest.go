// Package nsdbtest gives tests a real NSDB: an embedded single-node etcd in
// the test's temporary directory. Tests use the real thing rather than a fake
// because the store's guarantees (transactions, compares, watches,
// compaction) are etcd's, and a fake would only test itself.
package nsdbtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nagare/nagare/pkg/server/embedetcd"
)

// Options tune Start.
type Options struct {
	// Fsync keeps etcd's fsyncs, for benchmarks that must measure the
	// durable write path. Tests leave it off: it costs ~10 ms per write on
	// slow disks and proves nothing about logic.
	Fsync bool
}

// Start starts an embedded etcd on a free port in t.TempDir() and returns a
// client to it. Both are closed when the test ends.
func Start(t testing.TB) *clientv3.Client { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := embedetcd.Start(ctx, embedetcd.Config{
		DataDir:       t.TempDir(),
		ClientURL:     "http://127.0.0.1:0",
		UnsafeNoFsync: !o.Fsync,
		LogLevel:      "fatal",
	})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(), // the client logs every retried call at warn
	})
	if err != nil {
		t.Fatalf("connect to embedded etcd: %v", err)
	}
	// Registered after e.Close, so it runs before it: the client goes first.
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
