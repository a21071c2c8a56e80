package memory

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// udpFrame builds an Ethernet/IPv4/UDP frame with a valid IPv4 header.
func udpFrame(sport uint16) []byte {
	b := make([]byte, 64)
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, packet.IPProtoUDP
	ip[2], ip[3] = 0, 50
	copy(ip[12:16], []byte{10, 0, 0, 1})
	copy(ip[16:20], []byte{10, 0, 0, 2})
	sum := packet.IPv4HeaderChecksum(ip[:20])
	ip[10], ip[11] = byte(sum>>8), byte(sum)
	ip[20], ip[21], ip[22], ip[23] = byte(sport>>8), byte(sport), 0, 7
	ip[24], ip[25] = 0, 30
	return b
}

// running is a datapath with two bound interfaces, running, whose miss
// handler installs a flow from the first to the second.
type running struct {
	dp     *Datapath
	a, b   *Interface
	misses chan struct{}
}

func start(t testing.TB) *running {
	t.Helper()
	h := NewHost(nil)
	r := &running{dp: New(datapath.Config{}, h), misses: make(chan struct{}, 16)}
	var err error
	if r.a, err = h.AddInterface("a"); err != nil {
		t.Fatal(err)
	}
	if r.b, err = h.AddInterface("b"); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		if err := r.dp.AddPort(datapath.PortConfig{PortID: "p-" + name, Index: int32(i + 1), Interface: name, TunnelKey: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	out := []flow.Action{{Type: flow.ActSetEthDst, MAC: packet.MAC{2, 0, 0, 0, 0, 9}}, {Type: flow.ActDecTTL, Count: 1},
		{Type: flow.ActOutput, Port: 2, PortID: "p-b"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.dp.Run(ctx, datapath.MissFunc(func(u *datapath.Upcall) {
			if err := r.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: out}); err != nil {
				t.Error(err)
			}
			if err := r.dp.Execute(u.InPort, u.Frame, out); err != nil {
				t.Error(err)
			}
			r.misses <- struct{}{}
		}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// through sends f into a and waits for it out of b, without allocating.
func (r *running) through(f []byte) {
	if err := r.a.Send(f); err != nil {
		panic(err)
	}
	for {
		if out := r.b.toVM.pop(); out != nil {
			out.free()
			return
		}
		<-r.b.toVM.ready
	}
}

// TestHitPathAllocs: a frame that hits a flow, rewritten and output, costs
// no allocation (the frame buffers are pooled).
func TestHitPathAllocs(t *testing.T) {
	r := start(t)
	f := udpFrame(1000)
	r.through(f) // the miss installs the flow
	<-r.misses
	for range 100 {
		r.through(f)
	}
	if n := testing.AllocsPerRun(2000, func() { r.through(f) }); n != 0 {
		t.Fatalf("%v allocations per forwarded frame, want 0", n)
	}
	if s := r.dp.Stats(); s.Misses != 1 || s.Hits < 2000 {
		t.Fatalf("hits %d misses %d: the frames did not take the flow", s.Hits, s.Misses)
	}
}

func BenchmarkHitPath(b *testing.B) {
	r := start(b)
	f := udpFrame(1000)
	r.through(f)
	<-r.misses
	b.ReportAllocs()
	for b.Loop() {
		r.through(f)
	}
}

// Interfaces come and go like a VM's tap: a port bound to a deleted
// interface receives nothing; binding again the new interface of that
// name works; events say so in order.
func TestInterfacesAndLinkEvents(t *testing.T) {
	h := NewHost(nil)
	if _, err := h.AddInterface("tap1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddInterface("tap1"); err == nil {
		t.Fatal("a second interface of the same name was created")
	}
	if _, err := h.AddInterface("a/b"); err == nil {
		t.Fatal("a bad name was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu  sync.Mutex
		got []datapath.LinkEvent
	)
	done := make(chan error, 1)
	go func() {
		done <- h.WatchLinks(ctx, func(ev datapath.LinkEvent) {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		})
	}()
	waitEvents := func(n int) []datapath.LinkEvent {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			evs := slices.Clone(got)
			mu.Unlock()
			if len(evs) >= n {
				return evs
			}
		}
		t.Fatalf("fewer than %d link events: %+v", n, got)
		return nil
	}
	first := waitEvents(1)[0]
	if first.Name != "tap1" || first.Deleted || !first.Up {
		t.Fatalf("existing link: %+v", first)
	}
	if err := h.SetUp("tap1", false); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteInterface("tap1"); err != nil {
		t.Fatal(err)
	}
	again, err := h.AddInterface("tap1")
	if err != nil {
		t.Fatal(err)
	}
	evs := waitEvents(4)
	if evs[1].Up || evs[1].Deleted || !evs[2].Deleted || evs[3].Deleted || evs[3].Index == first.Index || evs[3].Index != again.Index() {
		t.Fatalf("events %+v: want down, deleted, then a new tap1 with a new index", evs)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WatchLinks ended with %v", err)
	}
	links, _ := h.Links(context.Background())
	if len(links) != 1 || links[0].Index != again.Index() {
		t.Fatalf("Links = %+v", links)
	}
	if err := h.DeleteInterface("nope"); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("deleting a missing interface: %v", err)
	}
}

// A port whose interface is deleted stops receiving and outputs there
// are lost and counted; after RemovePort and AddPort on the new interface
// of that name, frames flow again.
func TestPortOnDeletedInterface(t *testing.T) {
	r := start(t)
	f := udpFrame(2000)
	r.through(f)
	<-r.misses
	if err := r.dp.host.DeleteInterface("b"); err != nil {
		t.Fatal(err)
	}
	if err := r.a.Send(f); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the output to a deleted interface counted", func() bool { s := r.dp.Stats(); return s.Drop(datapath.DropTxError) == 1 })
	if err := r.b.Send(f); err == nil {
		t.Fatal("sending into a deleted interface succeeded")
	}
	if err := r.dp.RemovePort("p-b"); err != nil {
		t.Fatal(err)
	}
	if s := r.dp.Stats(); s.Flows != 0 || s.FlowsRemoved != 1 {
		t.Fatalf("flows %d removed %d after RemovePort: the flow to the port must go", s.Flows, s.FlowsRemoved)
	}
	nb, err := r.dp.host.AddInterface("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.AddPort(datapath.PortConfig{PortID: "p-b", Index: 2, Interface: "b", TunnelKey: 2}); err != nil {
		t.Fatal(err)
	}
	r.b = nb
	r.through(f)
	<-r.misses
}

// Two datapaths on one hub: an encap action reaches the other host's port
// by tunnel key; a third datapath may not take a bound address.
func TestHubDelivers(t *testing.T) {
	hub := NewHub()
	ha, hb := NewHost(hub), NewHost(hub)
	a, b := New(datapath.Config{}, ha), New(datapath.Config{}, hb)
	ua, ub := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if err := a.SetTunnels(datapath.TunnelConfig{LocalIP: ua, VXLAN: true, Peers: []netip.Addr{ub}}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTunnels(datapath.TunnelConfig{LocalIP: ub, VXLAN: true, Peers: []netip.Addr{ua}}); err != nil {
		t.Fatal(err)
	}
	if err := New(datapath.Config{}, NewHost(hub)).SetTunnels(datapath.TunnelConfig{LocalIP: ub, GRE: true}); err == nil {
		t.Fatal("a second datapath bound a taken underlay address")
	}
	vm, err := hb.AddInterface("vm")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddPort(datapath.PortConfig{PortID: "p", Index: 1, Interface: "vm", TunnelKey: 77}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, dp := range []*Datapath{a, b} {
		go func() { _ = dp.Run(ctx, datapath.MissFunc(func(*datapath.Upcall) {})) }()
	}
	f := udpFrame(3000)
	enc := []flow.Action{{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: ub, TunnelKey: 77}}
	if err := a.Execute(-1, f, enc); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	got, err := vm.Recv(rctx)
	if err != nil || string(got) != string(f) {
		t.Fatalf("delivered %x, %v; want %x", got, err, f)
	}
	if s := b.Stats(); s.VXLAN.RxPackets != 1 || a.Stats().VXLAN.TxPackets != 1 {
		t.Fatalf("tunnel counters: rx %d tx %d", s.VXLAN.RxPackets, a.Stats().VXLAN.TxPackets)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}
