package mirror

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

const (
	brID = "b0000000-0000-4000-8000-000000000001"
	rtID = "a0000000-0000-4000-8000-000000000001"
	rpID = "a0000000-0000-4000-8000-000000000002"
	r1ID = "a0000000-0000-4000-8000-000000000003"
	r2ID = "a0000000-0000-4000-8000-000000000004"
	bpID = "b0000000-0000-4000-8000-000000000002"
)

func TestInvalidationTags(t *testing.T) {
	bridge := &model.Bridge{Meta: model.Meta{ID: brID}, State: model.StateUp}
	router := &model.Router{Meta: model.Meta{ID: rtID}, State: model.StateUp}
	rport := &model.Port{Meta: model.Meta{ID: rpID}, RouterID: rtID, State: model.StateUp,
		Address: netip.MustParseAddr("10.0.0.1"), Network: netip.MustParsePrefix("10.0.0.0/24"), MAC: packet.MAC{2, 0, 0, 0, 0, 1}}
	wide := &model.Route{Meta: model.Meta{ID: r1ID}, RouterID: rtID, Type: model.RouteNormal, PortID: rpID, Weight: 100,
		Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("10.0.0.0/8")}
	narrow := &model.Route{Meta: model.Meta{ID: r2ID}, RouterID: rtID, Type: model.RouteNormal, PortID: rpID, Weight: 100,
		Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("10.1.0.0/16")}
	bport := &model.Port{Meta: model.Meta{ID: bpID}, BridgeID: brID, State: model.StateUp}
	old, err := sim.Build([]model.Object{bridge, router, rport, wide})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := sim.Build([]model.Object{bridge, router, rport, wide, narrow, bport})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ev   nsdb.Event
		want []uint64
		not  []uint64
	}{
		{"new narrower route takes flows from the covering one and from no-route",
			nsdb.Event{Type: nsdb.Put, Kind: model.RouteKind, ID: r2ID, Object: narrow},
			[]uint64{sim.ObjectTag(model.RouteKind, r2ID), sim.NoRouteTag(rtID)}, nil},
		{"deleted route invalidates its flows",
			nsdb.Event{Type: nsdb.Delete, Kind: model.RouteKind, ID: r1ID, Prev: wide},
			[]uint64{sim.ObjectTag(model.RouteKind, r1ID)}, nil},
		{"new bridge port changes the flood set",
			nsdb.Event{Type: nsdb.Put, Kind: model.PortKind, ID: bpID, Object: bport},
			[]uint64{sim.FloodTag(brID), sim.ObjectTag(model.PortKind, bpID)}, []uint64{sim.NoRouteTag(rtID)}},
	}
	for _, c := range cases {
		got := InvalidationTags(old, cur, c.ev)
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: missing tag %x in %x", c.name, w, got)
			}
		}
		for _, n := range c.not {
			if slices.Contains(got, n) {
				t.Errorf("%s: needless tag %x", c.name, n)
			}
		}
	}
	// The covering route's flows must go too when a narrower route appears.
	got := InvalidationTags(old, cur, cases[0].ev)
	covering := false
	for _, tg := range got {
		covering = covering || tg != sim.ObjectTag(model.RouteKind, r2ID) && tg != sim.NoRouteTag(rtID)
	}
	if !covering {
		t.Errorf("new /16 did not invalidate the covering /8's flows: %x", got)
	}
}
