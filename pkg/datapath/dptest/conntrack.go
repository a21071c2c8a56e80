//go:build linux

package dptest

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// testConntrack checks the datapath.ConntrackOffloader contract, for the
// datapaths that offer it: an offloaded connection's flows forward its
// closing segments without a miss and advance its state as they pass (the
// agent reads it back with SyncConns); they outlive their idle timeout
// while the connection lives; a packet of a connection that timed out, or
// that the agent dropped, misses again.
func testConntrack(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "ct", datapath.FlowConfig{IdleTimeout: [datapath.NumFlowClasses]time.Duration{300 * time.Millisecond, 300 * time.Millisecond}})
	off, ok := h.dp.(datapath.ConntrackOffloader)
	if !ok {
		t.Skipf("%s does not track connections in its fast path", fx.Name())
	}
	vm1, vm2 := h.addVM("1", 1, 101), h.addVM("2", 2, 102)
	if err := off.SetConntrackTimeouts(flowstate.Timeouts{TCPSynSent: time.Minute, TCPEstablished: time.Hour,
		TCPFinWait: time.Minute, TCPTimeWait: time.Minute, TCPClosed: 1500 * time.Millisecond}); err != nil {
		t.Fatalf("SetConntrackTimeouts: %v", err)
	}
	c1, c2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	fwd := flowstate.Key{Src: c1.As16(), Dst: c2.As16(), Zone: 7, SrcPort: 7100, DstPort: 22, Proto: packet.IPProtoTCP,
		Type: flowstate.KeyConn, Family: 4}
	rev := fwd.Reverse()
	rev.Zone = 8
	now := time.Now().UnixNano()
	entry := flowstate.NewConn(fwd, rev, packet.TCPSyn)
	if err := off.PutConns([]datapath.ConnEntry{{Entry: entry, LastUsed: now, Expires: now + int64(time.Minute)}}); err != nil {
		t.Fatalf("PutConns: %v", err)
	}
	// What the agent's walk would install: each direction reads its key
	// and carries its tag.
	h.miss.setScript(func(u *datapath.Upcall) {
		out, key := vm2, fwd
		if u.InPort == vm2.cfg.Index {
			out, key = vm1, rev
		}
		acts := []flow.Action{output(out)}
		if err := h.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, Tags: []uint64{key.Tag()},
			State: []flowstate.Key{key}}); err != nil {
			t.Errorf("Install: %v", err)
		}
		if err := h.dp.Execute(u.InPort, u.Frame, acts); err != nil {
			t.Errorf("Execute: %v", err)
		}
	})
	seg := func(from *vm, flags uint8) []byte {
		f := L4{SrcMAC: macVM1, DstMAC: macVM2, Src: c1, Dst: c2, Proto: packet.IPProtoTCP, SrcPort: 7100, DstPort: 22,
			TCPFlags: flags, Len: 80}
		if from == vm2 {
			f.SrcMAC, f.DstMAC, f.Src, f.Dst, f.SrcPort, f.DstPort = macVM2, macVM1, c2, c1, 22, 7100
		}
		return f.Frame()
	}
	pass := func(from, to *vm, flags uint8, miss bool) {
		t.Helper()
		f := seg(from, flags)
		from.send(f)
		what := fmt.Sprintf("segment %#x from %s", flags, from.cfg.PortID)
		to.expect(what, f)
		if miss {
			h.miss.next(t, what)
		} else {
			h.miss.none(t, what)
		}
	}
	state := func() (flowstate.State, datapath.ConnEntry, int) {
		var got datapath.ConnEntry
		n := 0
		if err := off.SyncConns(func(c *datapath.ConnEntry) bool {
			n++
			got = *c
			return true
		}); err != nil {
			t.Fatalf("SyncConns: %v", err)
		}
		return got.State, got, n
	}

	pass(vm1, vm2, packet.TCPSyn, true)
	pass(vm2, vm1, packet.TCPSyn|packet.TCPAck, true)
	pass(vm1, vm2, packet.TCPAck, false)
	pass(vm2, vm1, packet.TCPAck|packet.TCPPsh, false)
	st, e, n := state()
	if n != 1 || e.Fwd != fwd || e.Rev != rev || st.Phase() != flowstate.PhaseEstablished || !st.Replied() {
		t.Fatalf("after a reply: %d entries, %v / %v in %s (replied %v), want the connection established", n, e.Fwd, e.Rev, st.Phase(), st.Replied())
	}
	if left := time.Duration(e.Expires - time.Now().UnixNano()); left < 50*time.Minute {
		t.Errorf("established connection expires in %v, want about an hour (its timeout)", left)
	}

	// Idle well past the flows' own timeout: the connection lives, so do
	// its flows.
	time.Sleep(time.Second)
	pass(vm1, vm2, packet.TCPAck, false)

	// The close, in the kernel: no misses, the state follows.
	pass(vm1, vm2, packet.TCPAck|packet.TCPFin, false)
	if st, _, _ := state(); st.Phase() != flowstate.PhaseFinWait {
		t.Errorf("after a FIN: %s, want fin-wait", st.Phase())
	}
	pass(vm2, vm1, packet.TCPAck|packet.TCPFin, false)
	if st, _, _ := state(); st.Phase() != flowstate.PhaseTimeWait {
		t.Errorf("after FINs both ways: %s, want time-wait", st.Phase())
	}
	pass(vm1, vm2, packet.TCPRst, false)
	st, e, _ = state()
	if st.Phase() != flowstate.PhaseClosed {
		t.Errorf("after a RST: %s, want closed", st.Phase())
	}
	if left := time.Duration(e.Expires - time.Now().UnixNano()); left > 1500*time.Millisecond {
		t.Errorf("closed connection expires in %v, want within its 1.5 s timeout", left)
	}

	// Past the closing timeout the connection is over: its packets go to
	// the agent.
	time.Sleep(2 * time.Second)
	pass(vm1, vm2, packet.TCPAck, true)
	if s := off.ConntrackStats(); s.Entries != 1 || s.Max < s.Entries {
		t.Errorf("conntrack stats %+v: want one entry", s)
	}

	// The agent drops the entry (its table no longer holds it): the
	// flows that read it go, and the next packet misses.
	if err := off.PutConns([]datapath.ConnEntry{{Entry: entry, LastUsed: time.Now().UnixNano(), Expires: time.Now().Add(time.Minute).UnixNano()}}); err != nil {
		t.Fatalf("PutConns: %v", err)
	}
	h.dp.Flush()
	pass(vm1, vm2, packet.TCPAck, true)
	pass(vm1, vm2, packet.TCPAck, false)
	if err := off.SyncConns(func(*datapath.ConnEntry) bool { return false }); err != nil {
		t.Fatalf("SyncConns: %v", err)
	}
	if _, _, n := state(); n != 0 {
		t.Errorf("%d entries after the agent dropped them all", n)
	}
	pass(vm1, vm2, packet.TCPAck, true)
	// That miss installed the flow again, naming no connection (none is
	// offloaded): a plain stateful flow, whose FIN goes to the agent.
	pass(vm1, vm2, packet.TCPAck|packet.TCPFin, true)
}
