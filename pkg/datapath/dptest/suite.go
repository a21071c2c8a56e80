//go:build linux

// Package dptest is the conformance suite every datapath implementation
// must pass; RunAll runs it against every registered one. It drives the
// implementation with a scripted MissHandler in place of the simulator, so
// that a failure points at the datapath alone.
//
// A Fixture gives each implementation its world. A datapath of the
// kernel's interfaces (userspace, eBPF) runs in real network namespaces
// (one per simulated host, one for its VMs, veth pairs between them, a
// veth underlay between hosts); frames are injected and captured with raw
// AF_PACKET sockets on the VM ends of the veths, and tunnel encapsulation
// is checked on the underlay wire (and with tcpdump). Those need root and
// skip without it. The in-memory datapath runs on in-memory hosts and an
// in-memory underlay, with no root. The cases are the same: frames are
// compared byte for byte with what the actions should have produced,
// computed independently (checksums from scratch).
//
// It never asserts on speed: waits are bounded generously and only for
// things that must happen.
package dptest

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
)

// RunAll runs the suite against every registered datapath implementation
// (datapath.Names), each on its fixture (For).
func RunAll(t *testing.T) {
	names := datapath.Names()
	if len(names) == 0 {
		t.Fatal("no datapath is registered: link the implementations (blank imports)")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) { Run(t, For(name)) })
	}
}

// Run runs the whole suite against the datapaths fx makes.
func Run(t *testing.T, fx Fixture) {
	cases := []struct {
		name string
		fn   func(*testing.T, Fixture)
	}{
		{"MissExecuteRewrites", testMissExecute},
		{"NATRewrites", testNATRewrites},
		{"HitsAndCounters", testHits},
		{"SlowMissBlocksOnlyItsPort", testMissIsolation},
		{"Invalidate", testInvalidate},
		{"IdleExpiry", testExpiry},
		{"Eviction", testEviction},
		{"Tunnels", testTunnels},
		{"FlowState", testFlowState},
		{"Probes", testProbes},
		{"Conntrack", testConntrack},
		{"HostilePort", testHostilePort},
		{"RemovePort", testRemovePort},
		{"InstallErrors", testInstallErrors},
		{"DSCPMarking", testDSCP},
		{"Mirror", testMirror},
		{"PortQoS", testPortQoS},
		{"Offloads", testOffloads},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, fx) })
	}
}

// testMissExecute: a miss reaches the handler with the right in-port, port
// ID and key; Install + Execute deliver the packet out of the right port
// with the rewrites applied, byte for byte.
func testMissExecute(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "mx", datapath.FlowConfig{})
	vm1, vm2, vm3 := h.addVM("1", 11, 101), h.addVM("2", 12, 102), h.addVM("3", 13, 103)

	cases := []struct {
		name string
		in   []byte
		acts []flow.Action
		want []byte
	}{{
		name: "eth-rewrite-dec-ttl",
		in:   flowFrame(1001),
		acts: []flow.Action{{Type: flow.ActSetEthSrc, MAC: macRtr}, {Type: flow.ActSetEthDst, MAC: macRtr2}, {Type: flow.ActDecTTL, Count: 1}, output(vm2)},
		want: Rewritten(flowFrame(1001), macRtr, macRtr2, 1),
	}, {
		name: "dec-ttl-by-3",
		in:   flowFrame(1002),
		acts: []flow.Action{{Type: flow.ActDecTTL, Count: 3}, output(vm2)},
		want: Rewritten(flowFrame(1002), macVM1, macVM2, 3),
	}, {
		name: "push-vlan",
		in:   flowFrame(1003),
		acts: []flow.Action{{Type: flow.ActPushVLAN, VLAN: 100}, output(vm2)},
		want: Pushed(flowFrame(1003), 100),
	}, {
		name: "pop-vlan",
		in:   Pushed(flowFrame(1004), 200),
		acts: []flow.Action{{Type: flow.ActPopVLAN}, output(vm2)},
		want: flowFrame(1004),
	}, {
		name: "push-then-dec-ttl",
		in:   flowFrame(1005),
		acts: []flow.Action{{Type: flow.ActPushVLAN, VLAN: 7}, {Type: flow.ActDecTTL, Count: 1}, output(vm2)},
		want: Pushed(Rewritten(flowFrame(1005), macVM1, macVM2, 1), 7),
	}}
	for _, c := range cases {
		h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil, c.acts...))
		vm1.send(c.in)
		u := h.miss.next(t, c.name)
		if u.InPort != vm1.cfg.Index || u.PortID != vm1.cfg.PortID {
			t.Errorf("%s: upcall from port %d (%s), want %d (%s)", c.name, u.InPort, u.PortID, vm1.cfg.Index, vm1.cfg.PortID)
		}
		if want := Key(c.in, vm1.cfg.Index); u.Key != want {
			t.Errorf("%s: upcall key\n got %+v\nwant %+v", c.name, u.Key, want)
		}
		if string(u.Frame) != string(c.in) {
			t.Errorf("%s: upcall frame %x, want the frame sent %x", c.name, u.Frame, c.in)
		}
		vm2.expect(c.name, c.want)
	}

	// A flood: output, rewrite, output. The first output must carry the
	// frame as it was before the rewrite.
	in := flowFrame(1006)
	h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil,
		output(vm2), flow.Action{Type: flow.ActPushVLAN, VLAN: 5}, output(vm3)))
	vm1.send(in)
	h.miss.next(t, "flood")
	vm2.expect("flood, first output", in)
	vm3.expect("flood, second output", Pushed(in, 5))
	// And the same from the flow (hit path), not just Execute.
	vm1.send(in)
	vm2.expect("flood hit, first output", in)
	vm3.expect("flood hit, second output", Pushed(in, 5))
	h.miss.none(t, "flood hit")
}

// testHits: later packets of a flow hit without upcalls, are forwarded with
// the same rewrites, and are counted per flow and in Stats.
func testHits(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "hit", datapath.FlowConfig{})
	vm1, vm2 := h.addVM("1", 1, 1), h.addVM("2", 2, 2)
	acts := []flow.Action{{Type: flow.ActSetEthDst, MAC: macRtr2}, {Type: flow.ActDecTTL, Count: 1}, output(vm2)}
	h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, []uint64{7}, acts...))
	in := flowFrame(2001)
	want := Rewritten(in, macVM1, macRtr2, 1)
	vm1.send(in)
	u := h.miss.next(t, "first packet")
	vm2.expect("first packet", want)

	const n = 20
	for i := range n {
		vm1.send(in)
		vm2.expect(fmt.Sprintf("hit %d", i), want)
	}
	h.miss.none(t, "hits")
	eventually(t, "flow counters", func() (bool, string) {
		f, ok := flowByKey(h.dp, u.Key)
		return ok && f.Packets == n && f.Bytes == uint64(n*len(in)),
			fmt.Sprintf("found %v, packets %d, bytes %d, want %d and %d", ok, f.Packets, f.Bytes, n, n*len(in))
	})
	eventually(t, "stats", func() (bool, string) {
		s := h.dp.Stats()
		p1, _ := s.Port(vm1.cfg.PortID)
		p2, _ := s.Port(vm2.cfg.PortID)
		return s.Hits == n && s.Misses == 1 && s.Flows == 1 && p1.RxPackets == n+1 && p2.TxPackets == n+1,
			fmt.Sprintf("hits %d misses %d flows %d rx %d tx %d", s.Hits, s.Misses, s.Flows, p1.RxPackets, p2.TxPackets)
	})
	f, _ := flowByKey(h.dp, u.Key)
	if f.InPortID != vm1.cfg.PortID || len(f.Actions) != len(acts) || len(f.Tags) != 1 || f.Tags[0] != 7 {
		t.Errorf("flow dump: %s (tags %v)", f.String(), f.Tags)
	}
	t.Logf("flow: %s", f.String())
}

// testMissIsolation: while the handler is busy with a miss from one port,
// other ports keep forwarding their flows and keep reaching the handler.
func testMissIsolation(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "iso", datapath.FlowConfig{})
	vm1, vm2, vm3 := h.addVM("1", 1, 1), h.addVM("2", 2, 2), h.addVM("3", 3, 3)
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	h.miss.setScript(func(u *datapath.Upcall) {
		if u.InPort == vm1.cfg.Index {
			<-release // a simulation stuck for as long as the test likes
			return
		}
		forward(t, h.dp, datapath.ClassNormal, nil, output(vm3))(u)
	})
	vm1.send(flowFrame(2501))
	h.miss.next(t, "the stuck miss")
	in := UDP{SrcMAC: macVM2, DstMAC: macVM1, Src: netip.MustParseAddr("10.0.0.2"),
		Dst: netip.MustParseAddr("10.0.0.3"), SrcPort: 2502, DstPort: 7}.Frame()
	vm2.send(in)
	if u := h.miss.next(t, "a miss on another port"); u.InPort != vm2.cfg.Index {
		t.Fatalf("upcall from port %d, want %d", u.InPort, vm2.cfg.Index)
	}
	vm3.expect("executed while port 1's miss is stuck", in)
	vm2.send(in)
	vm3.expect("hit while port 1's miss is stuck", in)
	close(release)
	vm1.send(flowFrame(2503))
	h.miss.next(t, "port 1 again after its miss returned")
}

// testInvalidate: Invalidate removes exactly the flows carrying any of the
// tags; their next packet misses again, the others keep hitting.
func testInvalidate(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "inv", datapath.FlowConfig{})
	vm1, vm2 := h.addVM("1", 1, 1), h.addVM("2", 2, 2)
	tags := map[uint16][]uint64{3001: {1, 2}, 3002: {2, 3}, 3003: {4}}
	h.miss.setScript(func(u *datapath.Upcall) {
		acts := []flow.Action{output(vm2)}
		if err := h.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, Tags: tags[u.Pkt.SrcPort]}); err != nil {
			t.Errorf("Install: %v", err)
		}
		if err := h.dp.Execute(u.InPort, u.Frame, acts); err != nil {
			t.Errorf("Execute: %v", err)
		}
	})
	for _, sp := range []uint16{3001, 3002, 3003} {
		vm1.send(flowFrame(sp))
		h.miss.next(t, "install")
		vm2.expect("install", flowFrame(sp))
	}
	hitsOnly := func(what string, sports ...uint16) {
		t.Helper()
		for _, sp := range sports {
			vm1.send(flowFrame(sp))
			vm2.expect(what, flowFrame(sp))
		}
		h.miss.none(t, what)
	}
	hitsOnly("before invalidation", 3001, 3002, 3003)

	if n := h.dp.Invalidate(3); n != 1 {
		t.Fatalf("Invalidate(3) = %d, want 1 (the flow tagged 2,3)", n)
	}
	if n := h.dp.Invalidate(3); n != 0 {
		t.Fatalf("Invalidate(3) again = %d, want 0", n)
	}
	if s := h.dp.Stats(); s.Flows != 2 || s.FlowsInvalidated != 1 {
		t.Fatalf("after Invalidate(3): %d flows, %d invalidated, want 2 and 1", s.Flows, s.FlowsInvalidated)
	}
	hitsOnly("untagged flows still hit", 3001, 3003)
	vm1.send(flowFrame(3002))
	if u := h.miss.next(t, "invalidated flow"); u.Key != Key(flowFrame(3002), 1) {
		t.Fatalf("upcall for the wrong flow: %+v", u.Key)
	}
	vm2.expect("invalidated flow re-executed", flowFrame(3002))

	// The reinstalled 3002 carries tag 2 again: 1 and 4 name three flows.
	if n := h.dp.Invalidate(1, 4, 99); n != 2 {
		t.Fatalf("Invalidate(1, 4, 99) = %d, want 2", n)
	}
	if n := h.dp.Invalidate(2); n != 1 {
		t.Fatalf("Invalidate(2) = %d, want 1 (3001 is gone already)", n)
	}
	if s := h.dp.Stats(); s.Flows != 0 {
		t.Fatalf("%d flows left, want 0", s.Flows)
	}
	vm1.send(flowFrame(3003))
	h.miss.next(t, "after invalidating everything")
	vm2.expect("after invalidating everything", flowFrame(3003))
	if n := h.dp.Flush(); n != 1 {
		t.Fatalf("Flush() = %d, want 1", n)
	}
}

// testExpiry: idle flows expire after their class's timeout, which the
// datapath enforces by itself; a flow of a class with a long timeout stays.
func testExpiry(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "exp", datapath.FlowConfig{IdleTimeout: [datapath.NumFlowClasses]time.Duration{
		datapath.ClassNormal: time.Hour, datapath.ClassDrop: 300 * time.Millisecond}})
	vm1, vm2 := h.addVM("1", 1, 1), h.addVM("2", 2, 2)
	fwd, drop := flowFrame(4001), flowFrame(4002)
	h.miss.setScript(func(u *datapath.Upcall) {
		if u.Pkt.SrcPort == 4002 {
			if err := h.dp.Install(&datapath.FlowSpec{Key: u.Key, Class: datapath.ClassDrop}); err != nil {
				t.Errorf("Install: %v", err)
			}
			return
		}
		forward(t, h.dp, datapath.ClassNormal, nil, output(vm2))(u)
	})
	vm1.send(fwd)
	h.miss.next(t, "normal flow")
	vm2.expect("normal flow", fwd)
	vm1.send(drop)
	h.miss.next(t, "drop flow")
	eventually(t, "drop flow expires", func() (bool, string) {
		s := h.dp.Stats()
		return s.Flows == 1 && s.FlowsExpired == 1, fmt.Sprintf("%d flows, %d expired", s.Flows, s.FlowsExpired)
	})
	if _, ok := flowByKey(h.dp, Key(fwd, 1)); !ok {
		t.Fatal("the normal flow (1 h timeout) expired with the drop flow")
	}
	vm1.send(drop)
	h.miss.next(t, "expired flow misses again")

	// Normal flows expire too, with their own timeout.
	h2 := newHost(t, fx, "exp2", datapath.FlowConfig{IdleTimeout: [datapath.NumFlowClasses]time.Duration{
		datapath.ClassNormal: 300 * time.Millisecond}})
	a, b := h2.addVM("1", 1, 1), h2.addVM("2", 2, 2)
	h2.miss.setScript(forward(t, h2.dp, datapath.ClassNormal, nil, output(b)))
	a.send(fwd)
	h2.miss.next(t, "normal flow")
	b.expect("normal flow", fwd)
	eventually(t, "normal flow expires", func() (bool, string) {
		s := h2.dp.Stats()
		return s.Flows == 0 && s.FlowsExpired == 1, fmt.Sprintf("%d flows, %d expired", s.Flows, s.FlowsExpired)
	})
	a.send(fwd)
	h2.miss.next(t, "expired flow misses again")
	b.expect("expired flow re-executed", fwd)
}

// testEviction: at the flow cap, Install evicts (and counts) rather than
// fail or grow.
func testEviction(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "evi", datapath.FlowConfig{MaxFlows: 3})
	h.addVM("1", 1, 1)
	vm2 := h.addVM("2", 2, 2)
	for sp := uint16(5001); sp <= 5005; sp++ {
		if err := h.dp.Install(&datapath.FlowSpec{Key: Key(flowFrame(sp), 1), Actions: []flow.Action{output(vm2)}}); err != nil {
			t.Fatalf("Install: %v", err)
		}
	}
	s := h.dp.Stats()
	if s.Flows != 3 || s.FlowsEvicted != 2 || s.FlowsInstalled != 5 {
		t.Fatalf("after 5 installs with a cap of 3: %d flows, %d evicted, %d installed", s.Flows, s.FlowsEvicted, s.FlowsInstalled)
	}
	// Replacing an existing key is not growth: nothing is evicted.
	if err := h.dp.Install(&datapath.FlowSpec{Key: Key(flowFrame(5005), 1), Class: datapath.ClassDrop}); err != nil {
		t.Fatal(err)
	}
	if s := h.dp.Stats(); s.Flows != 3 || s.FlowsEvicted != 2 {
		t.Fatalf("after replacing a flow: %d flows, %d evicted", s.Flows, s.FlowsEvicted)
	}
}

// testInstallErrors: flows naming unattached ports are refused.
func testInstallErrors(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "ierr", datapath.FlowConfig{})
	vm1 := h.addVM("1", 1, 1)
	key := Key(flowFrame(6001), 1)
	err := h.dp.Install(&datapath.FlowSpec{Key: key, Actions: []flow.Action{{Type: flow.ActOutput, Port: 99}}})
	if !errors.Is(err, datapath.ErrUnknownPort) {
		t.Errorf("Install with output to an unattached port: %v, want ErrUnknownPort", err)
	}
	key.InPort = 98
	if err := h.dp.Install(&datapath.FlowSpec{Key: key, Actions: []flow.Action{output(vm1)}}); !errors.Is(err, datapath.ErrUnknownPort) {
		t.Errorf("Install on an unattached in-port: %v, want ErrUnknownPort", err)
	}
	if err := h.dp.Execute(1, flowFrame(6001), []flow.Action{{Type: flow.ActOutput, Port: 99}}); !errors.Is(err, datapath.ErrUnknownPort) {
		t.Errorf("Execute with output to an unattached port: %v, want ErrUnknownPort", err)
	}
	if err := h.dp.AddPort(datapath.PortConfig{PortID: "dup", Index: 1, Interface: "lo"}); err == nil {
		t.Error("AddPort with a used index succeeded")
	}
	if err := h.dp.AddPort(datapath.PortConfig{PortID: "nosuch", Index: 50, Interface: "nosuch0", TunnelKey: 50}); err == nil {
		t.Error("AddPort of a missing interface succeeded")
	}
	if s := h.dp.Stats(); s.Flows != 0 {
		t.Errorf("%d flows after failed installs", s.Flows)
	}
}

// testRemovePort: a detached port is no longer delivered to, its flows
// (in and out) are gone, and frames entering it are no longer read.
func testRemovePort(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "rm", datapath.FlowConfig{})
	vm1, vm2 := h.addVM("1", 1, 1), h.addVM("2", 2, 2)
	h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil, output(vm2)))
	in := flowFrame(7001)
	vm1.send(in)
	h.miss.next(t, "install")
	vm2.expect("before removal", in)

	// No more forwarding to vm2 from here: a stray frame of vm1's that
	// missed while the port went would make the script's Execute race
	// with the removal (seen once under load).
	h.miss.setScript(nil)
	if err := h.dp.RemovePort(vm2.cfg.PortID); err != nil {
		t.Fatal(err)
	}
	s := h.dp.Stats()
	if s.Flows != 0 || s.FlowsRemoved != 1 {
		t.Fatalf("after RemovePort: %d flows, %d removed; want the flow to the port gone", s.Flows, s.FlowsRemoved)
	}
	if _, ok := s.Port(vm2.cfg.PortID); ok {
		t.Fatal("removed port still in Stats")
	}
	// The next packet misses; the agent's Execute to the gone port fails.
	var execErr = make(chan error, 1)
	h.miss.setScript(func(u *datapath.Upcall) { execErr <- h.dp.Execute(u.InPort, u.Frame, []flow.Action{output(vm2)}) })
	vm1.send(in)
	h.miss.next(t, "after removal")
	if err := <-execErr; !errors.Is(err, datapath.ErrUnknownPort) {
		t.Errorf("Execute to a removed port: %v, want ErrUnknownPort", err)
	}
	vm2.expectNone("after removal")

	if err := h.dp.RemovePort(vm1.cfg.PortID); err != nil {
		t.Fatal(err)
	}
	vm1.send(in)
	h.miss.none(t, "frame on a removed port")
	if err := h.dp.RemovePort(vm1.cfg.PortID); !errors.Is(err, datapath.ErrUnknownPort) {
		t.Errorf("second RemovePort: %v, want ErrUnknownPort", err)
	}
	// The interface can be bound again.
	if err := h.dp.AddPort(vm2.cfg); err != nil {
		t.Fatalf("re-adding a removed port: %v", err)
	}
}
