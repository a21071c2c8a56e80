//go:build linux

package ebpf

import (
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
)

// TestInstallSharesCopies: flows with the same kernel action list share
// the agent side's copies of their actions, output ports and tags when
// those are equal — and only then: each flow reads back what it was
// installed with, the caller's slices are not retained, and removing one
// flow leaves the others whole. Install costs at most two allocations
// (the flow's record, and the tag index's growth) when it shares.
func TestInstallSharesCopies(t *testing.T) {
	dp := twoPorts(t, "is")
	acts := func() []flow.Action {
		return []flow.Action{{Type: flow.ActDecTTL, Count: 1}, {Type: flow.ActOutput, Port: 2, PortID: "p2", Interface: "p2"}}
	}
	key := func(port uint16) flow.Key {
		return flow.Key{InPort: 1, EtherType: 0x0800, Proto: 17, SrcPort: port}
	}
	specs := []datapath.FlowSpec{
		{Key: key(1), Actions: acts(), Tags: []uint64{10, 11}},
		{Key: key(2), Actions: acts(), Tags: []uint64{10, 11}},
		{Key: key(3), Actions: acts(), Tags: []uint64{10, 12}}, // other tags
		{Key: key(4), Actions: append(acts()[:1:1], flow.Action{Type: flow.ActOutput, Port: 2, PortID: "p2b", Interface: "p2"}), Tags: []uint64{10, 11}}, // same kernel list, other actions
	}
	for i := range specs {
		if err := dp.Install(&specs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// The caller's slices are its own again.
	specs[0].Actions[0].Count, specs[0].Tags[0] = 9, 99
	want := map[uint16]datapath.FlowSpec{1: {Actions: acts(), Tags: []uint64{10, 11}}, 2: specs[1], 3: specs[2], 4: specs[3]}
	check := func(n int) {
		t.Helper()
		got := 0
		dp.Flows(func(f *datapath.FlowInfo) {
			got++
			w := want[f.Key.SrcPort]
			if !slices.Equal(f.Actions, w.Actions) || !slices.Equal(f.Tags, w.Tags) {
				t.Errorf("flow %d: actions %+v tags %v, want %+v and %v", f.Key.SrcPort, f.Actions, f.Tags, w.Actions, w.Tags)
			}
		})
		if got != n {
			t.Errorf("%d flows, want %d", got, n)
		}
	}
	check(4)
	t.Run("shared", func(t *testing.T) {
		r1, r2, r3, r4 := dp.table.recs[key(1)], dp.table.recs[key(2)], dp.table.recs[key(3)], dp.table.recs[key(4)]
		if r1.list != r2.list || r1.list != r4.list {
			t.Fatalf("kernel lists %d %d %d, want one", r1.list, r2.list, r4.list)
		}
		same := func(a, b []uint64) bool { return len(a) > 0 && &a[0] == &b[0] }
		if &r1.acts[0] != &r2.acts[0] || !same(r1.tags, r2.tags) || &r1.outs[0] != &r2.outs[0] {
			t.Error("equal flows do not share their copies")
		}
		if same(r1.tags, r3.tags) || &r1.acts[0] == &r4.acts[0] {
			t.Error("different tags or actions shared")
		}
	})
	if n := dp.Invalidate(12); n != 1 {
		t.Fatalf("Invalidate(12) removed %d flows, want 1", n)
	}
	delete(want, 3)
	check(3)
	spec := datapath.FlowSpec{Actions: acts(), Tags: []uint64{10, 11}}
	port := uint16(100)
	allocs := testing.AllocsPerRun(200, func() {
		spec.Key = key(port)
		port++
		if err := dp.Install(&spec); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Install of a flow sharing its copies: %.1f allocations, want at most 2", allocs)
	}
}
