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
	"github.com/nagare/nagare/pkg/packet"
)

// testProbes: liveness probes (packet.ProbeTunnelKey) go from one host's
// SendProbe to the other's ProbeHandler like flow-state packets do, over
// VXLAN and GRE, counted apart; strangers' and empty ones are dropped and
// counted; the key names no port. Ports without a tunnel key (the agent's
// own interfaces, a BGP speaker's) may be many, forward with local flows,
// and are never reached through a tunnel.
func testProbes(t *testing.T, fx Fixture) {
	p := newPair(t, fx)
	vmA := p.a.addVM("a", 1, 101)

	payload := []byte{1, 2, 3, 4}
	if err := p.b.dp.SendProbe(underA, payload); err != nil {
		t.Fatalf("SendProbe: %v", err)
	}
	if got := p.a.miss.nextProbe(t, "probe over VXLAN"); got.from != underB || !bytes.Equal(got.payload, payload) {
		t.Fatalf("probe: from %s payload %x, want from %s payload %x", got.from, got.payload, underB, payload)
	}
	if st := p.b.dp.Stats(); st.VXLAN.ProbeTx != 1 || st.VXLAN.StateTx != 0 {
		t.Errorf("sender: VXLAN ProbeTx %d StateTx %d, want 1 and 0", st.VXLAN.ProbeTx, st.VXLAN.StateTx)
	}
	eventually(t, "receiver counts the probe", func() (bool, string) {
		st := p.a.dp.Stats()
		return st.VXLAN.ProbeRx == 1 && st.VXLAN.StateRx == 0, dropsString(st)
	})
	select {
	case m := <-p.a.miss.states:
		t.Fatalf("a probe reached the StateHandler: %x", m.payload)
	default:
	}
	echo(t, p, packet.TunnelVXLAN, 1)
	if err := p.b.dp.SetTunnels(datapath.TunnelConfig{LocalIP: underB, GRE: true, Peers: []netip.Addr{underA}}); err != nil {
		t.Fatal(err)
	}
	echo(t, p, packet.TunnelGRE, 2)
	if err := p.b.dp.SendProbe(underA, payload[:2]); err != nil {
		t.Fatalf("SendProbe over GRE: %v", err)
	}
	if got := p.a.miss.nextProbe(t, "probe over GRE"); got.from != underB || !bytes.Equal(got.payload, payload[:2]) {
		t.Fatalf("GRE probe: from %s payload %x", got.from, got.payload)
	}
	if err := p.b.dp.SendProbe(underBad, payload); err == nil {
		t.Error("SendProbe to an address that is not a peer succeeded")
	}
	if err := p.b.dp.SendProbe(underA, nil); err == nil {
		t.Error("SendProbe of an empty payload succeeded")
	}

	vx := func(key uint32, payload []byte) []byte {
		b := make([]byte, 8, 8+len(payload))
		b[0] = 0x08
		binary.BigEndian.PutUint32(b[4:], key<<8)
		return append(b, payload...)
	}
	before := p.a.dp.Stats()
	p.b.env.sendRaw(t, underBad, false, vx(packet.ProbeTunnelKey, payload))
	p.b.env.sendRaw(t, underB, false, vx(packet.ProbeTunnelKey, nil))
	eventually(t, "hostile probes counted", func() (bool, string) {
		st := p.a.dp.Stats()
		ok := st.Drop(datapath.DropTunnelUnknownPeer) == before.Drop(datapath.DropTunnelUnknownPeer)+1 &&
			st.Drop(datapath.DropTunnelProbeUnhandled) == before.Drop(datapath.DropTunnelProbeUnhandled)+1
		return ok, dropsString(st)
	})
	if err := p.a.dp.AddPort(datapath.PortConfig{PortID: "port-r", Index: 9, Interface: "lo", TunnelKey: packet.ProbeTunnelKey}); err == nil {
		t.Error("AddPort with the probe key succeeded")
	}

	// Two ports without a key; a local flow between them forwards, and a
	// tunnel packet with key 0 reaches neither.
	s1 := p.a.addVM("s1", 20, 0)
	s2 := p.a.addVM("s2", 21, 0)
	p.a.miss.setScript(forward(t, p.a.dp, datapath.ClassNormal, nil, flow.Action{Type: flow.ActOutput, Port: s2.cfg.Index}))
	f := flowFrame(7101)
	s1.send(f)
	p.a.miss.next(t, "miss from a keyless port")
	s2.expect("keyless to keyless", f)
	before = p.a.dp.Stats()
	inner := flowFrame(7102)
	p.b.env.sendRaw(t, underB, false, vx(0, inner))
	eventually(t, "key 0 from the tunnel dropped", func() (bool, string) {
		st := p.a.dp.Stats()
		return st.Drop(datapath.DropTunnelUnknownKey) == before.Drop(datapath.DropTunnelUnknownKey)+1, dropsString(st)
	})
	s1.expectNone("tunnel key 0")
	s2.expectNone("tunnel key 0")
	vmA.expectNone("probes")
	if err := p.a.dp.RemovePort(s1.cfg.PortID); err != nil {
		t.Fatal(err)
	}
	// Removing one keyless port leaves the other attached.
	p.a.miss.setScript(forward(t, p.a.dp, datapath.ClassNormal, nil, flow.Action{Type: flow.ActOutput, Port: vmA.cfg.Index}))
	g := flowFrame(7103)
	s2.send(g)
	p.a.miss.next(t, "miss from the remaining keyless port")
	vmA.expect("keyless port still attached", g)
}

// echo: an echo request from b is answered by a's datapath itself, over
// the tunnel it came by: the reply reaches b's ProbeHandler, a's sees
// nothing, and a counts the echo, not a probe.
func echo(t *testing.T, p pair, via packet.Tunnel, id uint32) {
	t.Helper()
	tunnel := func(st datapath.Stats) datapath.TunnelStats {
		if via == packet.TunnelGRE {
			return st.GRE
		}
		return st.VXLAN
	}
	before := tunnel(p.a.dp.Stats())
	if err := p.b.dp.SendProbe(underA, packet.AppendEchoRequest(nil, id)); err != nil {
		t.Fatalf("SendProbe of an echo request over %s: %v", via, err)
	}
	got := p.b.miss.nextProbe(t, "echo reply over "+via.String())
	if rid, ok := packet.EchoReplyID(got.payload); got.from != underA || !ok || rid != id {
		t.Fatalf("echo over %s: from %s payload %x, want a reply from %s to request %d", via, got.from, got.payload, underA, id)
	}
	eventually(t, "echo over "+via.String()+" counted by its answerer", func() (bool, string) {
		st := tunnel(p.a.dp.Stats())
		return st.Echoes == before.Echoes+1 && st.ProbeRx == before.ProbeRx && st.ProbeTx == before.ProbeTx,
			fmt.Sprintf("%+v, before %+v", st, before)
	})
	select {
	case m := <-p.a.miss.probes:
		t.Fatalf("an echo request reached the answerer's ProbeHandler: %x", m.payload)
	default:
	}
}

// nextProbe waits for the next probe.
func (h *handler) nextProbe(t *testing.T, what string) stateMsg {
	t.Helper()
	select {
	case m := <-h.probes:
		return m
	case <-time.After(arriveTimeout):
		t.Fatalf("%s: no probe within %v", what, arriveTimeout)
		return stateMsg{}
	}
}
