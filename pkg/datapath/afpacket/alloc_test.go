//go:build linux

package afpacket

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestZeroAllocs asserts the steady-state hot paths allocate nothing: a send
// batch, a copying receive batch and a zero-copy receive batch.
func TestZeroAllocs(t *testing.T) {
	v := newVethPair(t)
	tx := openPort(t, v.A, ifA, Options{})
	rx := openPort(t, v.B, ifB, Options{PollTimeout: 2 * time.Second})
	const batch = 64
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = testFrame(uint32(i), 128, 0x8100, 0x0064) // tagged: exercises re-insertion
	}
	bufs, sizes := makeBufs(batch, 2048)
	var failed atomic.Value
	got := 0
	count := func([]byte) { got++ }
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
	recv := func() {
		for got = 0; got < batch; {
			if _, err := rx.Recv(count); err != nil {
				failed.Store(fmt.Sprintf("Recv: %v", err))
				return
			}
		}
	}
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"WriteBatch+ReadBatch", func() { send(); readBatch() }},
		{"WriteBatch+Recv", func() { send(); recv() }},
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
