package lbhealth

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memPlumbing stands in for the kernel's: a check "namespace" is an
// interface of an in-memory host (where the health-check port binds), and
// its connections go to real listeners on loopback standing in for the
// members.
type memPlumbing struct {
	host    *memory.Host
	members map[string]string // member address:port → loopback address:port
}

func (p memPlumbing) Open(ifname string, mtu int) (Checker, error) {
	if _, err := p.host.AddInterface(ifname); err != nil {
		return nil, err
	}
	return memChecker{p, ifname}, nil
}

type memChecker struct {
	p      memPlumbing
	ifname string
}

func (c memChecker) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, c.p.members[addr])
}

func (c memChecker) Close() error { return c.p.host.DeleteInterface(c.ifname) }

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s", what)
		}
	}
}

// The only alive agent owns the router: it has the health-check port and
// route made bound to itself (package hostclaim, over a real NSDB), opens the check namespace, writes up for a
// member that answers, down for one that does not, no_monitor for a pool
// without a monitor; a member that stops answering goes down; when the
// monitor goes, so do the port and the namespace.
func TestHealthChecksOnTheOwner(t *testing.T) {
	db := nsdb.New(nsdbtest.Start(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := db.Init(ctx); err != nil {
		t.Fatal(err)
	}
	mk := func(o model.Object) model.Object {
		t.Helper()
		c, err := db.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	host := mk(&model.Host{Name: "hv1"}).GetMeta().ID
	lease, err := db.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetHostAlive(ctx, host, lease); err != nil {
		t.Fatal(err)
	}
	hm := mk(&model.HealthMonitor{Name: "hm", Type: "tcp", Delay: 1, Timeout: 1, MaxRetries: 1}).(*model.HealthMonitor)
	lb := mk(&model.LoadBalancer{Name: "lb"}).(*model.LoadBalancer)
	r := mk(&model.Router{Name: "r", LoadBalancerID: lb.ID}).(*model.Router)
	checked := mk(&model.Pool{LoadBalancerID: lb.ID, HealthMonitorID: hm.ID}).(*model.Pool)
	plain := mk(&model.Pool{LoadBalancerID: lb.ID}).(*model.Pool)
	up := mk(&model.PoolMember{PoolID: checked.ID, Address: netip.MustParseAddr("10.0.0.1"), ProtocolPort: 80}).GetMeta().ID
	down := mk(&model.PoolMember{PoolID: checked.ID, Address: netip.MustParseAddr("10.0.0.2"), ProtocolPort: 80}).GetMeta().ID
	other := mk(&model.PoolMember{PoolID: plain.ID, Address: netip.MustParseAddr("10.0.0.3"), ProtocolPort: 53}).GetMeta().ID

	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := web.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	mh := memory.NewHost(nil)
	plumbing := memPlumbing{host: mh, members: map[string]string{"10.0.0.1:80": web.Addr().String(), "10.0.0.2:80": closedAddr(t)}}
	m := mirror.New(mirror.Config{Flows: memory.New(datapath.Config{}, mh), Log: quiet})
	go func() { _ = m.Run(ctx, db) }()
	var live nsdb.LiveHosts
	go func() { _ = db.WatchHostLiveness(ctx, live.Apply) }()
	reg := prometheus.NewRegistry()
	h, err := New(Config{HostID: host, UnderlayMTU: 1500, DB: db, Claims: hostclaim.New(db), Lease: func() nsdb.LeaseID { return lease },
		Alive: live.Alive, Topology: m.Current, Plumbing: plumbing, Registerer: reg, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()

	statuses := func() map[string]string {
		st, err := db.MemberStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor(t, "statuses written", func() bool {
		st := statuses()
		return st[up] == model.MemberUp && st[down] == model.MemberDown && st[other] == model.MemberNoMonitor
	})
	ports, _, _ := db.List(ctx, model.PortKind, "router_id", r.ID)
	if len(ports) != 1 || ports[0].(*model.Port).HostID != host || ports[0].(*model.Port).InterfaceName != hostclaim.HealthIfName(r.ID) {
		t.Fatalf("health-check ports %+v: want one, bound here to %s", ports, hostclaim.HealthIfName(r.ID))
	}
	if routes, _, _ := db.List(ctx, model.RouteKind, "port_id", ports[0].GetMeta().ID); len(routes) != 1 {
		t.Fatalf("routes to the health-check port: %+v", routes)
	}
	if _, ok := mh.Interface(hostclaim.HealthIfName(r.ID)); !ok {
		t.Fatal("no check namespace wired to the health-check port's interface")
	}

	web.Close()
	waitFor(t, "a member that stops answering goes down", func() bool { return statuses()[up] == model.MemberDown })

	if _, err := db.Modify(ctx, model.PoolKind, checked.ID, 0, func(o model.Object) error {
		o.(*model.Pool).HealthMonitorID = ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no monitor: no port, no namespace, no_monitor", func() bool {
		ps, _, _ := db.List(ctx, model.PortKind, "router_id", r.ID)
		_, wired := mh.Interface(hostclaim.HealthIfName(r.ID))
		st := statuses()
		return len(ps) == 0 && !wired && st[up] == model.MemberNoMonitor && st[down] == model.MemberNoMonitor
	})
	cancel()
	<-done
	if n, err := reg.Gather(); err != nil || len(n) == 0 {
		t.Fatalf("metrics: %v, %v", n, err)
	}
}
