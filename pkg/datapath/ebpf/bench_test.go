//go:build linux

package ebpf

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/cilium/ebpf/perf"

	"github.com/nagare/nagare/pkg/packet"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
)

// memlock is mapMemlock for benchmarks.
func memlock(tb testing.TB, m *ebpf.Map) uint64 {
	n, err := mapMemlock(m)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// twoPorts is a datapath in a namespace of its own with two ports, p1
// (index 1) and p2 (index 2), veths to another namespace; closed at the
// end of the test.
func twoPorts(tb testing.TB, prefix string) *Datapath {
	host, vms := netnstest.New(tb, prefix+"h"), netnstest.New(tb, prefix+"v")
	netnstest.Veth(tb, host, "p1", vms, "v1")
	netnstest.Veth(tb, host, "p2", vms, "v2")
	dp, err := New(datapath.Config{Netns: host.Path, Flows: datapath.FlowConfig{MaxFlows: 1 << 20}}, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dp.Close() })
	for i, n := range []string{"p1", "p2"} {
		if err := dp.AddPort(datapath.PortConfig{PortID: n, Index: int32(i + 1), Interface: n, TunnelKey: uint32(i + 1)}); err != nil {
			tb.Fatal(err)
		}
	}
	return dp
}

// BenchmarkInstall installs flows (distinct 5-tuples, one shared action
// list, as a VM's connections to one server) and reports the kernel
// memory each flow takes in the flow map.
func BenchmarkInstall(b *testing.B) {
	dp := twoPorts(b, "bi")
	acts := []flow.Action{{Type: flow.ActSetEthDst, MAC: [6]byte{2, 0, 0, 0, 0, 2}}, {Type: flow.ActDecTTL, Count: 1},
		{Type: flow.ActOutput, Port: 2, PortID: "p2", Interface: "p2"}}
	before := memlock(b, dp.objs.Flows)
	spec := datapath.FlowSpec{Actions: acts, Tags: []uint64{1, 2, 3}}
	spec.Key.InPort = 1
	spec.Key.EtherType = 0x0800
	spec.Key.Proto = 6
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		spec.Key.SrcPort, spec.Key.DstPort = uint16(n), uint16(n>>16)
		spec.Key.SrcIP[15] = byte(n >> 32)
		if err := dp.Install(&spec); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if flows := dp.Stats().Flows; flows > 0 {
		b.ReportMetric(float64(memlock(b, dp.objs.Flows)-before)/float64(flows), "kernel-bytes/flow")
	}
}

// BenchmarkUpcall measures what a miss costs in the kernel (parse, flow
// lookup, the upcall record with the packet) through BPF_PROG_TEST_RUN,
// with a reader draining the rings on another thread: with a wakeup per
// record (upcall_mode 0, the reader asleep) and with a wakeup per
// upcallBatchWakeup records (upcall_mode 1, the reader awake).
func BenchmarkUpcall(b *testing.B) {
	for _, mode := range []uint32{0, 1} {
		b.Run(map[uint32]string{0: "wakeup-each", 1: "wakeup-batch"}[mode], func(b *testing.B) {
			h := newProgHarness(b)
			batch, err := perf.NewReaderWithOptions(h.objs.UpcallsBatch, 1<<20, perf.ReaderOptions{WakeupEvents: upcallBatchWakeup})
			if err != nil {
				b.Fatal(err)
			}
			defer batch.Close()
			if err := h.objs.UpcallMode.Put(uint32(0), mode); err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, r := range []*perf.Reader{h.reader, batch} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var rec perf.Record
					for r.ReadInto(&rec) == nil {
					}
				}()
			}
			buf := make([]byte, 128)
			n, err := packet.BuildProbe(buf, &packet.Probe{EthSrc: packet.MAC{2, 0, 0, 0, 0, 1}, EthDst: packet.MAC{2, 0, 0, 0, 0, 2},
				Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.1.0.2"), Proto: packet.IPProtoUDP, SrcPort: 1, DstPort: 2})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			ret, err := h.objs.PortIn.Run(&ebpf.RunOptions{Data: buf[:n], Context: skbContext{IngressIfindex: testIfindex}, Repeat: uint32(b.N)})
			b.StopTimer()
			if err != nil || ret != tcActShot {
				b.Fatalf("port_in: %d, %v", ret, err)
			}
			h.reader.Close()
			batch.Close()
			wg.Wait()
		})
	}
}
