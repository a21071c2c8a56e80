package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := Checksum(b, 0), refChecksum(b); got != want {
			t.Fatalf("len %d: Checksum = %#04x, reference %#04x", n, got, want)
		}
		for i := range b {
			b[i] = 0xff // worst case for carries
		}
		if got, want := Checksum(b, 0), refChecksum(b); got != want {
			t.Fatalf("len %d all ones: Checksum = %#04x, reference %#04x", n, got, want)
		}
	}
	// The RFC 1071 §3 example.
	ex := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	eq(t, "RFC 1071 example", Checksum(ex, 0), ^uint16(0xddf2))
}

func TestPseudoHeaderSum(t *testing.T) {
	for _, pair := range [][2]string{{c4, s4}, {c6, s6}, {"255.255.255.255", "255.255.255.255"}, {"ffff::ffff", "ffff:ffff::"}} {
		src, dst := ap(pair[0]), ap(pair[1])
		seg := tcpH(pair[0], pair[1], 1, 2, 3, 4, TCPAck, []byte("segment"))
		seg[16], seg[17] = 0, 0
		got := L4Checksum(src, dst, IPProtoTCP, seg)
		want := refChecksum(refPseudo(src, dst, IPProtoTCP, len(seg)), seg)
		eq(t, "L4Checksum "+pair[0], got, want)
	}
}

// TestIncrementalEqualsFull changes random words of random data and checks
// that RFC 1624 updates give bit-for-bit the checksum a full recomputation
// gives.
func TestIncrementalEqualsFull(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		b := make([]byte, 2+2*r.IntN(40))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		switch i % 4 {
		case 0:
			b[0], b[1] = 0xff, 0xff // force sums at the ±0 boundary
		case 1:
			clear(b)
		}
		sum := refChecksum(b)
		switch k := 2 * r.IntN(len(b)/2); {
		case i%3 == 0 && k+4 <= len(b):
			old := binary.BigEndian.Uint32(b[k:])
			nw := r.Uint32()
			if i%5 == 0 {
				nw = ^old
			}
			binary.BigEndian.PutUint32(b[k:], nw)
			if got, want := UpdateChecksum32(sum, old, nw), refChecksum(b); got != want {
				t.Fatalf("UpdateChecksum32 %#x->%#x: %#04x, full %#04x", old, nw, got, want)
			}
		default:
			old := binary.BigEndian.Uint16(b[k:])
			nw := uint16(r.Uint32())
			binary.BigEndian.PutUint16(b[k:], nw)
			if got, want := UpdateChecksum16(sum, old, nw), refChecksum(b); got != want {
				t.Fatalf("UpdateChecksum16 %#x->%#x: %#04x, full %#04x", old, nw, got, want)
			}
		}
	}
	for i := 0; i < 2000; i++ {
		var a, n [16]byte
		for j := range a {
			a[j], n[j] = byte(r.Uint32()), byte(r.Uint32())
		}
		tail := []byte{byte(i), 0x11}
		sum := refChecksum(a[:], tail)
		old, nw := netip.AddrFrom16(a), netip.AddrFrom16(n)
		if got, want := UpdateChecksumAddr(sum, old, nw), refChecksum(n[:], tail); got != want {
			t.Fatalf("UpdateChecksumAddr %v->%v: %#04x, full %#04x", old, nw, got, want)
		}
		o4, n4 := netip.AddrFrom4([4]byte(a[:4])), netip.AddrFrom4([4]byte(n[:4]))
		sum = refChecksum(a[:4], tail)
		if got, want := UpdateChecksumAddr(sum, o4, n4), refChecksum(n[:4], tail); got != want {
			t.Fatalf("UpdateChecksumAddr %v->%v: %#04x, full %#04x", o4, n4, got, want)
		}
	}
}
