//go:build linux

package userspace

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Flows that do the same share one compiled action list, which goes with
// the last of them; flows that differ in anything do not share.
func TestFlowsShareActions(t *testing.T) {
	hb := newHitBench(t, 64) // one flow already: key sport 1000
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
	lists := func() (n, refs int) {
		dp.mu.Lock()
		defer dp.mu.Unlock()
		for _, l := range dp.table.acts.lists {
			for _, s := range l {
				n++
				refs += s.refs
			}
		}
		return n, refs
	}
	install(1, route(3), 11) // what newHitBench installed, for another 5-tuple
	install(2, route(3), 12)
	install(3, route(4), 13) // another destination
	if n, refs := lists(); n != 2 || refs != 4 {
		t.Fatalf("%d lists, %d references; want 2 lists for 4 flows", n, refs)
	}
	// Every flow still forwards by its own list's content.
	var got []string
	dp.Flows(func(f *datapath.FlowInfo) { got = append(got, f.Actions[1].MAC.String()) })
	if len(got) != 4 || got[3] != "02:00:00:00:00:04" {
		t.Fatalf("flows' destination MACs %v", got)
	}
	dp.Invalidate(11, 12)
	if n, refs := lists(); n != 2 || refs != 2 {
		t.Fatalf("after removing two sharers: %d lists, %d references; want 2, 2", n, refs)
	}
	dp.Invalidate(1, 13) // newHitBench's flow (tag 1) and the other destination's
	if n, refs := lists(); n != 0 || refs != 0 {
		t.Fatalf("after removing every flow: %d lists, %d references left", n, refs)
	}
}
