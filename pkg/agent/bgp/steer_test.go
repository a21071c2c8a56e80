package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// Steering on an in-memory datapath: uplink eth1 (index 5) and the
// speaker's end (index 1<<30); frames are offered to Punt as the slow
// path offers its misses.
func TestPunt(t *testing.T) {
	host := memory.NewHost(memory.NewHub())
	dp := memory.New(datapath.Config{}, host)
	eth1, err := host.AddInterface("eth1")
	if err != nil {
		t.Fatal(err)
	}
	spk, err := host.AddInterface("nbd-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []datapath.PortConfig{{PortID: "up", Index: 5, Interface: "eth1", TunnelKey: 50},
		{PortID: "bgp-speaker:up", Index: speakerIndexBase, Interface: "nbd-test"}} {
		if err := dp.AddPort(p); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = dp.Run(ctx, datapath.MissFunc(func(*datapath.Upcall) {})) }()
	c, err := New(Config{HostID: "gw", Datapath: dp, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mac := packet.MAC{2, 0, 0, 0, 0, 1}
	addr, peer := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.1")
	peerMAC := packet.MAC{2, 0, 0, 0, 0xee, 1}
	frame := func(p packet.Probe) []byte {
		b := make([]byte, 256)
		n, err := packet.BuildProbe(b, &p)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n]
	}
	fromPeer := packet.Probe{EthSrc: peerMAC, EthDst: mac, Src: peer, Dst: addr}
	with := func(p packet.Probe, proto uint8, sport, dport uint16) packet.Probe {
		p.Proto, p.SrcPort, p.DstPort = proto, sport, dport
		return p
	}

	// Before the speaker runs, the simulation drops the peer's BFD (a
	// router-local packet), with a flow that carries the uplink port's
	// tag. The speaker's start must take it away, or the peer's later
	// packets (same addresses and ports) never reach the speaker.
	var early packet.Parsed
	early.Decode(frame(with(fromPeer, packet.IPProtoUDP, 49152, 3784)))
	if err := dp.Install(&datapath.FlowSpec{Key: flow.KeyOf(&early, 5), Tags: []uint64{sim.ObjectTag(model.PortKind, "up")},
		Class: datapath.ClassDrop}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.ports["up"] = &portSpeaker{c: c, conf: &portConf{portID: "up", addr: addr, mac: mac}, speaker: stopped{}, dp: speakerIndexBase}
	c.bindings = map[string]int32{"up": 5}
	c.rebuildSteer()
	c.mu.Unlock()
	if n := dp.Stats().Flows; n != 0 {
		t.Errorf("%d flows decided before the speaker ran are left after it started", n)
	}
	arpReply := func(target netip.Addr) []byte {
		req := frame(packet.Probe{ARP: true, EthSrc: mac, Src: target, Dst: peer})
		var p packet.Parsed
		p.Decode(req)
		b := make([]byte, 64)
		n, err := packet.BuildARPReply(b, &p, peerMAC)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n]
	}
	recv := func(i *memory.Interface) []byte {
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer rcancel()
		f, err := i.Recv(rctx)
		if err != nil {
			return nil
		}
		return f
	}
	for _, tc := range []struct {
		name      string
		in        int32
		frame     []byte
		taken     bool
		toSpeaker bool // a copy or the frame reaches the speaker
		toUplink  bool
		installed bool
	}{
		{"BGP from the peer", 5, frame(with(fromPeer, packet.IPProtoTCP, 40000, 179)), true, true, false, true},
		{"BGP answer from the peer", 5, frame(with(fromPeer, packet.IPProtoTCP, 179, 40001)), true, true, false, true},
		{"BFD from the peer", 5, frame(with(fromPeer, packet.IPProtoUDP, 49152, 3784)), true, true, false, true},
		{"other TCP to the port", 5, frame(with(fromPeer, packet.IPProtoTCP, 40002, 22)), false, false, false, false},
		{"BGP to another address", 5, frame(with(packet.Probe{EthSrc: peerMAC, EthDst: mac, Src: peer, Dst: peer}, packet.IPProtoTCP, 40003, 179)), false, false, false, false},
		{"ARP reply to the port", 5, arpReply(addr), false, true, false, false},
		{"ARP reply to someone else", 5, arpReply(peer), false, false, false, false},
		{"ARP request from the speaker", speakerIndexBase, frame(packet.Probe{ARP: true, EthSrc: mac, Src: addr, Dst: peer}), true, false, true, false},
		{"BGP from the speaker", speakerIndexBase, frame(with(packet.Probe{EthSrc: mac, EthDst: peerMAC, Src: addr, Dst: peer}, packet.IPProtoTCP, 40004, 179)), true, false, true, true},
		{"a VM's port", 7, frame(with(fromPeer, packet.IPProtoTCP, 40005, 179)), false, false, false, false},
	} {
		var p packet.Parsed
		p.Decode(tc.frame)
		u := &datapath.Upcall{InPort: tc.in, Frame: tc.frame, Pkt: &p, Key: flow.KeyOf(&p, uint32(tc.in))}
		before := dp.Stats().Flows
		if got := c.Punt(u); got != tc.taken {
			t.Errorf("%s: taken %v, want %v", tc.name, got, tc.taken)
		}
		if got := recv(spk) != nil; got != tc.toSpeaker {
			t.Errorf("%s: reached the speaker %v, want %v", tc.name, got, tc.toSpeaker)
		}
		if got := recv(eth1) != nil; got != tc.toUplink {
			t.Errorf("%s: left by the uplink %v, want %v", tc.name, got, tc.toUplink)
		}
		if got := dp.Stats().Flows > before; got != tc.installed {
			t.Errorf("%s: flow installed %v, want %v", tc.name, got, tc.installed)
		}
	}

	// The speaker goes: its flows go, and nothing is steered.
	c.mu.Lock()
	delete(c.ports, "up")
	c.rebuildSteer()
	c.mu.Unlock()
	if n := dp.Stats().Flows; n != 0 {
		t.Errorf("%d flows left after the speaker went", n)
	}
	var p packet.Parsed
	f := frame(with(fromPeer, packet.IPProtoTCP, 40000, 179))
	p.Decode(f)
	if c.Punt(&datapath.Upcall{InPort: 5, Frame: f, Pkt: &p}) {
		t.Error("steered without a speaker")
	}
	allocs := testing.AllocsPerRun(100, func() { c.Punt(&datapath.Upcall{InPort: 7, Frame: f, Pkt: &p}) })
	if allocs != 0 {
		t.Errorf("Punt of a VM's miss allocates %.0f times", allocs)
	}
}

// stopped is a Speaker that is not running: steering only asks whether
// there is one.
type stopped struct{ Speaker }
