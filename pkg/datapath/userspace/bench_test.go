//go:build linux

package userspace_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/datapath/userspace"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// BenchmarkVethForward measures the whole userspace path: frames injected
// on one VM's veth, read by the datapath from the host end, matched against
// one flow (MAC rewrite, TTL decrement, output), sent out of the second
// VM's host end and counted at its VM end. The injector keeps at most a
// window of frames in flight so the rate is the lossless one; pps counts
// frames received at the far end, and drops what the kernel dropped on the
// way (rings full).
func BenchmarkVethForward(b *testing.B) {
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchForward(b, size, false) })
	}
}

// BenchmarkVXLANForward is BenchmarkVethForward across two hosts: the
// first datapath encapsulates to the second over a veth underlay, which
// delivers by tunnel key. Four AF_PACKET crossings and two UDP sockets per
// frame, on the same two shared vCPUs.
func BenchmarkVXLANForward(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchForward(b, size, true) })
	}
}

// startDP creates a datapath in ns with the given ports and runs it,
// counting misses; it is stopped when the benchmark ends.
func startDP(b *testing.B, ns *netnstest.NS, misses *atomic.Int64, ports ...datapath.PortConfig) datapath.Datapath {
	dp, err := userspace.New(datapath.Config{Netns: ns.Path})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range ports {
		if err := dp.AddPort(p); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- dp.Run(ctx, datapath.MissFunc(func(*datapath.Upcall) { misses.Add(1) })) }()
	b.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			b.Error(err)
		}
	})
	return dp
}

func benchForward(b *testing.B, size int, tunnel bool) {
	host, vms := netnstest.New(b, "bfh"), netnstest.New(b, "bfv")
	netnstest.Veth(b, host, "t1", vms, "v1")
	frame := dptest.UDP{SrcMAC: packet.MAC{2, 0xd7, 0, 0, 0, 1}, DstMAC: packet.MAC{2, 0xd7, 0, 0, 0, 2},
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1, DstPort: 2, Len: size}.Frame()
	p1 := datapath.PortConfig{PortID: "t1", Index: 1, Interface: "t1", TunnelKey: 1}
	p2 := datapath.PortConfig{PortID: "t2", Index: 2, Interface: "t2", TunnelKey: 2}
	var misses atomic.Int64
	var dp, dpB datapath.Datapath
	acts := []flow.Action{{Type: flow.ActSetEthDst, MAC: packet.MAC{2, 0xd7, 0, 0, 0, 3}}, {Type: flow.ActDecTTL, Count: 1}}
	if !tunnel {
		netnstest.Veth(b, host, "t2", vms, "v2")
		dp = startDP(b, host, &misses, p1, p2)
		acts = append(acts, flow.Action{Type: flow.ActOutput, Port: 2})
	} else {
		hostB := netnstest.New(b, "bfb")
		netnstest.Veth(b, hostB, "t2", vms, "v2")
		netnstest.Veth(b, host, "ul", hostB, "ul")
		a, bb := netip.MustParseAddr("10.199.1.1"), netip.MustParseAddr("10.199.1.2")
		host.Run(b, "ip", "addr", "add", a.String()+"/24", "dev", "ul")
		hostB.Run(b, "ip", "addr", "add", bb.String()+"/24", "dev", "ul")
		dp = startDP(b, host, &misses, p1)
		dpB = startDP(b, hostB, &misses, p2)
		for _, x := range []struct {
			dp          datapath.Datapath
			local, peer netip.Addr
		}{{dp, a, bb}, {dpB, bb, a}} {
			if err := x.dp.SetTunnels(datapath.TunnelConfig{LocalIP: x.local, VXLAN: true, Peers: []netip.Addr{x.peer}}); err != nil {
				b.Fatal(err)
			}
		}
		acts = append(acts, flow.Action{Type: flow.ActEncap, Tunnel: packet.TunnelVXLAN, Underlay: bb, TunnelKey: 2})
	}
	if err := dp.Install(&datapath.FlowSpec{Key: dptest.Key(frame, 1), Actions: acts}); err != nil {
		b.Fatal(err)
	}

	tx, err := afpacket.OpenInNetns(vms.Path, "v1", afpacket.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	rx, err := afpacket.OpenInNetns(vms.Path, "v2", afpacket.Options{PollTimeout: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()

	const batch, window = 64, 1024
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = frame
	}
	lost := func() int64 {
		n := int64(rx.Stats().RxDrops)
		for _, d := range []datapath.Datapath{dp, dpB} {
			if d != nil {
				s := d.Stats()
				n += int64(s.Lost + s.Drops[datapath.DropTxError] + s.Drops[datapath.DropTunnelTxError])
			}
		}
		return n
	}
	var received atomic.Int64
	done := make(chan error, 1)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	go func() {
		bufs, sizes := make([][]byte, batch), make([]int, batch)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		progress := time.Now()
		for received.Load() < int64(b.N) {
			n, err := rx.ReadBatch(bufs, sizes)
			if errors.Is(err, afpacket.ErrTimeout) && received.Load()+lost() >= int64(b.N) {
				break
			}
			if errors.Is(err, afpacket.ErrTimeout) && time.Since(progress) > 3*time.Second {
				// Lost where no counter sees it (a UDP socket's queue):
				// the rate below still counts only what arrived.
				b.Logf("%d frames unaccounted for", int64(b.N)-received.Load()-lost())
				break
			}
			if n > 0 {
				progress = time.Now()
			}
			if err != nil {
				done <- fmt.Errorf("after %d of %d frames: %w (datapath %+v)", received.Load(), b.N, err, dp.Stats())
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
			dropped = lost()
		}
		n, err := tx.WriteBatch(frames[:min(batch, b.N-sent)])
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
	b.ReportMetric(float64(lost()), "drops")
	if n := lost(); n > 0 {
		for _, d := range []datapath.Datapath{dp, dpB} {
			if d != nil {
				s := d.Stats()
				b.Logf("drops %d: datapath lost %d, drops %v; receiver ring %d", n, s.Lost, s.Drops, rx.Stats().RxDrops)
			}
		}
	}
	if m := misses.Load(); m != 0 {
		b.Errorf("%d misses; every frame should hit the flow", m)
	}
}
