//go:build linux

package userspace

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Flows that do the same to flows depending on the same objects share one
// group (its compiled actions and tags), which goes with the last of them;
// flows that differ in anything do not share. Invalidating a tag removes
// exactly the flows of the groups carrying it.
func TestFlowsShareGroups(t *testing.T) {
	hb := newHitBench(t, 64) // one flow already: key sport 1000, tags 1, 2, 3
	dp := hb.dp
	route := func(dstMAC byte) []flow.Action {
		return []flow.Action{
			{Type: flow.ActSetEthSrc, MAC: packet.MAC{2, 0, 0, 0, 0xfe, 1}},
			{Type: flow.ActSetEthDst, MAC: packet.MAC{2, 0, 0, 0, 0, dstMAC}},
			{Type: flow.ActDecTTL, Count: 1},
			{Type: flow.ActOutput, Port: 2, PortID: "out"},
		}
	}
	install := func(sport uint16, acts []flow.Action, tags ...uint64) {
		t.Helper()
		k := dptest.Key(hb.frame, 1)
		k.SrcPort = sport
		if err := dp.Install(&datapath.FlowSpec{Key: k, Actions: acts, Tags: tags}); err != nil {
			t.Fatal(err)
		}
	}
	groups := func() (n, flows int) {
		dp.mu.Lock()
		defer dp.mu.Unlock()
		for _, l := range dp.table.groups.groups {
			for _, g := range l {
				n++
				flows += len(g.flows)
				for i, f := range g.flows {
					if f.group != g || int(f.slot) != i {
						t.Errorf("flow at %d of its group says group %p slot %d", i, f.group, f.slot)
					}
				}
			}
		}
		return n, flows
	}
	install(1, route(3), 1, 2, 3) // newHitBench's actions and tags, another 5-tuple
	install(2, route(3), 1, 2, 3)
	install(3, route(3), 1, 2, 4) // same actions, another object
	install(4, route(4), 1, 2, 3) // another destination
	if n, flows := groups(); n != 3 || flows != 5 {
		t.Fatalf("%d groups for %d flows; want 3 groups for 5 flows", n, flows)
	}
	// Every flow still forwards by its own group's actions.
	var got []string
	dp.Flows(func(f *datapath.FlowInfo) { got = append(got, f.Actions[1].MAC.String()) })
	if len(got) != 5 || got[4] != "02:00:00:00:00:04" {
		t.Fatalf("flows' destination MACs %v", got)
	}
	if n := dp.Invalidate(4); n != 1 {
		t.Fatalf("invalidating tag 4 removed %d flows, want 1", n)
	}
	if n, flows := groups(); n != 2 || flows != 4 {
		t.Fatalf("after removing the other object's flow: %d groups, %d flows; want 2, 4", n, flows)
	}
	// Expiry-like removal from the middle of a group keeps the rest.
	dp.mu.Lock()
	k := dptest.Key(hb.frame, 1)
	k.SrcPort = 1
	f := hb.in.flows[k]
	dp.table.remove(f)
	dp.mu.Unlock()
	if n, flows := groups(); n != 2 || flows != 3 {
		t.Fatalf("after removing one flow: %d groups, %d flows; want 2, 3", n, flows)
	}
	if n := dp.Invalidate(3); n != 3 { // sport 1000, 2 and 4
		t.Fatalf("invalidating tag 3 removed %d flows, want 3", n)
	}
	if n, flows := groups(); n != 0 || flows != 0 {
		t.Fatalf("after removing every flow: %d groups, %d flows left", n, flows)
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.table.liveRefs != 0 {
		t.Fatalf("live tag references %d with no flows", dp.table.liveRefs)
	}
}
