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
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
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
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchForward(b, size) })
	}
}

func benchForward(b *testing.B, size int) {
	host, vms := netnstest.New(b, "bfh"), netnstest.New(b, "bfv")
	netnstest.Veth(b, host, "t1", vms, "v1")
	netnstest.Veth(b, host, "t2", vms, "v2")
	dp, err := userspace.New(datapath.Config{Netns: host.Path})
	if err != nil {
		b.Fatal(err)
	}
	for i, ifname := range []string{"t1", "t2"} {
		if err := dp.AddPort(datapath.PortConfig{PortID: ifname, Index: int32(i + 1), Interface: ifname, TunnelKey: uint32(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
	frame := dptest.UDP{SrcMAC: packet.MAC{2, 0xd7, 0, 0, 0, 1}, DstMAC: packet.MAC{2, 0xd7, 0, 0, 0, 2},
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1, DstPort: 2, Len: size}.Frame()
	acts := []sim.Action{{Type: sim.ActSetEthDst, MAC: packet.MAC{2, 0xd7, 0, 0, 0, 3}}, {Type: sim.ActDecTTL, Count: 1}, {Type: sim.ActOutput, Port: 2}}
	if err := dp.Install(&datapath.FlowSpec{Key: dptest.Key(frame, 1), Actions: acts}); err != nil {
		b.Fatal(err)
	}
	var misses atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- dp.Run(ctx, datapath.MissFunc(func(*datapath.Upcall) { misses.Add(1) })) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			b.Error(err)
		}
	}()

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

	const batch, window = 64, 2048
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = frame
	}
	lost := func() int64 {
		s := dp.Stats()
		return int64(s.Lost + s.Drops[datapath.DropTxError] + rx.Stats().RxDrops)
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
		for received.Load() < int64(b.N) {
			n, err := rx.ReadBatch(bufs, sizes)
			if errors.Is(err, afpacket.ErrTimeout) && received.Load()+lost() >= int64(b.N) {
				break
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
	if m := misses.Load(); m != 0 {
		b.Errorf("%d misses; every frame should hit the flow", m)
	}
}
