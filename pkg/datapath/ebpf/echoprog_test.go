//go:build linux

package ebpf

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/packet"
)

// TestKernelEchoChecksums runs underlay_in on peers' echo requests with
// BPF_PROG_TEST_RUN and checks the answer byte for byte: addresses
// swapped, TTL reset, type a reply, and every checksum right — IPv4's,
// UDP's when the request had one (0 stays 0) — over VXLAN and GRE. What
// is not an echo request is not answered.
func TestKernelEchoChecksums(t *testing.T) {
	h := newProgHarness(t)
	local, peer := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	cfg := kernelConfig{LocalIp: be(local), VxlanIfindex: testIfindex, GreIfindex: testIfindex, VxlanPort: packet.DefaultVXLANPort}
	if err := h.objs.Config.Put(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.objs.Peers.Put(be(peer), uint32(1)); err != nil {
		t.Fatal(err)
	}
	echo := packet.AppendEchoRequest(nil, 0x01020304)
	reply := packet.AppendEchoRequest(nil, 5)
	packet.AnswerEcho(reply)
	vxlan := func(payload []byte, zeroSum bool) []byte {
		buf := vxlanPacket(t, peer, local, packet.ProbeTunnelKey, payload)
		buf[22] = 40 // a TTL the answer resets; the IP checksum follows
		putIPSum(buf)
		if zeroSum {
			buf[40], buf[41] = 0, 0
		}
		return buf
	}
	gre := func(payload []byte) []byte {
		b := vxlan(nil, false)[:34] // Ethernet and IPv4 headers
		b[23] = 47
		g := make([]byte, 8+len(payload))
		if _, err := packet.EncapGRE(g, payload, packet.ProbeTunnelKey); err != nil {
			t.Fatal(err)
		}
		b = append(b, g...)
		binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14))
		putIPSum(b)
		return b
	}
	for _, c := range []struct {
		name    string
		in      []byte
		answer  bool
		udpZero bool
	}{
		{"VXLAN", vxlan(echo, false), true, false},
		{"VXLAN without UDP checksum", vxlan(echo, true), true, true},
		{"GRE", gre(echo), true, false},
		{"VXLAN gateway probe", vxlan([]byte{1, 1, 0, 0, 0, 0, 0, 1}, false), false, false},
		{"VXLAN short echo", vxlan(packet.AppendEchoRequest(nil, 1)[:7], false), false, false},
		{"VXLAN echo reply", vxlan(reply, false), false, false},
	} {
		out := make([]byte, len(c.in)+64)
		ret, err := h.objs.UnderlayIn.Run(&ebpf.RunOptions{Data: c.in, DataOut: out, Context: skbContext{IngressIfindex: testIfindex}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !c.answer {
			if ret == tcActRedirect {
				t.Errorf("%s: answered", c.name)
			}
			continue
		}
		if ret != tcActRedirect {
			t.Fatalf("%s: verdict %d, want redirect", c.name, ret)
		}
		got := out[:len(c.in)]
		ip := got[14:34]
		if netip.AddrFrom4([4]byte(ip[12:16])) != local || netip.AddrFrom4([4]byte(ip[16:20])) != peer || ip[8] != 64 {
			t.Errorf("%s: answer from %v to %v TTL %d", c.name, ip[12:16], ip[16:20], ip[8])
		}
		if sum := onesSum(ip, 0); sum != 0xffff {
			t.Errorf("%s: IPv4 checksum wrong (sum %#x)", c.name, sum)
		}
		payload := got[len(got)-packet.EchoLen:]
		if id, ok := packet.EchoReplyID(payload); !ok || id != 0x01020304 {
			t.Errorf("%s: payload %x, want the reply to 0x01020304", c.name, payload)
		}
		if ip[9] != 17 {
			continue
		}
		udp := got[34:]
		switch {
		case c.udpZero && (udp[6] != 0 || udp[7] != 0):
			t.Errorf("%s: UDP checksum %x, want it left 0", c.name, udp[6:8])
		case !c.udpZero:
			pseudo := make([]byte, 0, 12)
			pseudo = append(pseudo, ip[12:20]...)
			pseudo = append(pseudo, 0, 17)
			pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(udp)))
			if sum := onesSum(udp, onesSum(pseudo, 0)); sum != 0xffff {
				t.Errorf("%s: UDP checksum wrong (sum %#x)", c.name, sum)
			}
		}
	}
}

// vxlanPacket returns an Ethernet frame carrying payload over VXLAN with
// key from one underlay address to another, its UDP checksummed.
func vxlanPacket(t *testing.T, from, to netip.Addr, key uint32, payload []byte) []byte {
	t.Helper()
	vx := make([]byte, 8+len(payload))
	if _, err := packet.EncapVXLAN(vx, payload, key); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, packet.UDP4HeaderLen+len(vx))
	copy(buf[packet.UDP4HeaderLen:], vx)
	n, err := packet.BuildUDP4(buf, packet.UDP4{Src: from, Dst: to, SrcPort: 40000, DstPort: packet.DefaultVXLANPort}, len(vx))
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func be(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// onesSum is the one's complement sum of b, added to sum.
func onesSum(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}

// putIPSum writes the IPv4 header checksum of the frame b.
func putIPSum(b []byte) {
	b[24], b[25] = 0, 0
	binary.BigEndian.PutUint16(b[24:], ^uint16(onesSum(b[14:34], 0)))
}
