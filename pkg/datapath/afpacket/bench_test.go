//go:build linux

package afpacket

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

var txModes = []struct {
	name string
	opts Options
}{
	{"sendmmsg-qdisc", Options{}},
	{"sendmmsg-bypass", Options{QdiscBypass: true}},
}

var frameSizes = []int{64, 1514}

// benchModeration is the receiver's wakeup moderation in the streaming
// benchmarks: the userspace datapath's setting.
const benchModeration = 200 * time.Microsecond

// BenchmarkWriteBatch measures transmit alone: the peer end has no socket, so
// the kernel drops the frames after the veth.
func BenchmarkWriteBatch(b *testing.B) {
	v := newVethPair(b)
	for _, m := range txModes {
		for _, size := range frameSizes {
			b.Run(fmt.Sprintf("%s/%dB", m.name, size), func(b *testing.B) {
				tx := openPort(b, v.A, ifA, m.opts)
				frames := make([][]byte, 64)
				for i := range frames {
					frames[i] = testFrame(uint32(i), size)
				}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.ResetTimer()
				start := time.Now()
				sent := 0
				for sent < b.N {
					k := min(len(frames), b.N-sent)
					n, err := tx.WriteBatch(frames[:k])
					if err != nil {
						b.Fatal(err)
					}
					sent += n
				}
				b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "pps")
				if s := tx.Stats(); s.TxErrors != 0 {
					b.Errorf("%d tx errors", s.TxErrors)
				}
			})
		}
	}
}

// BenchmarkVethRoundTrip streams frames from a port in one namespace to a
// port in the other across a veth pair, a sender and a receiver goroutine
// running at once as in the datapath. The sender keeps at most window frames
// in flight so the measured rate is lossless; pps counts received frames.
func BenchmarkVethRoundTrip(b *testing.B) {
	v := newVethPair(b)
	for _, m := range txModes {
		for _, size := range frameSizes {
			b.Run(fmt.Sprintf("%s/%dB", m.name, size), func(b *testing.B) {
				benchStream(b, v, m.opts, size)
			})
		}
	}
}

func benchStream(b *testing.B, v vethPair, txOpts Options, size int) {
	const batch = 64
	rxOpts := Options{PollTimeout: 200 * time.Millisecond, Moderation: benchModeration}
	rxOpts.setDefaults()
	// Frames in flight: enough to keep both goroutines busy, few enough
	// that the RX ring absorbs the receiver being descheduled for a while.
	const window = 2048
	tx := openPort(b, v.A, ifA, txOpts)
	rx := openPort(b, v.B, ifB, rxOpts)
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = testFrame(uint32(i), size)
	}
	var received atomic.Int64
	done := make(chan error, 1)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	go func() {
		bufs, sizes := makeBufs(batch, 2048)
		for received.Load() < int64(b.N) {
			n, err := rx.ReadBatch(bufs, sizes)
			if err == ErrTimeout && received.Load()+int64(rx.Stats().RxDrops) >= int64(b.N) {
				break // the rest were dropped by the kernel and are reported below
			}
			if err != nil {
				done <- fmt.Errorf("after %d of %d frames: %w (rx stats %+v)", received.Load(), b.N, err, rx.Stats())
				return
			}
			received.Add(int64(n))
		}
		done <- nil
	}()
	sent, dropped := 0, int64(0)
	for sent < b.N {
		for int64(sent)-received.Load()-dropped >= window {
			time.Sleep(20 * time.Microsecond)
			dropped = int64(rx.Stats().RxDrops) // dropped frames never arrive
		}
		k := min(batch, b.N-sent)
		n, err := tx.WriteBatch(frames[:k])
		if err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(received.Load())/elapsed.Seconds(), "pps")
	b.ReportMetric(float64(rx.Stats().RxDrops), "drops")
}

// BenchmarkVethLatency sends one frame at a time and waits for it: the
// one-way latency of a lone frame through veth and the ring, wakeup
// included (with TPACKET_V3 it was the 1 ms block timeout).
func BenchmarkVethLatency(b *testing.B) {
	v := newVethPair(b)
	tx := openPort(b, v.A, ifA, Options{})
	rx := openPort(b, v.B, ifB, Options{PollTimeout: time.Second})
	frame := [][]byte{testFrame(1, 64)}
	bufs, sizes := makeBufs(8, 2048)
	b.ResetTimer()
	for range b.N {
		if _, err := tx.WriteBatch(frame); err != nil {
			b.Fatal(err)
		}
		if _, err := rx.ReadBatch(bufs, sizes); err != nil {
			b.Fatal(err)
		}
	}
}
