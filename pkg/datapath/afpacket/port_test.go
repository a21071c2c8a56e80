//go:build linux

package afpacket

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiveCases are sent by an independent raw socket and must come out of
// the port byte for byte, tags included, although the kernel strips the
// outer tag into tp_vlan_tci on receive.
var receiveCases = []struct {
	name  string
	frame []byte
}{
	{"minimum", testFrame(1, 60)},
	{"header-only", testFrame(2, 18)},
	{"full-size", testFrame(3, 1514)},
	{"dot1q-prio1-vid100", testFrame(4, 64, 0x8100, 0x2064)},
	{"dot1q-priority-tag-vid0", testFrame(5, 64, 0x8100, 0xe000)},
	{"qinq-88a8", testFrame(6, 64, 0x88a8, 0x0123, 0x8100, 0x0456)},
	{"dot1q-full-size", testFrame(7, 1518, 0x8100, 0x0fff)},
}

func TestReceiveIntact(t *testing.T) {
	v := newVethPair(t)
	port := openPort(t, v.B, ifB, Options{PollTimeout: 2 * time.Second})
	raw := openRaw(t, v.A, ifA)

	for _, c := range receiveCases {
		raw.send(t, c.frame)
	}
	got := readN(t, port, len(receiveCases), 3*time.Second)
	if len(got) != len(receiveCases) {
		t.Fatalf("received %d frames, want %d", len(got), len(receiveCases))
	}
	for i, c := range receiveCases {
		if !bytes.Equal(got[i], c.frame) {
			t.Errorf("%s: received\n% x\nwant\n% x", c.name, got[i], c.frame)
		}
	}
	if s := port.Stats(); s.RxPackets != uint64(len(receiveCases)) || s.RxDrops != 0 || s.RxTruncated != 0 {
		t.Errorf("stats %+v, want %d rx packets and no drops", s, len(receiveCases))
	}
}

// TestWriteBatch sends 1,000 distinct frames in one call and checks that the
// peer port receives every one, in order and intact, and that the kernel's
// own interface counters agree.
func TestWriteBatch(t *testing.T) {
	t.Run("qdisc", func(t *testing.T) { testWriteBatch(t, Options{}) })
	t.Run("bypass", func(t *testing.T) { testWriteBatch(t, Options{QdiscBypass: true}) })
}

func testWriteBatch(t *testing.T, txOpts Options) {
	v := newVethPair(t)
	tx := openPort(t, v.A, ifA, txOpts)
	rx := openPort(t, v.B, ifB, Options{PollTimeout: 2 * time.Second})
	const count = 1000
	frames := make([][]byte, count)
	for i := range frames {
		frames[i] = testFrame(uint32(i), 60+i%1400)
	}
	n, err := tx.WriteBatch(frames)
	if err != nil || n != count {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, count)
	}
	got := readN(t, rx, count, 5*time.Second)
	if len(got) != count {
		t.Fatalf("peer received %d of %d frames (stats %+v)", len(got), count, rx.Stats())
	}
	for i := range got {
		if !bytes.Equal(got[i], frames[i]) {
			seq, _ := frameSeq(got[i])
			t.Fatalf("frame %d: got seq %d (%d bytes), want %d bytes", i, seq, len(got[i]), len(frames[i]))
		}
	}
	if s := tx.Stats(); s.TxPackets != count || s.TxErrors != 0 {
		t.Errorf("sender stats %+v, want %d tx packets, no errors", s, count)
	}
	if got := sysfsCounter(t, v.B, ifB, "rx_packets"); got != count {
		t.Errorf("%s rx_packets = %d, want %d", ifB, got, count)
	}
	if got := sysfsCounter(t, v.A, ifA, "tx_packets"); got != count {
		t.Errorf("%s tx_packets = %d, want %d", ifA, got, count)
	}
}

// TestOwnTransmitIgnored: the datapath must not receive what it sends, nor
// anything else leaving the interface (traffic towards the VM).
func TestOwnTransmitIgnored(t *testing.T) {
	v := newVethPair(t)
	port := openPort(t, v.A, ifA, Options{PollTimeout: 300 * time.Millisecond})
	other := openRaw(t, v.A, ifA)
	if n, err := port.WriteBatch([][]byte{testFrame(1, 60), testFrame(2, 60)}); n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	other.send(t, testFrame(3, 60))
	bufs, sizes := makeBufs(8, 2048)
	if n, err := port.ReadBatch(bufs, sizes); err != ErrTimeout {
		t.Fatalf("ReadBatch = %d, %v; want ErrTimeout (outgoing frames must be ignored)", n, err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	v := newVethPair(t)
	for _, api := range []string{"ReadBatch", "Receive"} {
		t.Run(api, func(t *testing.T) {
			port, err := OpenInNetns(v.B.Path, ifB, Options{})
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				bufs, sizes := makeBufs(4, 2048)
				var err error
				if api == "Receive" {
					_, err = port.Receive(&Batch{Bufs: bufs, Sizes: sizes, Jumbo: make([]byte, 70000)})
				} else {
					_, err = port.ReadBatch(bufs, sizes)
				}
				errc <- err
			}()
			time.Sleep(100 * time.Millisecond) // let the reader block in poll
			start := time.Now()
			closed := make(chan error, 1)
			go func() { closed <- port.Close() }()
			select {
			case err := <-errc:
				if err != ErrClosed {
					t.Errorf("blocked %s returned %v, want ErrClosed", api, err)
				}
			case <-time.After(time.Second):
				t.Fatalf("%s still blocked 1 s after Close", api)
			}
			t.Logf("%s unblocked %v after Close started", api, time.Since(start))
			if err := <-closed; err != nil {
				t.Errorf("Close: %v", err)
			}
			// Close itself takes a few ms more: the kernel waits out an RCU
			// grace period when a packet socket is released.
			t.Logf("Close returned after %v", time.Since(start))
			if _, err := port.WriteBatch([][]byte{testFrame(1, 60)}); err != ErrClosed {
				t.Errorf("WriteBatch after Close = %v, want ErrClosed", err)
			}
			if err := port.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestBadFrames: frames the kernel rejects on send, and frames too big for
// the ring or the caller's buffer on receive, are counted and skipped without
// disturbing their neighbours.
func TestBadFrames(t *testing.T) {
	v := newVethPair(t)
	t.Run("send", func(t *testing.T) {
		tx := openPort(t, v.A, ifA, Options{})
		rx := openPort(t, v.B, ifB, Options{PollTimeout: 2 * time.Second})
		frames := [][]byte{
			testFrame(1, 60),
			testFrame(2, 60)[:5], // shorter than an Ethernet header
			testFrame(3, 60),
			testFrame(4, 9000), // over the 1500 MTU
			{},
			testFrame(5, 60),
		}
		n, err := tx.WriteBatch(frames)
		if err != nil || n != 3 {
			t.Fatalf("WriteBatch = %d, %v; want 3, nil", n, err)
		}
		if s := tx.Stats(); s.TxPackets != 3 || s.TxErrors != 3 {
			t.Errorf("stats %+v, want 3 tx packets and 3 tx errors", s)
		}
		got := readN(t, rx, 3, 3*time.Second)
		for i, seq := range []uint32{1, 3, 5} {
			if i >= len(got) || !bytes.Equal(got[i], testFrame(seq, 60)) {
				t.Fatalf("peer received %d frames, frame %d is not seq %d", len(got), i, seq)
			}
		}
	})
	t.Run("receive", func(t *testing.T) {
		v.jumbo(t)
		// 2 KiB slots: an 8000-byte frame does not fit the ring and comes
		// through the socket's queue; ReadBatch has no room for it.
		rx := openPort(t, v.B, ifB, Options{FrameSize: 2048, PollTimeout: 2 * time.Second})
		raw := openRaw(t, v.A, ifA)
		raw.send(t, testFrame(1, 60), testFrame(2, 8000), testFrame(3, 1000), testFrame(4, 60))

		bufs, sizes := makeBufs(8, 500) // frame 3 does not fit the caller's buffer
		var got [][]byte
		for len(got) < 2 {
			n, err := rx.ReadBatch(bufs, sizes)
			if err != nil {
				t.Fatalf("ReadBatch after %d frames: %v", len(got), err)
			}
			for i := range n {
				got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
			}
		}
		if len(got) != 2 || !bytes.Equal(got[0], testFrame(1, 60)) || !bytes.Equal(got[1], testFrame(4, 60)) {
			t.Fatalf("received %d frames, want seq 1 and 4 intact", len(got))
		}
		if s := rx.Stats(); s.RxTruncated != 2 || s.RxPackets != 2 {
			t.Errorf("stats %+v, want 2 rx packets and 2 truncated", s)
		}
	})
}

// TestJumbo: frames longer than a ring slot — jumbo frames here, GSO
// super-frames from a TSO stack in the datapath — arrive whole through
// Batch.Jumbo, one per batch, in order with the frames around them, VLAN
// tag and all.
func TestJumbo(t *testing.T) {
	v := newVethPair(t)
	v.jumbo(t)
	rx := openPort(t, v.B, ifB, Options{FrameSize: 2048, PollTimeout: 2 * time.Second})
	raw := openRaw(t, v.A, ifA)
	want := [][]byte{testFrame(1, 60), testFrame(2, 8000), testFrame(3, 9000, 0x8100, 0x0064), testFrame(4, 1000), testFrame(5, 5000)}
	raw.send(t, want...)
	bufs, sizes := makeBufs(8, 2048)
	b := Batch{Bufs: bufs, Sizes: sizes, Jumbo: make([]byte, 9100)}
	var got [][]byte
	batches := 0
	for len(got) < len(want) {
		n, err := rx.Receive(&b)
		if err != nil {
			t.Fatalf("Receive after %d frames: %v (stats %+v)", len(got), err, rx.Stats())
		}
		batches++
		for i := range n {
			f := b.Frame(i)
			got = append(got, append([]byte(nil), f...))
		}
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			seq, _ := frameSeq(got[i])
			t.Errorf("frame %d: got seq %d (%d bytes), want %d bytes", i, seq, len(got[i]), len(want[i]))
		}
	}
	if batches < 3 {
		t.Errorf("%d batches for 3 jumbo frames: more than one jumbo frame per batch", batches)
	}
	if s := rx.Stats(); s.RxPackets != uint64(len(want)) || s.RxTruncated != 0 {
		t.Errorf("stats %+v, want %d frames, none truncated", s, len(want))
	}
}

// TestPromiscuous: the kernel counts promiscuity per user (ip -d link shows
// "promiscuity N"; the PROMISC flag only reflects "ip link set promisc on"),
// and drops our reference when the socket closes.
func TestPromiscuous(t *testing.T) {
	v := newVethPair(t)
	link := func() string { return v.B.Run(t, "ip", "-d", "-o", "link", "show", ifB) }
	port := openPort(t, v.B, ifB, Options{})
	if !strings.Contains(link(), "promiscuity 1 ") {
		t.Errorf("interface not promiscuous while the port is open: %s", link())
	}
	port.Close()
	if !strings.Contains(link(), "promiscuity 0 ") {
		t.Errorf("interface still promiscuous after Close: %s", link())
	}
	quiet := openPort(t, v.B, ifB, Options{NoPromisc: true})
	if !strings.Contains(link(), "promiscuity 0 ") {
		t.Errorf("NoPromisc port made the interface promiscuous: %s", link())
	}
	quiet.Close()
}

func TestOpenErrors(t *testing.T) {
	v := newVethPair(t)
	_, err := OpenInNetns(v.B.Path, "nosuchif0", Options{})
	if err == nil || !strings.Contains(err.Error(), "nosuchif0") {
		t.Errorf("open of a missing interface: err = %v, want one naming it", err)
	}
	_, err = OpenInNetns(v.B.Path, ifB, Options{FrameSize: 1000})
	if err == nil || !strings.Contains(err.Error(), "multiple of 16") {
		t.Errorf("open with frame size 1000: err = %v, want a complaint about its alignment", err)
	}
	_, err = OpenInNetns("/nonexistent/netns", ifB, Options{})
	if err == nil {
		t.Error("open in a missing netns succeeded")
	}
}

// TestConcurrentReadWrite runs a sender and a receiver on each port at once,
// as the datapath does (run with -race to check the locking). Senders keep
// at most a few batches in flight so a loaded CI machine cannot overflow the
// ring and turn a scheduling hiccup into a failure.
func TestConcurrentReadWrite(t *testing.T) {
	v := newVethPair(t)
	a := openPort(t, v.A, ifA, Options{PollTimeout: 5 * time.Second})
	b := openPort(t, v.B, ifB, Options{PollTimeout: 5 * time.Second})
	const count, batch, window = 5000, 50, 500
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, dir := range []struct{ tx, rx *Port }{{a, b}, {b, a}} {
		var received atomic.Int64
		wg.Add(2)
		go func() {
			defer wg.Done()
			frames := make([][]byte, batch)
			for i := 0; i < count; i += batch {
				for int64(i)-received.Load() > window {
					time.Sleep(100 * time.Microsecond)
				}
				for j := range frames {
					frames[j] = testFrame(uint32(i+j), 100)
				}
				if _, err := dir.tx.WriteBatch(frames); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			bufs, sizes := makeBufs(64, 2048)
			for next := uint32(0); next < count; {
				n, err := dir.rx.ReadBatch(bufs, sizes)
				if err != nil {
					errs <- fmt.Errorf("after %d frames: %w (stats %+v)", next, err, dir.rx.Stats())
					return
				}
				for i := range n {
					if seq, ok := frameSeq(bufs[i][:sizes[i]]); !ok || seq != next {
						errs <- fmt.Errorf("frame %d: got seq %d, ok %v (stats %+v)", next, seq, ok, dir.rx.Stats())
						return
					}
					next++
				}
				received.Store(int64(next))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSendAfterDownAtBind: a port opened while its interface is down (a
// tap bound before the hypervisor sets it up) sends once the interface is
// up: the socket's pending ENETDOWN from the bind must not cost the first
// frame, and a port whose interface is still down refuses frames.
func TestSendAfterDownAtBind(t *testing.T) {
	v := newVethPair(t)
	v.A.Run(t, "ip", "link", "set", ifA, "down")
	tx := openPort(t, v.A, ifA, Options{})
	rx := openPort(t, v.B, ifB, Options{PollTimeout: 2 * time.Second})
	if n, err := tx.WriteBatch([][]byte{testFrame(1, 60)}); n != 0 || err != nil {
		t.Fatalf("WriteBatch on a down interface = %d, %v; want 0 sent, nil", n, err)
	}
	if s := tx.Stats(); s.TxErrors != 1 {
		t.Fatalf("after a send on a down interface: %d tx errors, want 1", s.TxErrors)
	}
	v.A.Run(t, "ip", "link", "set", ifA, "up")
	in := testFrame(2, 60)
	if n, err := tx.WriteBatch([][]byte{in}); n != 1 || err != nil {
		t.Fatalf("WriteBatch once up = %d, %v (stats %+v); want 1, nil", n, err, tx.Stats())
	}
	got := readN(t, rx, 1, 3*time.Second)
	if len(got) != 1 || !bytes.Equal(got[0], in) {
		t.Fatalf("peer received %x, want %x", got, in)
	}
	if s := tx.Stats(); s.TxErrors != 1 {
		t.Errorf("%d tx errors, want only the one while down", s.TxErrors)
	}
}
