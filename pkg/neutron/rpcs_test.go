package neutron

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

// etcdCall is one request a client sent to etcd.
type etcdCall struct {
	rangeKey string // a Range's key ("" for a Txn)
	reads    int    // a Txn's gets
	writes   int    // a Txn's puts and deletes
	compares int    // a Txn's compares
}

// callLog records the requests a client sends to etcd.
type callLog struct {
	mu    sync.Mutex
	calls []etcdCall
}

func (l *callLog) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var c etcdCall
	switch r := req.(type) {
	case *etcdserverpb.RangeRequest:
		c.rangeKey = string(r.Key)
	case *etcdserverpb.TxnRequest:
		c.compares = len(r.Compare)
		for _, op := range r.Success {
			if op.GetRequestRange() != nil {
				c.reads++
			} else {
				c.writes++
			}
		}
	}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (l *callLog) take() []etcdCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	return out
}

// A Neutron port create is latency-bound on its etcd round trips: the
// network, the subnets' index, one batched read of the subnets with what
// the translation needs (DHCP subnets, security groups), and the commit;
// the quota's usage is counted alongside (the project's limits, read by
// the create before within limitsTTL, are not read again). A new port is
// no trunk's subport, so the trunk index is not read.
func TestPortCreateRoundTrips(t *testing.T) {
	seed := nsdbtest.Start(t)
	log := &callLog{}
	cli, err := clientv3.New(clientv3.Config{Endpoints: seed.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(log.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx := context.Background()
	st := nsdb.New(cli)
	noErr(t, st.Init(ctx))
	s := New(st, Options{})
	now := time.Now()
	s.now = func() time.Time { return now } // the limits read by the first create stay fresh
	c := &identity.Context{ProjectID: "p-1", Roles: []string{"member"}}
	net := must(s.CreateNetwork(ctx, c, NetworkRequest{StdRequest: named("n1")}))
	must(s.CreateSubnet(ctx, c, subnetReq(net.ID, "10.0.0.0/16")))
	must(s.CreateSubnet(ctx, c, subnetReq(net.ID, "fd00::/64")))
	must(s.CreatePort(ctx, c, PortRequest{NetworkID: net.ID})) // creates the project's default group
	log.take()
	p := must(s.CreatePort(ctx, c, PortRequest{NetworkID: net.ID}))
	if len(p.FixedIPs) != 2 || len(p.SecurityGroups) != 1 {
		t.Fatalf("port has fixed IPs %v and groups %v, want one address per subnet and the default group", p.FixedIPs, p.SecurityGroups)
	}
	var ranges []string
	var batches, commits int
	for _, call := range log.take() {
		switch {
		case call.rangeKey != "":
			ranges = append(ranges, call.rangeKey)
			if strings.Contains(call.rangeKey, "neutron-subport") {
				t.Errorf("a new port's create read the trunk index: %s", call.rangeKey)
			}
		case call.writes > 0:
			commits++
			t.Logf("the commit: %d writes, %d compares", call.writes, call.compares)
			// A port joins its groups by reference: the Neutron port, its
			// address allocations, its translation record, the native port
			// and its DHCP host entry, with their index keys (24 writes, 25
			// compares) — not chains and rules of its own (84 writes and 49
			// compares before).
			if call.writes > 30 || call.compares > 30 {
				t.Errorf("a port create committed %d writes and %d compares; want at most 30 and 30", call.writes, call.compares)
			}
		default:
			batches++
			// 2 subnets, their 2 DHCP subnets, 1 group.
			if call.reads != 5 {
				t.Errorf("the batched read got %d objects, want 5 (subnets, DHCP subnets, group)", call.reads)
			}
		}
	}
	// Network, subnet index, quota count.
	if len(ranges) != 3 || batches != 1 || commits != 1 {
		t.Errorf("a port create sent %d ranges %q, %d batched reads and %d commits; want 3, 1 and 1", len(ranges), ranges, batches, commits)
	}
}
