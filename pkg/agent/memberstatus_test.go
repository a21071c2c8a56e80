package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/datapath/userspace"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// TestMemberStatusMirror runs the agent's two watches (topology, member
// health) against a real etcd and a real userspace datapath (one veth port,
// no traffic): a health monitor's status reaches the mirror's member, and the
// flows that read the member are invalidated.
func TestMemberStatusMirror(t *testing.T) {
	cli := nsdbtest.Start(t)
	store := nsdb.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := store.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// The datapath's one port is a veth end in a throw-away
	// namespace: installing a flow needs an attached in-port.
	ns := netnstest.New(t, "lbms")
	ns.Run(t, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.Run(t, "ip", "link", "set", "d0", "up")
	dp, err := userspace.New(datapath.Config{Netns: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	if err := dp.AddPort(datapath.PortConfig{PortID: "p0", Index: 0, Interface: "d0", TunnelKey: 1, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	a := &Agent{log: slog.Default(), store: store, dp: dp, objs: map[string]model.Object{},
		bound: map[string]boundPort{}, dhcp: map[string]*dhcpServer{}, memberStatus: map[string]string{}}
	a.met = newMetrics(a)
	a.view.Store(&view{topo: emptyTopology(), dpToPort: map[int32]string{}, portToDP: map[string]int32{}})

	create := func(o model.Object) model.Object {
		t.Helper()
		c, err := store.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hm := create(&model.HealthMonitor{Name: "hm"}).(*model.HealthMonitor)
	lb := create(&model.LoadBalancer{Name: "lb"}).(*model.LoadBalancer)
	pool := create(&model.Pool{LoadBalancerID: lb.ID, HealthMonitorID: hm.ID}).(*model.Pool)
	m := create(&model.PoolMember{PoolID: pool.ID, Address: netip.MustParseAddr("10.0.0.7"), ProtocolPort: 80}).(*model.PoolMember)
	// A status written before the agent starts arrives with the reset.
	if err := store.PutMemberStatus(ctx, m.ID, model.MemberUp, 0); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { errc <- store.Watch(ctx, a.apply) }()
	go func() { errc <- store.WatchMemberStatus(ctx, a.applyMemberStatus) }()

	mirrored := func() string {
		a.mu.Lock()
		defer a.mu.Unlock()
		if o, ok := a.objs[objKey(model.PoolMemberKind, m.ID)]; ok {
			return o.(*model.PoolMember).Status
		}
		return "absent"
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			select {
			case err := <-errc:
				t.Fatalf("watch ended: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s (member status %q)", what, mirrored())
			}
		}
	}
	waitFor("status up mirrored", func() bool { return mirrored() == model.MemberUp })

	// A flow that read the member (a drop flow: no port needed).
	var p packet.Parsed
	spec := &datapath.FlowSpec{Key: flow.KeyOf(&p, 0), Tags: []uint64{sim.ObjectTag(model.PoolMemberKind, m.ID)}}
	if err := dp.Install(spec); err != nil {
		t.Fatal(err)
	}
	if n := dp.Stats().Flows; n != 1 {
		t.Fatalf("%d flows installed, want 1", n)
	}
	if err := store.PutMemberStatus(ctx, m.ID, model.MemberDown, 0); err != nil {
		t.Fatal(err)
	}
	waitFor("status down mirrored", func() bool { return mirrored() == model.MemberDown })
	waitFor("member's flow invalidated", func() bool { return dp.Stats().Flows == 0 })

	// The member's own change keeps the status; the status going away
	// (the monitor's lease ended) clears it.
	if _, err := store.Modify(ctx, model.PoolMemberKind, m.ID, 0, func(o model.Object) error {
		o.(*model.PoolMember).Weight = 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor("weight mirrored with the status kept", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		pm := a.objs[objKey(model.PoolMemberKind, m.ID)].(*model.PoolMember)
		return pm.Weight == 5 && pm.Status == model.MemberDown
	})
	if err := store.DeleteMemberStatus(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	waitFor("status cleared", func() bool { return mirrored() == "" })
}
