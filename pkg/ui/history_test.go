package ui

import (
	"reflect"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

func TestSeriesOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ms := func(s int) float64 { return float64(at(s).UnixMilli()) }
	cases := []struct {
		name    string
		samples []Sample
		series  string
		want    []Point
	}{
		{"no samples", nil, "hits_per_s", nil},
		{"one sample has no rate", []Sample{{T: at(0), Hits: 5}}, "hits_per_s", nil},
		{"one sample is a gauge point", []Sample{{T: at(0), Flows: 3}}, "flows", []Point{{ms(0), 3}}},
		{"rate over the interval", []Sample{{T: at(0), Hits: 100}, {T: at(2), Hits: 300}, {T: at(4), Hits: 300}},
			"hits_per_s", []Point{{ms(2), 100}, {ms(4), 0}}},
		{"a restart (counter down) is a gap, not a negative rate",
			[]Sample{{T: at(0), Misses: 50}, {T: at(2), Misses: 70}, {T: at(4), Misses: 3}, {T: at(6), Misses: 13}},
			"misses_per_s", []Point{{ms(2), 10}, {ms(6), 5}}},
		{"a drop reason that appears counts from zero",
			[]Sample{{T: at(0), Drops: map[string]float64{}}, {T: at(2), Drops: map[string]float64{"datapath: malformed": 8}}},
			"drops_per_s: datapath: malformed", []Point{{ms(2), 4}}},
		{"samples out of order give no rate", []Sample{{T: at(4), Hits: 10}, {T: at(2), Hits: 20}}, "hits_per_s", []Point{}},
	}
	for _, c := range cases {
		got := seriesOf(c.samples)[c.series]
		if len(got) == 0 && len(c.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %s = %v, want %v", c.name, c.series, got, c.want)
		}
	}
}

func TestRingKeepsTheLastSamples(t *testing.T) {
	var r ring
	t0 := time.Unix(0, 0)
	for i := range historyLen + 7 {
		r.add(Sample{T: t0.Add(time.Duration(i) * time.Second), Flows: float64(i)})
	}
	s := r.samples()
	if len(s) != historyLen || s[0].Flows != 7 || s[len(s)-1].Flows != historyLen+6 {
		t.Fatalf("ring holds %d samples from %v to %v", len(s), s[0].Flows, s[len(s)-1].Flows)
	}
	for i := 1; i < len(s); i++ {
		if !s[i].T.After(s[i-1].T) {
			t.Fatalf("sample %d is not after %d", i, i-1)
		}
	}
	if last, ok := r.last(); !ok || last.Flows != historyLen+6 {
		t.Errorf("last = %v", last.Flows)
	}
}

func TestHistoryApply(t *testing.T) {
	h := newHistory()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	st := func(s int, hits uint64) *nsdb.DatapathStatus {
		return &nsdb.DatapathStatus{Updated: now.Add(time.Duration(s) * time.Second), Hits: hits,
			Drops: map[string]uint64{"malformed": 1}, SimulationDrops: map[string]uint64{"rule": 2}, AgentDrops: map[string]uint64{"queue": 3}}
	}
	h.apply(nsdb.DatapathStatusBatch{Reset: true, Status: map[string]*nsdb.DatapathStatus{"a": st(0, 10)}})
	h.apply(nsdb.DatapathStatusBatch{Status: map[string]*nsdb.DatapathStatus{"a": st(2, 30)}})
	h.apply(nsdb.DatapathStatusBatch{Status: map[string]*nsdb.DatapathStatus{"a": st(2, 30)}}) // republished after a resume
	series, last := h.hostHistory("a")
	if last == nil || last.Hits != 30 || len(series["hits_per_s"]) != 1 || series["hits_per_s"][0][1] != 10 {
		t.Fatalf("after two statuses: last %+v, hits %v", last, series["hits_per_s"])
	}
	for _, name := range []string{"drops_per_s: datapath: malformed", "drops_per_s: simulation: rule", "drops_per_s: agent: queue"} {
		if _, ok := series[name]; !ok {
			t.Errorf("no series %q", name)
		}
	}
	// The agent dies: its status goes, its history stays for a while.
	h.apply(nsdb.DatapathStatusBatch{Status: map[string]*nsdb.DatapathStatus{"a": nil}})
	series, last = h.hostHistory("a")
	if last != nil || len(series["flows"]) != 2 {
		t.Errorf("after the agent died: last %+v, %d samples", last, len(series["flows"]))
	}
	now = now.Add(historyKeep + time.Minute)
	h.apply(nsdb.DatapathStatusBatch{Reset: true, Status: map[string]*nsdb.DatapathStatus{}})
	if series, _ := h.hostHistory("a"); len(series["flows"]) != 0 {
		t.Errorf("a history long dead is kept: %d samples", len(series["flows"]))
	}
}

// TestVisible: what a member sees, given their scope: their objects, the
// ports of their routers and the ports those are linked to; no host, no
// other object.
func TestVisible(t *testing.T) {
	const (
		myRouter, myBridge, extBridge, otherBridge = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b", "00000000-0000-0000-0000-00000000000c", "00000000-0000-0000-0000-00000000000d"
	)
	port := func(id, bridge, router, peer string) *model.Port {
		return &model.Port{Meta: model.Meta{ID: id}, BridgeID: bridge, RouterID: router, PeerID: peer, HostID: "h", InterfaceName: "tap1"}
	}
	objs := map[string]model.Object{}
	add := func(o model.Object) model.Object { objs[keyOf(o)] = o; return o }
	gwRouter := add(port("10000000-0000-0000-0000-000000000001", "", myRouter, "10000000-0000-0000-0000-000000000002"))
	gwBridge := add(port("10000000-0000-0000-0000-000000000002", extBridge, "", "10000000-0000-0000-0000-000000000001"))
	mine := add(port("10000000-0000-0000-0000-000000000003", myBridge, "", ""))
	othersOnExt := add(port("10000000-0000-0000-0000-000000000004", extBridge, "", ""))
	othersLinked := add(port("10000000-0000-0000-0000-000000000005", extBridge, "", "10000000-0000-0000-0000-000000000006"))
	add(port("10000000-0000-0000-0000-000000000006", "", "00000000-0000-0000-0000-0000000000ff", "10000000-0000-0000-0000-000000000005"))
	v := viewer{project: "p", ids: map[string]bool{"router/" + myRouter: true, "bridge/" + myBridge: true, "bridge/" + extBridge: true,
		"port/" + mine.GetMeta().ID: true}}
	cases := []struct {
		o    model.Object
		want bool
	}{
		{&model.Bridge{Meta: model.Meta{ID: myBridge}}, true},
		{&model.Bridge{Meta: model.Meta{ID: extBridge}}, true},
		{&model.Bridge{Meta: model.Meta{ID: otherBridge}}, false},
		{&model.Router{Meta: model.Meta{ID: myRouter}}, true},
		{&model.Host{Meta: model.Meta{ID: myRouter}}, false},
		{mine, true}, {gwRouter, true}, {gwBridge, true}, {othersOnExt, false}, {othersLinked, false},
	}
	for _, c := range cases {
		if got := v.visible(objs, c.o); got != c.want {
			t.Errorf("visible(%s) = %v, want %v", keyOf(c.o), got, c.want)
		}
		if c.want && !(&viewer{admin: true}).visible(objs, c.o) {
			t.Errorf("an admin does not see %s", keyOf(c.o))
		}
	}
	if p := v.redact(mine).(*model.Port); p.HostID != "" || p.InterfaceName != "" || mine.(*model.Port).HostID != "h" {
		t.Errorf("redact: member gets %+v; the mirror's port became %+v", p, mine)
	}
	if p := (&viewer{admin: true}).redact(mine).(*model.Port); p.HostID != "h" {
		t.Errorf("redact hides the binding from an admin")
	}
}
