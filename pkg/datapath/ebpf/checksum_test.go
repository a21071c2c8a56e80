//go:build linux

package ebpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

// TestCompleteChecksum: a frame whose TCP or UDP checksum holds only the
// pseudo header's sum (a VM's CHECKSUM_PARTIAL) is completed; a complete
// one, a UDP one without checksum and a simply wrong one are left alone.
func TestCompleteChecksum(t *testing.T) {
	a := netip.MustParseAddr
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		proto    uint8
		off      int
	}{
		{"tcp4", a("10.0.0.1"), a("10.0.0.2"), packet.IPProtoTCP, 16},
		{"udp4", a("10.0.0.1"), a("10.0.0.2"), packet.IPProtoUDP, 6},
		{"tcp6", a("fd00::1"), a("fd00::2"), packet.IPProtoTCP, 16},
		{"udp6", a("fd00::1"), a("fd00::2"), packet.IPProtoUDP, 6},
	} {
		buf := make([]byte, 2048)
		n, err := packet.BuildProbe(buf, &packet.Probe{Src: c.src, Dst: c.dst, Proto: c.proto, SrcPort: 1, DstPort: 2, Length: 300})
		if err != nil {
			t.Fatal(err)
		}
		good := buf[:n]
		for i := n - 200; i < n; i++ {
			good[i] = byte(i) // a payload the checksum covers
		}
		var p packet.Parsed
		p.Decode(good)
		l4 := good[p.L4Off:p.L3End]
		binary.BigEndian.PutUint16(l4[c.off:], 0)
		sum := packet.L4Checksum(c.src, c.dst, c.proto, l4)
		binary.BigEndian.PutUint16(l4[c.off:], sum)

		partial := bytes.Clone(good)
		pseudo := packet.PseudoHeaderSum(c.src, c.dst, c.proto, len(l4))
		binary.BigEndian.PutUint16(partial[p.L4Off+c.off:], ^packet.Checksum(nil, pseudo))
		wrong := bytes.Clone(good)
		wrong[p.L4Off+c.off] ^= 0x55
		for _, f := range []struct {
			what     string
			in, want []byte
		}{{"partial", partial, good}, {"complete", bytes.Clone(good), good}, {"wrong", wrong, wrong}} {
			in := bytes.Clone(f.in)
			var q packet.Parsed
			q.Decode(in)
			completeChecksum(&q, in)
			if !bytes.Equal(in, f.want) {
				t.Errorf("%s %s: checksum %x, want %x", c.name, f.what, in[p.L4Off+c.off:p.L4Off+c.off+2], f.want[p.L4Off+c.off:p.L4Off+c.off+2])
			}
		}
		if c.proto == packet.IPProtoUDP && c.src.Is4() {
			none := bytes.Clone(good)
			binary.BigEndian.PutUint16(none[p.L4Off+6:], 0)
			in := bytes.Clone(none)
			var q packet.Parsed
			q.Decode(in)
			completeChecksum(&q, in)
			if !bytes.Equal(in, none) {
				t.Errorf("%s: a zero (absent) checksum was filled in", c.name)
			}
		}
	}
}
