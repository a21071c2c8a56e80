//go:build linux

package ebpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

const (
	tcActOK     = 0
	testVNI     = 0x123456
	vxlanOuter  = 14 + 20 + 8 + 8 // Ethernet, IPv4, UDP, VXLAN
	testOutPort = testInPort + 1
)

var (
	vxLocal = netip.MustParseAddr("192.0.2.1")
	vxPeer  = netip.MustParseAddr("192.0.2.2")
)

// vxHarness is a progHarness with VXLAN on: the test-run skb's loopback
// stands for the VXLAN device and the underlay.
func vxHarness(t *testing.T) *progHarness {
	h := newProgHarness(t)
	cfg := kernelConfig{LocalIp: be(vxLocal), VxlanIfindex: testIfindex, UnderlayIfindex: testIfindex, VxlanPort: packet.DefaultVXLANPort}
	if err := h.objs.Config.Put(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.objs.Peers.Put(be(vxPeer), uint32(1)); err != nil {
		t.Fatal(err)
	}
	return h
}

func vxCounter(t *testing.T, h *progHarness, c uint32) uint64 {
	var vals []uint64
	if err := h.objs.Counters.Lookup(c, &vals); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range vals {
		n += v
	}
	return n
}

func udpFrame(t *testing.T, sport uint16) []byte {
	payload := []byte("nagare vxlan payload")
	buf := make([]byte, packet.UDP4HeaderLen+len(payload))
	copy(buf[packet.UDP4HeaderLen:], payload)
	n, err := packet.BuildUDP4(buf, packet.UDP4{EthSrc: packet.MAC{2, 0, 0, 0, 0, 1}, EthDst: packet.MAC{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: sport, DstPort: 7}, len(payload))
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestKernelVXLANEncap runs port_in on frames whose flow ends in a VXLAN
// encapsulation: an IP frame leaves encapsulated by the program itself,
// byte for byte what RFC 7348 and the kernel's device would send (outer
// IPv4 with DF and a right checksum, UDP to the VXLAN port from a source
// port hashed from the inner flow, no UDP checksum, the VNI, the inner
// frame unchanged); a frame the program cannot grow (VLAN-tagged) goes to
// the VXLAN device unchanged.
func TestKernelVXLANEncap(t *testing.T) {
	h := vxHarness(t)
	list := actionList{N: 1, LastOut: 0}
	list.Acts[0] = kernelAction{Type: uint8(flow.ActEncap), B: uint8(packet.TunnelVXLAN), W: testVNI}
	copy(list.Acts[0].Data[:], vxPeer.AsSlice())
	if err := h.objs.Actions.Put(uint32(1), &list); err != nil {
		t.Fatal(err)
	}
	install := func(f []byte) {
		var p packet.Parsed
		(&packet.Decoder{}).Decode(&p, f)
		key := flow.KeyOf(&p, testInPort)
		if err := h.objs.Flows.Put(toKernelKey(&key), &flowValue{Acts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	run := func(f []byte) (uint32, []byte) {
		out := make([]byte, len(f)+128)
		ret, err := h.objs.PortIn.Run(&ebpf.RunOptions{Data: f, DataOut: out, Context: skbContext{IngressIfindex: testIfindex}})
		if err != nil {
			t.Fatal(err)
		}
		return ret, out
	}

	sports := map[uint16]bool{}
	for i := range 16 {
		inner := udpFrame(t, uint16(5000+i))
		install(inner)
		tx := vxCounter(t, h, cVXLANTxPackets)
		ret, out := run(inner)
		if ret != tcActRedirect {
			t.Fatalf("flow %d: verdict %d, want redirect", i, ret)
		}
		if got := vxCounter(t, h, cVXLANTxPackets); got != tx+1 {
			t.Errorf("flow %d: VXLAN tx counter %d, want %d", i, got, tx+1)
		}
		got := out[:vxlanOuter+len(inner)]
		if et := binary.BigEndian.Uint16(got[12:]); et != packet.EtherTypeIPv4 {
			t.Fatalf("outer EtherType %#x", et)
		}
		ip, udp, vx := got[14:34], got[34:42], got[42:50]
		if ip[0] != 0x45 || ip[9] != 17 || ip[8] != 64 || binary.BigEndian.Uint16(ip[6:])&0x4000 == 0 {
			t.Errorf("outer IPv4 header %x: want version 4, IHL 5, UDP, TTL 64, DF", ip)
		}
		if n := binary.BigEndian.Uint16(ip[2:]); int(n) != len(got)-14 {
			t.Errorf("outer IPv4 length %d, want %d", n, len(got)-14)
		}
		if sum := onesSum(ip, 0); sum != 0xffff {
			t.Errorf("outer IPv4 checksum wrong (sum %#x)", sum)
		}
		if netip.AddrFrom4([4]byte(ip[12:16])) != vxLocal || netip.AddrFrom4([4]byte(ip[16:20])) != vxPeer {
			t.Errorf("outer %v > %v, want %v > %v", ip[12:16], ip[16:20], vxLocal, vxPeer)
		}
		sport := binary.BigEndian.Uint16(udp)
		if sport < 49152 {
			t.Errorf("UDP source port %d outside 49152-65535", sport)
		}
		sports[sport] = true
		if dport := binary.BigEndian.Uint16(udp[2:]); dport != packet.DefaultVXLANPort {
			t.Errorf("UDP destination port %d", dport)
		}
		if n := binary.BigEndian.Uint16(udp[4:]); int(n) != len(got)-34 {
			t.Errorf("UDP length %d, want %d", n, len(got)-34)
		}
		if udp[6] != 0 || udp[7] != 0 {
			t.Errorf("UDP checksum %x, want none", udp[6:8])
		}
		if vni, rest, err := packet.DecapVXLAN(got[42:]); err != nil || vni != testVNI || vx[0] != 0x08 || !bytes.Equal(rest, inner) {
			t.Errorf("VXLAN header %x (VNI %#x, %v): want flags 08, VNI %#x, then the inner frame unchanged", vx, vni, err, testVNI)
		}
		// The same flow, the same source port.
		if _, again := run(inner); binary.BigEndian.Uint16(again[34:]) != sport {
			t.Errorf("flow %d: source port %d, then %d", i, sport, binary.BigEndian.Uint16(again[34:]))
		}
	}
	if len(sports) < 4 {
		t.Errorf("16 inner flows used %d UDP source ports: the hash gives the underlay no entropy", len(sports))
	}

	// A tagged frame: the VXLAN device's path, the frame as it was.
	tagged := packetPushed(udpFrame(t, 6000), 100)
	install(tagged)
	ret, out := run(tagged)
	if ret != tcActRedirect || !bytes.Equal(out[:len(tagged)], tagged) {
		t.Errorf("tagged frame: verdict %d, frame %x; want a redirect of the frame unchanged", ret, out[:len(tagged)])
	}
}

// packetPushed returns f with an 802.1Q tag of vid.
func packetPushed(f []byte, vid uint16) []byte {
	out := append([]byte(nil), f[:12]...)
	out = binary.BigEndian.AppendUint16(out, packet.EtherTypeVLAN)
	out = binary.BigEndian.AppendUint16(out, vid)
	return append(out, f[12:]...)
}

// TestKernelVXLANDecap runs underlay_in on VXLAN packets from a peer: the
// common case is decapsulated by the program and redirected to the port
// of its VNI, the inner frame byte for byte, counted; what the kernel's
// UDP and VXLAN receive must judge (a UDP checksum, unknown flags, an
// outer ECN mark, an ARP frame, trailing bytes) goes on to it unchanged.
func TestKernelVXLANDecap(t *testing.T) {
	h := vxHarness(t)
	if err := h.objs.TunnelKeys.Put(uint32(testVNI), uint32(testOutSlot)); err != nil {
		t.Fatal(err)
	}
	inner := udpFrame(t, 5000)
	arp := append([]byte(nil), inner...)
	binary.BigEndian.PutUint16(arp[12:], packet.EtherTypeARP)
	vxlan := func(inner []byte, edit func(b []byte)) []byte {
		buf := vxlanPacket(t, vxPeer, vxLocal, testVNI, inner)
		buf[40], buf[41] = 0, 0 // no UDP checksum, as peers send
		if edit != nil {
			edit(buf)
		}
		putIPSum(buf)
		return buf
	}
	for _, c := range []struct {
		name   string
		in     []byte
		native bool
	}{
		{"VXLAN", vxlan(inner, nil), true},
		{"with a UDP checksum", vxlan(inner, func(b []byte) { b[40], b[41] = 0x12, 0x34 }), false},
		{"with a reserved flag", vxlan(inner, func(b []byte) { b[42] |= 0x01 }), false},
		{"with reserved bits after the VNI", vxlan(inner, func(b []byte) { b[49] = 1 }), false},
		{"marked CE", vxlan(inner, func(b []byte) { b[15] |= 0x03 }), false},
		{"carrying ARP", vxlan(arp, nil), false},
		{"with trailing bytes", append(vxlan(inner, func(b []byte) { binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14)) }), 0, 0), false},
	} {
		rx := vxCounter(t, h, cVXLANRxPackets)
		out := make([]byte, len(c.in)+64)
		ret, err := h.objs.UnderlayIn.Run(&ebpf.RunOptions{Data: c.in, DataOut: out, Context: skbContext{IngressIfindex: testIfindex}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !c.native {
			if ret != tcActOK || !bytes.Equal(out[:len(c.in)], c.in) {
				t.Errorf("%s: verdict %d; want the packet left to the kernel unchanged", c.name, ret)
			}
			continue
		}
		if ret != tcActRedirect {
			t.Fatalf("%s: verdict %d, want a redirect to the port", c.name, ret)
		}
		if got := out[:len(inner)]; !bytes.Equal(got, inner) {
			t.Errorf("%s: delivered %x, want the inner frame %x", c.name, got, inner)
		}
		if got := vxCounter(t, h, cVXLANRxPackets); got != rx+1 {
			t.Errorf("%s: VXLAN rx counter %d, want %d", c.name, got, rx+1)
		}
	}
}
