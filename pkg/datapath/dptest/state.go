//go:build linux

package dptest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// testFlowState: flow-state packets (the reserved tunnel key) go from one
// host's SendState to the other's StateHandler, byte for byte and with the
// sender's underlay address, over VXLAN and over GRE, and never out of a
// port; strangers' state packets and empty ones are dropped and counted;
// the reserved key cannot name a port; a flow keeps the state keys it was
// installed with, for the agent to refresh.
func testFlowState(t *testing.T, fx Fixture) {
	p := newPair(t, fx)
	vmA := p.a.addVM("a", 1, 101)

	payload := []byte{flowstate.WireVersion, 0, 1, 2, 3}
	if err := p.b.dp.SendState(underA, payload); err != nil {
		t.Fatalf("SendState: %v", err)
	}
	got := p.a.miss.nextState(t, "state packet over VXLAN")
	if got.from != underB || !bytes.Equal(got.payload, payload) {
		t.Fatalf("state packet: from %s payload %x, want from %s payload %x", got.from, got.payload, underB, payload)
	}
	if st := p.b.dp.Stats(); st.VXLAN.StateTx != 1 {
		t.Errorf("sender: VXLAN StateTx %d, want 1", st.VXLAN.StateTx)
	}
	eventually(t, "receiver counts the state packet", func() (bool, string) {
		st := p.a.dp.Stats()
		return st.VXLAN.StateRx == 1, dropsString(st)
	})

	// With VXLAN off, GRE carries them.
	if err := p.b.dp.SetTunnels(datapath.TunnelConfig{LocalIP: underB, GRE: true, Peers: []netip.Addr{underA}}); err != nil {
		t.Fatal(err)
	}
	if err := p.b.dp.SendState(underA, payload[:3]); err != nil {
		t.Fatalf("SendState over GRE: %v", err)
	}
	if got := p.a.miss.nextState(t, "state packet over GRE"); got.from != underB || !bytes.Equal(got.payload, payload[:3]) {
		t.Fatalf("GRE state packet: from %s payload %x", got.from, got.payload)
	}

	// Refused locally: a stranger, an empty payload.
	if err := p.b.dp.SendState(underBad, payload); err == nil {
		t.Error("SendState to an address that is not a peer succeeded")
	}
	if err := p.b.dp.SendState(underA, nil); err == nil {
		t.Error("SendState of an empty payload succeeded")
	}

	// Hostile input: from a stranger, or empty. Garbage payloads are the
	// handler's to judge (the agent decodes and counts them): they arrive.
	vx := func(payload []byte) []byte {
		b := make([]byte, 8, 8+len(payload))
		b[0] = 0x08
		binary.BigEndian.PutUint32(b[4:], packet.StateTunnelKey<<8)
		return append(b, payload...)
	}
	before := p.a.dp.Stats()
	p.b.env.sendRaw(t, underBad, false, vx(payload))
	p.b.env.sendRaw(t, underB, false, vx(nil))
	p.b.env.sendRaw(t, underB, false, vx([]byte{0xde, 0xad}))
	eventually(t, "hostile state packets counted", func() (bool, string) {
		st := p.a.dp.Stats()
		ok := st.Drop(datapath.DropTunnelUnknownPeer) == before.Drop(datapath.DropTunnelUnknownPeer)+1 &&
			st.Drop(datapath.DropTunnelStateUnhandled) == before.Drop(datapath.DropTunnelStateUnhandled)+1
		return ok, dropsString(st)
	})
	if got := p.a.miss.nextState(t, "garbage state payload"); !bytes.Equal(got.payload, []byte{0xde, 0xad}) {
		t.Fatalf("garbage payload delivered as %x", got.payload)
	}
	vmA.expectNone("state packets")
	p.a.miss.none(t, "state packets")

	// The reserved key names no port.
	if err := p.a.dp.AddPort(datapath.PortConfig{PortID: "port-r", Index: 9, Interface: "lo", TunnelKey: packet.StateTunnelKey}); err == nil {
		t.Error("AddPort with the reserved tunnel key succeeded")
	}

	// A flow keeps its state keys.
	keys := []flowstate.Key{{Zone: 7, Proto: packet.IPProtoTCP, Type: flowstate.KeyConn, Family: 4, SrcPort: 1, DstPort: 2}}
	p.a.miss.setScript(func(u *datapath.Upcall) {
		acts := []flow.Action{output(vmA)}
		if err := p.a.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, State: keys}); err != nil {
			t.Errorf("Install: %v", err)
		}
	})
	f := flowFrame(7001)
	vmA.send(f)
	u := p.a.miss.next(t, "miss")
	eventually(t, "flow installed", func() (bool, string) {
		info, ok := flowByKey(p.a.dp, u.Key)
		return ok && len(info.State) == 1 && info.State[0] == keys[0], "no flow with the state keys"
	})

	// Segments that close a TCP connection go to the slow path on a flow
	// that carries state, so its entries learn the connection ended; other
	// segments of the flow hit, and a stateless flow forwards them all.
	seg := func(flags uint8) []byte {
		return L4{SrcMAC: macVM1, DstMAC: macVM2, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
			Proto: packet.IPProtoTCP, SrcPort: 7002, DstPort: 22, TCPFlags: flags, Len: 80}.Frame()
	}
	for _, c := range []struct {
		name  string
		state []flowstate.Key
	}{{"stateful", keys}, {"stateless", nil}} {
		p.a.miss.setScript(func(u *datapath.Upcall) {
			acts := []flow.Action{output(vmA)}
			if err := p.a.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, State: c.state}); err != nil {
				t.Errorf("Install: %v", err)
			}
			_ = p.a.dp.Execute(u.InPort, u.Frame, acts)
		})
		syn := seg(packet.TCPSyn)
		vmA.send(syn)
		p.a.miss.next(t, c.name+" SYN")
		vmA.expect(c.name+" SYN", syn)
		for _, flags := range []uint8{packet.TCPAck, packet.TCPAck | packet.TCPFin, packet.TCPRst, packet.TCPAck | packet.TCPPsh} {
			f := seg(flags)
			vmA.send(f)
			vmA.expect(fmt.Sprintf("%s segment with flags %#x", c.name, flags), f)
			if closes := flags&(packet.TCPFin|packet.TCPRst) != 0; closes && c.state != nil {
				p.a.miss.next(t, fmt.Sprintf("%s segment with flags %#x", c.name, flags))
			} else {
				p.a.miss.none(t, fmt.Sprintf("%s segment with flags %#x", c.name, flags))
			}
		}
		p.a.dp.Flush()
	}
}

// nextState waits for the next state packet.
func (h *handler) nextState(t *testing.T, what string) stateMsg {
	t.Helper()
	select {
	case m := <-h.states:
		return m
	case <-time.After(arriveTimeout):
		t.Fatalf("%s: no state packet within %v", what, arriveTimeout)
		return stateMsg{}
	}
}
