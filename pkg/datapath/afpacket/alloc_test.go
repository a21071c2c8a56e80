//go:build linux

package afpacket

import (
	"fmt"

	"github.com/nagare/nagare/pkg/offload"
	"sync/atomic"
	"testing"
	"time"
)

// TestZeroAllocs asserts the steady-state hot paths allocate nothing: a send
// batch and a receive batch, with and without offload headers.
func TestZeroAllocs(t *testing.T) {
	v := newVethPair(t)
	tx := openPort(t, v.A, ifA, Options{VnetHdr: true})
	rx := openPort(t, v.B, ifB, Options{PollTimeout: 2 * time.Second, VnetHdr: true})
	const batch = 64
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = testFrame(uint32(i), 128, 0x8100, 0x0064) // tagged: exercises re-insertion
	}
	bufs, sizes := makeBufs(batch, 2048)
	var failed atomic.Value
	got := 0
	hdrs := make([]offload.Hdr, batch)
	rb := Batch{Bufs: bufs, Sizes: sizes, Hdrs: hdrs, Jumbo: make([]byte, 70000)}
	send := func() {
		if n, err := tx.WriteBatch(frames); n != batch || err != nil {
			failed.Store(fmt.Sprintf("WriteBatch = %d, %v", n, err))
		}
	}
	readBatch := func() {
		for got = 0; got < batch; {
			n, err := rx.ReadBatch(bufs, sizes)
			if err != nil {
				failed.Store(fmt.Sprintf("ReadBatch: %v", err))
				return
			}
			got += n
		}
	}
	receive := func() {
		for got = 0; got < batch; {
			n, err := rx.Receive(&rb)
			if err != nil {
				failed.Store(fmt.Sprintf("Receive: %v", err))
				return
			}
			got += n
		}
	}
	write := func() {
		if n, err := tx.Write(frames, hdrs); n != batch || err != nil {
			failed.Store(fmt.Sprintf("Write = %d, %v", n, err))
		}
	}
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"WriteBatch+ReadBatch", func() { send(); readBatch() }},
		{"Write+Receive", func() { write(); receive() }},
	} {
		c.fn() // warm up: first use of the ring pages, timers, poll
		allocs := testing.AllocsPerRun(50, c.fn)
		if f := failed.Load(); f != nil {
			t.Fatalf("%s: %s", c.name, f)
		}
		t.Logf("%s (%d frames): %.1f allocs per batch", c.name, batch, allocs)
		if allocs != 0 {
			t.Errorf("%s allocates %.1f times per %d-frame batch, want 0", c.name, allocs, batch)
		}
	}
}
