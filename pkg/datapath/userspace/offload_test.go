//go:build linux

package userspace

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// offloadBench is a datapath with two in-memory ports and a worker of the
// first, fed one offloaded frame at a time.
type offloadBench struct {
	dp  *Datapath
	in  *port
	out *sinkIO
	w   *worker
}

func newOffloadBench(tb testing.TB, netns string) *offloadBench {
	tb.Helper()
	dp, err := New(datapath.Config{Netns: netns})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dp.Close() })
	out := &sinkIO{keepLast: true}
	dp.mu.Lock()
	in := dp.attach(datapath.PortConfig{PortID: "in", Index: 1, Interface: "in0", TunnelKey: 1, MTU: 1500}, &sinkIO{})
	dp.attach(datapath.PortConfig{PortID: "out", Index: 2, Interface: "out0", TunnelKey: 2, MTU: 1500}, out)
	dp.mu.Unlock()
	return &offloadBench{dp: dp, in: in, out: out, w: newWorker(dp, in, batchSize, in.slotSize)}
}

func (ob *offloadBench) install(tb testing.TB, frame []byte, acts ...flow.Action) {
	tb.Helper()
	if err := ob.dp.Install(&datapath.FlowSpec{Key: dptest.Key(frame, 1), Actions: acts}); err != nil {
		tb.Fatal(err)
	}
}

// feed stands in for Receive: frame i of frames goes where Receive would
// put it (a super-frame into the jumbo slot: one per batch) with its
// header.
func (ob *offloadBench) feed(frames [][]byte, hdrs []offload.Hdr) {
	w := ob.w
	w.rx.JumboIndex = -1
	for i, f := range frames {
		if len(f) > len(w.bufs[i]) {
			w.rx.JumboIndex = i
			w.sizes[i] = copy(w.jumbo[headroom:], f)
		} else {
			w.sizes[i] = copy(w.bufs[i], f)
		}
		w.hdrs[i] = hdrs[i]
	}
	w.processBatch(len(frames), ob.dp.now(), noMiss)
}

var outPort = flow.Action{Type: flow.ActOutput, Port: 2, PortID: "out"}

// TestOffloadToLocalPort: a super-frame whose flow outputs to a local port
// leaves whole with its offload state, the offsets moved by a pushed VLAN
// tag, and a NAT rewrite keeps its partial checksum the seed that makes
// the segments' checksums right.
func TestOffloadToLocalPort(t *testing.T) {
	ob := newOffloadBench(t, "")
	frame, hdr := dptest.SuperFrame(false, 30000, 1448)

	ob.install(t, frame, outPort)
	ob.feed([][]byte{frame}, []offload.Hdr{hdr})
	if !bytes.Equal(ob.out.last, frame) || ob.out.lastHdr != hdr {
		t.Fatalf("plain output: got %d bytes with %+v, want the %d-byte super-frame with %+v", len(ob.out.last), ob.out.lastHdr, len(frame), hdr)
	}

	ob.dp.Flush()
	ob.install(t, frame, flow.Action{Type: flow.ActPushVLAN, VLAN: 7}, outPort)
	ob.feed([][]byte{frame}, []offload.Hdr{hdr})
	want := hdr
	want.CsumStart += 4
	want.HdrLen += 4
	if !bytes.Equal(ob.out.last, dptest.Pushed(frame, 7)) || ob.out.lastHdr != want {
		t.Fatalf("push-vlan: header %+v, want %+v (frame equal: %v)", ob.out.lastHdr, want, bytes.Equal(ob.out.last, dptest.Pushed(frame, 7)))
	}

	ob.dp.Flush()
	nat := netip.MustParseAddr("192.0.2.77")
	ob.install(t, frame, flow.Action{Type: flow.ActSetIPSrc, Addr: nat}, flow.Action{Type: flow.ActSetL4Src, L4Port: 4242}, outPort)
	ob.feed([][]byte{frame}, []offload.Hdr{hdr})
	got := append([]byte(nil), ob.out.last...)
	if ob.out.lastHdr != hdr {
		t.Fatalf("NAT: header %+v, want %+v", ob.out.lastHdr, hdr)
	}
	segmentsVerify(t, got, &hdr, nat, 4242)
}

// segmentsVerify cuts a super-frame as the kernel would and checks each
// segment's checksum and source.
func segmentsVerify(t *testing.T, frame []byte, h *offload.Hdr, src netip.Addr, sport uint16) {
	t.Helper()
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, frame)
	if p.SrcIP != src || p.SrcPort != sport {
		t.Fatalf("rewritten to %s:%d, want %s:%d", p.SrcIP, p.SrcPort, src, sport)
	}
	// The seed must be the rewritten packet's pseudo-header sum.
	if seed, want := uint16(frame[p.L4Off+16])<<8|uint16(frame[p.L4Off+17]), offload.Seed(p.SrcIP, p.DstIP, p.IPProto, p.L3End-p.L4Off); seed != want {
		t.Fatalf("partial checksum %#04x after NAT, want the new seed %#04x", seed, want)
	}
	var s offload.Segmenter
	s.Init(&p, h, 0)
	buf := make([]byte, 2048)
	for !s.Done() {
		n := s.Next(buf)
		var q packet.Parsed
		(&packet.Decoder{}).Decode(&q, buf[:n])
		if packet.Checksum(buf[q.L4Off:q.L3End], packet.PseudoHeaderSum(q.SrcIP, q.DstIP, q.IPProto, q.L3End-q.L4Off)) != 0 {
			t.Fatal("segment of the NATed super-frame does not verify")
		}
	}
}

// TestOffloadHostileHeaders: offload headers no kernel lets a guest send
// (checked on the way in by tap and packet sockets, but a datapath must
// not rely on that) are dropped and counted by reason, with nothing
// output; an honest frame after them still is.
func TestOffloadHostileHeaders(t *testing.T) {
	ob := newOffloadBench(t, "")
	frame, hdr := dptest.SuperFrame(false, 3000, 1000)
	ob.install(t, frame, outPort)
	lie := func(f func(h *offload.Hdr)) offload.Hdr { h := hdr; f(&h); return h }
	cases := []struct {
		h    offload.Hdr
		want offload.Error
	}{
		{lie(func(h *offload.Hdr) { h.CsumStart = 0xfff0 }), offload.ErrCsumOutside},
		{lie(func(h *offload.Hdr) { h.CsumOffset = uint16(len(frame)) }), offload.ErrCsumOutside},
		{lie(func(h *offload.Hdr) { h.HdrLen = 0xffff }), offload.ErrHdrLen},
		{lie(func(h *offload.Hdr) { h.GSOType = offload.GSOUDP }), offload.ErrGSOType},
		{lie(func(h *offload.Hdr) { h.GSOType = 0x42 }), offload.ErrGSOType},
		{lie(func(h *offload.Hdr) { h.GSOType = offload.GSOUDPL4 }), offload.ErrGSOMismatch},
		{lie(func(h *offload.Hdr) { h.GSOSize = 0 }), offload.ErrGSOSize},
		{lie(func(h *offload.Hdr) { h.CsumOffset = 12 }), offload.ErrGSOCsum},
	}
	for _, c := range cases { // one super-frame per batch, as Receive hands them
		ob.feed([][]byte{frame}, []offload.Hdr{c.h})
	}
	if n := ob.out.frames.Load(); n != 0 {
		t.Fatalf("%d frames output for lying headers", n)
	}
	st := ob.dp.Stats()
	want := map[string]uint64{}
	for _, c := range cases {
		want[datapath.OffloadDrop(c.want)]++
	}
	for r, n := range want {
		if st.Drop(r) != n {
			t.Errorf("drop %s = %d, want %d (drops %v)", r, st.Drop(r), n, st.Drops)
		}
	}
	ob.feed([][]byte{frame}, []offload.Hdr{hdr})
	if n := ob.out.frames.Load(); n != 1 {
		t.Fatalf("honest super-frame after the lies: %d frames output, want 1", n)
	}
}

// TestOffloadPathAllocs: a super-frame passed to a local port, and one cut
// into segments for a VXLAN tunnel, allocate nothing once warm.
func TestOffloadPathAllocs(t *testing.T) {
	ns := netnstest.New(t, "oa")
	ob := newOffloadBench(t, ns.Path)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := ob.dp.SetTunnels(datapath.TunnelConfig{LocalIP: lo, VXLAN: true, Peers: []netip.Addr{lo}}); err != nil {
		t.Fatal(err)
	}
	local, hdr := dptest.SuperFrame(false, 60000, 1448)
	tunnelled, hdr6 := dptest.SuperFrame(true, 60000, 1428)
	ob.install(t, local, outPort)
	ob.install(t, tunnelled, flow.Action{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: lo, TunnelKey: 77})
	ob.out.keepLast = false
	frames, hdrs := [][]byte{local}, []offload.Hdr{hdr}
	for _, c := range []struct {
		name  string
		frame []byte
		hdr   offload.Hdr
	}{{"local", local, hdr}, {"tunnel", tunnelled, hdr6}} {
		frames[0], hdrs[0] = c.frame, c.hdr
		run := func() { ob.feed(frames, hdrs) }
		run()
		if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
			t.Errorf("%s: a super-frame allocates %.1f times, want 0", c.name, allocs)
		}
	}
	st := ob.dp.Stats()
	segs := uint64((60000 + 1427) / 1428)
	if ob.dp.tun.Load().vxlan.noGSO.Load() {
		t.Error("the kernel refused UDP_SEGMENT: segments went one datagram at a time")
	}
	// One run to warm up, and AllocsPerRun's own warm-up and 20 runs.
	if st.VXLAN.TxPackets != 22*segs || ob.out.frames.Load() != 22 || len(st.Drops) != 0 {
		t.Errorf("VXLAN sent %d, local port %d, drops %v; want %d segments and 22 super-frames", st.VXLAN.TxPackets, ob.out.frames.Load(), st.Drops, 22*segs)
	}
}

// BenchmarkOffloadPath: the datapath's own cost for one 64 KiB super-frame
// passed to a local port, and cut into segments for a tunnel.
func BenchmarkOffloadPath(b *testing.B) {
	ns := netnstest.New(b, "ob")
	ob := newOffloadBench(b, ns.Path)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := ob.dp.SetTunnels(datapath.TunnelConfig{LocalIP: lo, VXLAN: true, Peers: []netip.Addr{lo}}); err != nil {
		b.Fatal(err)
	}
	local, hdr := dptest.SuperFrame(false, 64000, 1448)
	ob.install(b, local, outPort)
	ob.out.keepLast = false
	b.Run("local", func(b *testing.B) {
		b.SetBytes(int64(len(local)))
		b.ReportAllocs()
		for b.Loop() {
			ob.feed([][]byte{local}, []offload.Hdr{hdr})
		}
	})
	ob.dp.Flush()
	ob.install(b, local, flow.Action{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: lo, TunnelKey: 77})
	b.Run("vxlan", func(b *testing.B) {
		b.SetBytes(int64(len(local)))
		b.ReportAllocs()
		for b.Loop() {
			ob.feed([][]byte{local}, []offload.Hdr{hdr})
		}
	})
}

// TestTunnelGRO: a run of VXLAN datagrams sent as one UDP_SEGMENT message
// (as a peer's tunnel queue sends the segments of a super-frame) arrives
// as one UDP_GRO receive and is cut back into its datagrams, each inner
// frame delivered intact and in order; the segments of a TCP super-frame
// are merged back into it, without allocating.
func TestTunnelGRO(t *testing.T) {
	ns, dp, sink := runVXLANSink(t, "gro")
	if !dp.tun.Load().vxlan.gro {
		t.Fatal("UDP_GRO is not on on the VXLAN socket")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	// Eleven datagrams: ten of 8+1000 bytes and a shorter last one.
	var run []byte
	var inners [][]byte
	for i := range 11 {
		n := 1000
		if i == 10 {
			n = 300
		}
		inner := dptest.UDP{Src: lo, Dst: lo, SrcPort: uint16(i), DstPort: 2, Len: n}.Frame()
		run = append(run, vxlanDatagram(inner)...)
		inners = append(inners, inner)
	}
	c := dialVXLAN(t, ns)
	sendSegmented(t, c, run, 8+1000)
	waitFrames(t, sink, 11)
	if !bytes.Equal(sink.last, inners[10]) {
		t.Fatalf("last frame delivered: %d bytes, want the 300-byte one", len(sink.last))
	}
	if s := dp.Stats(); s.VXLAN.RxPackets != 11 || len(s.Drops) != 0 {
		t.Errorf("VXLAN rx %d, drops %v", s.VXLAN.RxPackets, s.Drops)
	}

	// The segments of a TCP super-frame, sent the same way, are merged
	// back: the port gets the super-frame whole, with its GSO header.
	super, hdr := dptest.SuperFrame(false, 20000, 1400)
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, super)
	var seg offload.Segmenter
	seg.Init(&p, &hdr, 0)
	run = run[:0]
	for !seg.Done() {
		buf := make([]byte, seg.NextLen())
		seg.Next(buf)
		run = append(run, vxlanDatagram(buf)...)
	}
	want := uint64(11)
	send := func() {
		sendSegmented(t, c, run, 8+14+20+20+1400)
		want++
		waitFrames(t, sink, want)
	}
	send()
	if !bytes.Equal(sink.last, super) || sink.lastHdr != hdr {
		t.Fatalf("delivered %d bytes with %+v; want the %d-byte super-frame with %+v", len(sink.last), sink.lastHdr, len(super), hdr)
	}
	sink.keepLast = false
	if allocs := testing.AllocsPerRun(20, send); allocs != 0 {
		t.Errorf("receiving and merging the segments of a super-frame allocates %.1f times, want 0", allocs)
	}
}

// vxlanDatagram returns inner behind a VXLAN header of VNI 5.
func vxlanDatagram(inner []byte) []byte {
	b := make([]byte, 8, 8+len(inner))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], 5<<8)
	return append(b, inner...)
}

// dialVXLAN opens a UDP socket in ns towards the VXLAN port on 127.0.0.1.
func dialVXLAN(t *testing.T, ns *netnstest.NS) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), packet.DefaultVXLANPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendSegmented sends run as datagrams of size bytes in one UDP_SEGMENT
// message, as a peer's tunnel queue does.
func sendSegmented(t *testing.T, c *net.UDPConn, run []byte, size int) {
	t.Helper()
	var oob [unix.SizeofCmsghdr + 8]byte
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
	if _, _, err := c.WriteMsgUDP(run, oob[:], nil); err != nil {
		t.Fatalf("send a UDP_SEGMENT run: %v", err)
	}
}

// waitFrames waits until the sink has had n frames.
func waitFrames(t *testing.T, sink *sinkIO, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sink.frames.Load() < n && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := sink.frames.Load(); got != n {
		t.Fatalf("%d frames delivered, want %d", got, n)
	}
}

func TestCmsgSizes(t *testing.T) {
	if cmsgSegmentLen != unix.CmsgSpace(2) || cmsgGROLen != unix.CmsgSpace(4) {
		t.Fatalf("control message sizes %d and %d, want %d and %d", cmsgSegmentLen, cmsgGROLen, unix.CmsgSpace(2), unix.CmsgSpace(4))
	}
}
