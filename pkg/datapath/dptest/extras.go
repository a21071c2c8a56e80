//go:build linux

package dptest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// The actions and port settings of QoS and port mirroring: set-dscp,
// mirror (GRE and ERSPAN II copies to a remote endpoint) and SetPortQoS's
// token buckets. An eBPF datapath implements the same.

// Marked returns what frame must look like after set-dscp(dscp), its IPv4
// header checksum computed from scratch. frame must be untagged IPv4.
func Marked(frame []byte, dscp uint8) []byte {
	b := append([]byte(nil), frame...)
	ip := b[14:34]
	ip[1] = dscp<<2 | ip[1]&3
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
	return b
}

// testDSCP: set-dscp rewrites the DSCP and the IPv4 checksum; a copy
// output before it carries the frame unmarked.
func testDSCP(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "ds", datapath.FlowConfig{})
	vm1, vm2, vm3 := h.addVM("1", 11, 101), h.addVM("2", 12, 102), h.addVM("3", 13, 103)
	in := flowFrame(2001)
	h.miss.setScript(forward(t, h.dp, datapath.ClassNormal, nil, output(vm3), flow.Action{Type: flow.ActSetDSCP, DSCP: 46}, output(vm2)))
	for i := range 2 { // the miss (Execute), then a hit
		vm1.send(in)
		if i == 0 {
			h.miss.next(t, "set-dscp")
		}
		vm2.expect("set-dscp", Marked(in, 46))
		vm3.expect("copy before set-dscp", in)
	}
}

// testMirror: a mirror action sends a copy of the frame as it is at that
// point, GRE (key) or ERSPAN II (session ID), from the host's underlay
// address to the endpoint, besides the flow's outputs.
func testMirror(t *testing.T, fx Fixture) {
	p := newPair(t, fx)
	vm1, vm2 := p.a.addVM("m1", 1, 101), p.a.addVM("m2", 2, 102)
	for _, c := range []struct {
		kind  packet.Tunnel
		key   uint32
		sport uint16
	}{{packet.TunnelGRE, 70000, 2101}, {packet.TunnelERSPAN, 0x1407, 2102}} {
		name := "mirror " + c.kind.String()
		capt := p.b.env.capture(t)
		p.a.miss.setScript(forward(t, p.a.dp, datapath.ClassNormal, nil,
			flow.Action{Type: flow.ActMirror, Tunnel: c.kind, Underlay: underB, TunnelKey: c.key}, output(vm2)))
		in := flowFrame(c.sport)
		vm1.send(in)
		p.a.miss.next(t, name)
		vm2.expect(name+": the flow's output", in)
		w := capt.tunnelPacket(t, packet.TunnelGRE)
		if w.Src != underA || w.Dst != underB {
			t.Errorf("%s: sent from %s to %s, want %s to %s", name, w.Src, w.Dst, underA, underB)
		}
		var gre [8]byte
		binary.BigEndian.PutUint16(gre[2:], w.GREProto)
		payload := w.Inner
		if c.kind == packet.TunnelGRE {
			binary.BigEndian.PutUint16(gre[0:], 0x2000)
			binary.BigEndian.PutUint32(gre[4:], w.Key)
		} else {
			binary.BigEndian.PutUint16(gre[0:], 0x1000)
		}
		kind, key, frame, err := packet.DecapMirror(append(gre[:], payload...))
		if err != nil || kind != c.kind || key != c.key&mirrorKeyMask(c.kind) || !bytes.Equal(frame, in) {
			t.Errorf("%s: copy decodes as %s key %#x (%v), frame %x; want %s key %#x, frame %x", name, kind, key, err, frame, c.kind, c.key&mirrorKeyMask(c.kind), in)
		}
	}
}

func mirrorKeyMask(k packet.Tunnel) uint32 {
	if k == packet.TunnelERSPAN {
		return 0x3ff
	}
	return 0xffffffff
}

// testPortQoS: a port's egress bucket polices what enters by it, its
// ingress bucket what leaves by it, on a flow's hits and on the misses
// the handler executes alike; a burst beyond the bucket is dropped and
// counted, and removing the limits lets everything through.
func testPortQoS(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "qs", datapath.FlowConfig{})
	vm1, vm2 := h.addVM("1", 11, 101), h.addVM("2", 12, 102)
	const frames, size = 30, 500
	// 16 kbit is 2000 bytes: four frames of 500, and 80 kbit/s refills
	// 10 bytes per millisecond, far less than a frame in the time the
	// burst takes.
	limits := []struct {
		name string
		port *vm
		q    datapath.PortQoS
	}{
		{"egress", vm1, datapath.PortQoS{EgressKbps: 80, EgressBurstKbit: 16}},
		{"ingress", vm2, datapath.PortQoS{IngressKbps: 80, IngressBurstKbit: 16}},
	}
	acts := []flow.Action{output(vm2)}
	for i, path := range []struct {
		name   string
		script func(u *datapath.Upcall)
	}{
		{"hits", forward(t, h.dp, datapath.ClassNormal, nil, acts...)},
		// No flow: every frame is a miss the handler executes.
		{"misses", func(u *datapath.Upcall) {
			if err := h.dp.Execute(u.InPort, u.Frame, acts); err != nil {
				t.Errorf("Execute: %v", err)
			}
		}},
	} {
		in := UDP{SrcMAC: macVM1, DstMAC: macVM2, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
			SrcPort: 2201 + uint16(i), DstPort: 7, Len: size}.Frame()
		h.miss.setScript(path.script)
		vm1.send(in)
		h.miss.next(t, "qos: the flow")
		vm2.expect("qos: the flow", in)
		for _, c := range limits {
			name := path.name + " " + c.name
			if err := h.dp.SetPortQoS(c.port.cfg.PortID, c.q); errors.Is(err, datapath.ErrUnsupported) {
				t.Skipf("skipping: %v", err)
			} else if err != nil {
				t.Fatalf("%s: SetPortQoS: %v", name, err)
			}
			before := h.dp.Stats().Drops[datapath.DropQoSPoliced]
			burst := make([][]byte, frames)
			for i := range burst {
				burst[i] = in
			}
			vm1.send(burst...)
			got := 0
			for vm2.recv(quietPeriod) != nil {
				got++
			}
			policed := h.dp.Stats().Drops[datapath.DropQoSPoliced] - before
			if got < 3 || got > 8 || policed < frames-8 {
				t.Errorf("%s: %d of %d frames through a 2000-byte bucket, %d policed", name, got, frames, policed)
			}
			if err := h.dp.SetPortQoS(c.port.cfg.PortID, datapath.PortQoS{}); err != nil {
				t.Fatal(err)
			}
			before = h.dp.Stats().Drops[datapath.DropQoSPoliced]
			vm1.send(burst[:10]...)
			for i := range 10 {
				if vm2.recv(arriveTimeout) == nil {
					t.Fatalf("%s: frame %d lost without a limit", name, i)
				}
			}
			if n := h.dp.Stats().Drops[datapath.DropQoSPoliced] - before; n != 0 {
				t.Errorf("%s: %d frames policed after the limit was removed", name, n)
			}
		}
	}
	if err := h.dp.SetPortQoS("no-such-port", datapath.PortQoS{EgressKbps: 1}); err == nil {
		t.Error("SetPortQoS of an unknown port: no error")
	}
}
