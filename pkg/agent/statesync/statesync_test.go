package statesync

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/packet"
)

// host is one host's state sync over a memory datapath on a shared hub.
type host struct {
	sync *Sync
	dp   *memory.Datapath
	vm   *memory.Interface
}

func newHost(t *testing.T, hub *memory.Hub, name string, local, peer netip.Addr, timeouts flowstate.Timeouts) *host {
	t.Helper()
	h := memory.NewHost(hub)
	vm, err := h.AddInterface("vm")
	if err != nil {
		t.Fatal(err)
	}
	dp := memory.New(datapath.Config{}, h)
	if err := dp.AddPort(datapath.PortConfig{PortID: "p-" + name, Index: 1, Interface: "vm", TunnelKey: 5}); err != nil {
		t.Fatal(err)
	}
	if err := dp.SetTunnels(datapath.TunnelConfig{LocalIP: local, VXLAN: true, Peers: []netip.Addr{peer}}); err != nil {
		t.Fatal(err)
	}
	s := New(Config{HostID: name, Timeouts: timeouts, Blocks: flowstate.NewMemBlocks(), Datapath: dp, DB: nsdbmem.New(),
		Lease: func() nsdb.LeaseID { return 0 }, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = dp.Run(ctx, handler{s}) }()
	return &host{sync: s, dp: dp, vm: vm}
}

// handler is the datapath's handler: misses are not the test's business,
// state packets go to the state sync.
type handler struct{ *Sync }

func (handler) Miss(*datapath.Upcall) {}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// A connection's entries pushed by one host reach the other over the
// underlay and are imported there; the pusher's flows decided without
// them are invalidated; a host that is not a peer gets nothing.
func TestPushToPeer(t *testing.T) {
	hub := memory.NewHub()
	ua, ub := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	a, b := newHost(t, hub, "a", ua, ub, flowstate.Timeouts{}), newHost(t, hub, "b", ub, ua, flowstate.Timeouts{})
	fwd := tcpKey(7, "10.0.0.5", 1000, "192.0.2.9", 80)
	rev := fwd.Reverse()
	rev.Zone = 9
	entries := []flowstate.Entry{flowstate.NewConn(fwd, rev, packet.TCPSyn)}
	// A drop flow of a's, decided before the connection existed.
	var p packet.Parsed
	p.L3Off = 14
	if err := a.dp.Install(&datapath.FlowSpec{Key: flow.KeyOf(&p, 1), Tags: []uint64{entries[0].Rev.Tag()}}); err != nil {
		t.Fatal(err)
	}
	buf, tags, _ := a.sync.Push(entries, []netip.Addr{ub, netip.MustParseAddr("10.99.0.77")}, nil, nil)
	if len(buf) == 0 || len(tags) != 2 {
		t.Fatalf("push: %d-byte packet, %d tags", len(buf), len(tags))
	}
	if n := a.dp.Stats().Flows; n != 0 {
		t.Fatalf("%d flows on the pusher: the flow that lacked the state must go", n)
	}
	waitFor(t, "b imported the connection", func() bool { return b.sync.Table().Len() == 1 })
	if a.sync.count.sent.Load() != 1 || a.sync.count.sendErrors.Load() != 1 || b.sync.count.received.Load() != 1 {
		t.Fatalf("sent %d, errors %d (the stranger), received %d", a.sync.count.sent.Load(), a.sync.count.sendErrors.Load(),
			b.sync.count.received.Load())
	}
	if st := b.sync.Status(); st.Entries != 1 || st.StateReceived != 1 {
		t.Fatalf("b's status %+v", st)
	}
	// Pushing with no peers still invalidates, and sends nothing.
	if _, _, _ = a.sync.Push(entries, nil, buf, tags); a.sync.count.sent.Load() != 1 {
		t.Fatal("a push without peers sent something")
	}
}

// The sweeper refreshes the entries of flows that still hit and removes
// the others when they expire, invalidating the flows that read them.
func TestSweepAndTouch(t *testing.T) {
	hub := memory.NewHub()
	timeouts := flowstate.Timeouts{TCPSynSent: 600 * time.Millisecond}
	a := newHost(t, hub, "a", netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2"), timeouts)
	live, dead := tcpKey(7, "10.0.0.5", 1, "192.0.2.9", 80), tcpKey(7, "10.0.0.5", 2, "192.0.2.9", 80)
	var tx flowstate.Tx
	for _, k := range []flowstate.Key{live, dead} {
		tx.Add(flowstate.NewConn(k, k.Reverse(), packet.TCPSyn))
	}
	if err := a.sync.Table().Commit(&tx, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	// A flow that keeps hitting carries live's key; one that read dead's
	// entry is idle.
	frame := make([]byte, 64)
	n, err := packet.BuildARPRequest(frame, packet.MAC{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	frame = frame[:n]
	var p packet.Parsed
	p.Decode(frame)
	liveKey := live
	liveKey.Type = flowstate.KeyConn
	if err := a.dp.Install(&datapath.FlowSpec{Key: flow.KeyOf(&p, 1), Actions: []flow.Action{{Type: flow.ActOutput, Port: 1, PortID: "p-a"}},
		State: []flowstate.Key{liveKey}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.sync.Run(ctx) }()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if err := a.vm.Send(frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := a.sync.Table().Get(&liveKey); !ok {
		t.Fatal("the entry of a flow that kept hitting expired")
	}
	deadKey := dead
	deadKey.Type = flowstate.KeyConn
	if _, ok := a.sync.Table().Get(&deadKey); ok {
		t.Fatal("an idle connection outlived its timeout")
	}
	if a.sync.count.touched.Load() == 0 || a.dp.Stats().Hits == 0 {
		t.Fatalf("%d entries touched, %d hits", a.sync.count.touched.Load(), a.dp.Stats().Hits)
	}
}
