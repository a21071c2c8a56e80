//go:build linux

package userspace

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// sinkIO is an in-memory port: WriteBatch counts frames, ReadBatch has
// nothing to give. It lets the hit path be measured without the kernel.
type sinkIO struct {
	frames, bytes atomic.Uint64
	last          []byte      // copy of the last frame written, for checks
	lastHdr       offload.Hdr // and its offload state
	keepLast      bool
}

func (s *sinkIO) Receive(*afpacket.Batch) (int, error) { return 0, afpacket.ErrClosed }
func (s *sinkIO) Write(frames [][]byte, hdrs []offload.Hdr) (int, error) {
	for _, f := range frames {
		s.bytes.Add(uint64(len(f)))
	}
	if s.keepLast && len(frames) > 0 {
		s.last = append(s.last[:0], frames[len(frames)-1]...)
		s.lastHdr = offload.Hdr{}
		if hdrs != nil {
			s.lastHdr = hdrs[len(frames)-1]
		}
	}
	s.frames.Add(uint64(len(frames)))
	return len(frames), nil
}
func (s *sinkIO) Stats() afpacket.Stats { return afpacket.Stats{} }
func (s *sinkIO) Close() error          { return nil }

// hitBench is a datapath with two in-memory ports, a flow from the first
// to the second (rewrite MACs, decrement TTL, output), and a worker of the
// first port holding batchSize copies of the flow's frame.
type hitBench struct {
	dp    *Datapath
	in    *port
	out   *sinkIO
	w     *worker
	frame []byte
}

func newHitBench(tb testing.TB, frameLen int) *hitBench {
	tb.Helper()
	dp, err := New(datapath.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	out := &sinkIO{keepLast: true}
	dp.mu.Lock()
	in := dp.attach(datapath.PortConfig{PortID: "in", Index: 1, Interface: "in0", TunnelKey: 1, MTU: 1500}, &sinkIO{})
	dp.attach(datapath.PortConfig{PortID: "out", Index: 2, Interface: "out0", TunnelKey: 2, MTU: 1500}, out)
	dp.mu.Unlock()
	frame := dptest.UDP{SrcMAC: packet.MAC{2, 0, 0, 0, 0, 1}, DstMAC: packet.MAC{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 2000, Len: frameLen}.Frame()
	acts := []flow.Action{
		{Type: flow.ActSetEthSrc, MAC: packet.MAC{2, 0, 0, 0, 0xfe, 1}},
		{Type: flow.ActSetEthDst, MAC: packet.MAC{2, 0, 0, 0, 0, 3}},
		{Type: flow.ActDecTTL, Count: 1},
		{Type: flow.ActOutput, Port: 2, PortID: "out"},
	}
	if err := dp.Install(&datapath.FlowSpec{Key: dptest.Key(frame, 1), Actions: acts, Tags: []uint64{1, 2, 3}}); err != nil {
		tb.Fatal(err)
	}
	return &hitBench{dp: dp, in: in, out: out, w: newWorker(dp, in, batchSize, in.slotSize), frame: frame}
}

// fill stands in for ReadBatch: it copies the frame into every slot (the
// actions rewrite the slots in place).
func (hb *hitBench) fill() {
	for i := range batchSize {
		hb.w.sizes[i] = copy(hb.w.bufs[i], hb.frame)
	}
}

var noMiss = datapath.MissFunc(func(*datapath.Upcall) { panic("unexpected miss") })

// TestHitPathAllocs: processing a batch of hits — parse, key, lookup,
// counters, rewrites, queueing and the output flush — allocates nothing.
func TestHitPathAllocs(t *testing.T) {
	hb := newHitBench(t, 64)
	run := func() {
		hb.fill()
		hb.w.processBatch(batchSize, hb.dp.now(), noMiss)
	}
	run()
	if got := hb.out.frames.Load(); got != batchSize {
		t.Fatalf("%d frames output, want %d", got, batchSize)
	}
	want := dptest.Rewritten(hb.frame, packet.MAC{2, 0, 0, 0, 0xfe, 1}, packet.MAC{2, 0, 0, 0, 0, 3}, 1)
	if string(hb.out.last) != string(want) {
		t.Fatalf("output frame\n got %x\nwant %x", hb.out.last, want)
	}
	hb.out.keepLast = false
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("processBatch of %d hits allocates %.1f times, want 0", batchSize, allocs)
	}
	var f datapath.FlowInfo
	hb.dp.Flows(func(i *datapath.FlowInfo) { f = *i })
	if f.Packets != 102*batchSize {
		t.Errorf("flow counted %d packets, want %d", f.Packets, 102*batchSize)
	}
}

// TestTunnelQueueAllocs: queueing encapsulated frames and flushing them to
// a VXLAN socket allocates nothing either.
func TestTunnelQueueAllocs(t *testing.T) {
	// A namespace of its own, so the VXLAN port cannot clash with anything.
	// Frames go to our own socket over loopback and are dropped unread.
	ns := netnstest.New(t, "tq")
	dp, err := New(datapath.Config{Netns: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	lo := netip.MustParseAddr("127.0.0.1")
	if err := dp.SetTunnels(datapath.TunnelConfig{LocalIP: lo, VXLAN: true, Peers: []netip.Addr{lo}}); err != nil {
		t.Fatal(err)
	}
	acts, err := compile(dp.ports.Load(), []flow.Action{{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: lo, TunnelKey: 77}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(dp, nil, 1, minSlotSize)
	frame := make([]byte, 64)
	run := func() {
		for range batchSize {
			w.queueTunnel(&acts[0], frame)
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if allocs := testing.AllocsPerRun(50, run); allocs != 0 {
		t.Errorf("queueing and sending %d VXLAN frames allocates %.1f times, want 0", batchSize, allocs)
	}
	// AllocsPerRun runs once more than asked, to warm up.
	if s := dp.Stats(); s.VXLAN.TxPackets != 52*batchSize || s.VXLAN.TxErrors != 0 {
		t.Errorf("VXLAN stats %+v", s.VXLAN)
	}
}

// BenchmarkHitPath processes batches of 64 frames that hit one flow (MAC
// rewrites, TTL decrement, output) into an in-memory port: the datapath's
// own cost per packet, without the kernel's.
func BenchmarkHitPath(b *testing.B) {
	for _, size := range []int{64, 1514} {
		b.Run(sizeName(size), func(b *testing.B) {
			hb := newHitBench(b, size)
			hb.out.keepLast = false
			b.ReportAllocs()
			b.SetBytes(int64(size * batchSize))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				hb.fill()
				hb.w.processBatch(batchSize, hb.dp.now(), noMiss)
			}
			b.ReportMetric(float64(b.N*batchSize)/time.Since(start).Seconds(), "pps")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/pkt")
		})
	}
}

func sizeName(n int) string {
	if n == 64 {
		return "64B"
	}
	return "1514B"
}

// TestTunnelReceiveAllocs: receiving VXLAN packets, checking their source
// and key, and delivering the inner frames to a port allocates nothing.
func TestTunnelReceiveAllocs(t *testing.T) {
	ns, dp, sink := runVXLANSink(t, "tr")
	sink.keepLast = false
	lo := netip.MustParseAddr("127.0.0.1")
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.Dial("udp4", "127.0.0.1:4789")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 8+64)
	payload[0] = 0x08
	binary.BigEndian.PutUint32(payload[4:], 5<<8)
	copy(payload[8:], dptest.UDP{Src: lo, Dst: lo, SrcPort: 1, DstPort: 2}.Frame())
	var want uint64
	run := func() {
		for range 16 {
			if _, err := conn.Write(payload); err != nil {
				t.Fatal(err)
			}
		}
		want += 16
		deadline := time.Now().Add(5 * time.Second)
		for sink.frames.Load() < want && time.Now().Before(deadline) {
			runtime.Gosched()
		}
	}
	run()
	if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
		t.Errorf("receiving and delivering 16 VXLAN packets allocates %.1f times, want 0", allocs)
	}
	if got := sink.frames.Load(); got != want {
		t.Errorf("%d frames delivered, want %d (stats %+v)", got, want, dp.Stats())
	}
}

// runVXLANSink runs a datapath in a namespace of its own with VXLAN on
// 127.0.0.1 (its own peer) and one in-memory port of tunnel key 5; it
// stops when the test ends.
func runVXLANSink(t *testing.T, name string) (*netnstest.NS, *Datapath, *sinkIO) {
	t.Helper()
	ns := netnstest.New(t, name)
	dp, err := New(datapath.Config{Netns: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	sink := &sinkIO{keepLast: true}
	dp.mu.Lock()
	dp.attach(datapath.PortConfig{PortID: "p", Index: 1, Interface: "p0", TunnelKey: 5, MTU: 1500}, sink)
	dp.mu.Unlock()
	lo := netip.MustParseAddr("127.0.0.1")
	if err := dp.SetTunnels(datapath.TunnelConfig{LocalIP: lo, VXLAN: true, Peers: []netip.Addr{lo}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx, noMiss) }()
	t.Cleanup(func() { cancel(); <-done })
	return ns, dp, sink
}
