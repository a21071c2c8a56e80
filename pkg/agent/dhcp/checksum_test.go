package dhcp

import (
	"math/rand/v2"
	"testing"
)

// TestChecksum compares the word-at-a-time checksum with the test's plain
// 16-bit one for every length up to a full reply and every alignment of
// the odd byte.
func TestChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, MaxReplyLen)
	for n := range len(b) {
		for range 4 {
			for i := range b[:n] {
				b[i] = byte(r.Uint32())
			}
			if r.IntN(4) == 0 { // runs of 0xff stress the end-around carry
				for i := range b[:n] {
					b[i] = 0xff
				}
			}
			init := r.Uint32() & 0x3ffff
			want := ^onesSum([]byte{byte(init >> 24), byte(init >> 16), byte(init >> 8), byte(init)}, b[:n])
			if got := checksum(b[:n], init); got != want {
				t.Fatalf("len %d init %#x: %#04x, want %#04x", n, init, got, want)
			}
		}
	}
}
