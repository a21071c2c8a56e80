//go:build linux

package userspace

import (
	"bytes"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

var (
	natSrc, natDst   = packet.MAC{2, 0, 0, 0, 0, 1}, packet.MAC{2, 0, 0, 0, 0xfe, 1}
	natRSrc, natRDst = packet.MAC{2, 0, 0, 0, 0xfe, 2}, packet.MAC{2, 0, 0, 0, 0, 2}
)

// newNATBench is newHitBench with a NAT case's flow installed.
func newNATBench(tb testing.TB, c dptest.NATCase) *hitBench {
	hb := newHitBench(tb, 64)
	hb.frame = c.In
	acts := append(append([]flow.Action(nil), c.Acts...), flow.Action{Type: flow.ActOutput, Port: 2, PortID: "out"})
	if err := hb.dp.Install(&datapath.FlowSpec{Key: dptest.Key(c.In, 1), Actions: acts}); err != nil {
		tb.Fatal(err)
	}
	return hb
}

// TestNATHitPath: every NAT case of the conformance suite, on the hit
// path without the kernel, gives the frame built from scratch, and
// allocates nothing.
func TestNATHitPath(t *testing.T) {
	for _, c := range dptest.NATCases(natSrc, natDst, natRSrc, natRDst) {
		if c.SlowPath {
			continue
		}
		hb := newNATBench(t, c)
		run := func() {
			hb.fill()
			hb.w.processBatch(batchSize, hb.dp.now(), noMiss)
		}
		run()
		if !bytes.Equal(hb.out.last, c.Want) {
			t.Errorf("%s:\n got %x\nwant %x", c.Name, hb.out.last, c.Want)
		}
		hb.out.keepLast = false
		if a := testing.AllocsPerRun(50, run); a != 0 {
			t.Errorf("%s: %v allocations per batch", c.Name, a)
		}
	}
}

// BenchmarkHitPathNAT is BenchmarkHitPath for a masqueraded TCP flow:
// addresses and port rewritten with incremental checksums on every
// packet, after a decode of the frame's offsets.
func BenchmarkHitPathNAT(b *testing.B) {
	for _, c := range dptest.NATCases(natSrc, natDst, natRSrc, natRDst) {
		if c.Name != "snat-tcp4" && c.Name != "snat-tcp6" {
			continue
		}
		b.Run(c.Name, func(b *testing.B) {
			hb := newNATBench(b, c)
			hb.out.keepLast = false
			b.ReportAllocs()
			for b.Loop() {
				hb.fill()
				hb.w.processBatch(batchSize, hb.dp.now(), noMiss)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/pkt")
		})
	}
}
