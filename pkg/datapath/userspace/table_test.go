//go:build linux

package userspace

import (
	"slices"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
)

// FlowsUntil walks the table a chunk at a time: it stops when asked, sees
// every flow once when not, and keeps going past flows removed while fn
// runs (a removed flow keeps its place in the walk, never its turn).
func TestFlowsUntil(t *testing.T) {
	hb := newHitBench(t, 64) // one flow: sport 1000, tags 1, 2, 3
	dp := hb.dp
	const n = 3*flowsChunk + 10 // several chunks and a partial one
	for i := range n {
		k := dptest.Key(hb.frame, 1)
		k.SrcPort = uint16(2000 + i)
		acts := []flow.Action{{Type: flow.ActOutput, Port: 2, PortID: "out"}}
		if err := dp.Install(&datapath.FlowSpec{Key: k, Actions: acts, Tags: []uint64{uint64(100 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	const total = n + 1

	seen := 0
	dp.FlowsUntil(func(*datapath.FlowInfo) bool { seen++; return seen < 300 })
	if seen != 300 {
		t.Fatalf("stopped after %d flows; fn asked to stop at 300", seen)
	}

	ports := map[uint16]bool{}
	dp.Flows(func(f *datapath.FlowInfo) {
		if ports[f.Key.SrcPort] {
			t.Errorf("flow with source port %d listed twice", f.Key.SrcPort)
		}
		ports[f.Key.SrcPort] = true
	})
	if len(ports) != total {
		t.Fatalf("Flows listed %d flows, the table holds %d", len(ports), total)
	}

	// While the walk is in its first chunk, remove that chunk's last
	// flow (where the walk resumes) and a flow of the next chunk.
	clear(ports)
	i := 0
	dp.Flows(func(f *datapath.FlowInfo) {
		if i == 0 {
			// install order: newHitBench's flow, then sport 2000+k has tag 100+k
			dp.Invalidate(100+flowsChunk-2, 100+flowsChunk+5)
		}
		i++
		ports[f.Key.SrcPort] = true
	})
	want := total - 1 // the next chunk's removed flow is not listed
	if len(ports) != want || ports[2000+flowsChunk+5] {
		t.Fatalf("walk with removals listed %d flows (want %d); removed one listed: %v", len(ports), want, ports[2000+flowsChunk+5])
	}
	if got := dp.table.count; got != total-2 {
		t.Fatalf("table holds %d flows, want %d", got, total-2)
	}
}

// LiveState lists the state keys of the stateful flows used since a time,
// and nothing else, without allocating.
func TestLiveState(t *testing.T) {
	hb := newHitBench(t, 64) // one stateless flow
	dp := hb.dp
	k := dptest.Key(hb.frame, 1)
	k.SrcPort = 7
	state := []flowstate.Key{{Proto: 17, SrcPort: 7, DstPort: 2000}}
	acts := []flow.Action{{Type: flow.ActOutput, Port: 2, PortID: "out"}}
	if err := dp.Install(&datapath.FlowSpec{Key: k, Actions: acts, Tags: []uint64{9}, State: state}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Minute)
	var got [][]flowstate.Key
	dp.LiveState(before, func(s []flowstate.Key) { got = append(got, slices.Clone(s)) })
	if len(got) != 1 || !slices.Equal(got[0], state) {
		t.Fatalf("LiveState listed %v, want the one stateful flow's %v", got, state)
	}
	got = nil
	dp.LiveState(time.Now().Add(time.Minute), func(s []flowstate.Key) { got = append(got, s) })
	if len(got) != 0 {
		t.Fatalf("LiveState listed %v for flows unused since a later time", got)
	}
	n := 0
	if allocs := testing.AllocsPerRun(100, func() { dp.LiveState(before, func([]flowstate.Key) { n++ }) }); allocs != 0 {
		t.Fatalf("LiveState allocates %.1f times per walk", allocs)
	}
	dp.Invalidate(9)
	if dp.table.stateful.Load() != 0 {
		t.Fatalf("%d stateful flows counted after removing the only one", dp.table.stateful.Load())
	}
}
