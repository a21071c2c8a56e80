package mirror

import (
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Snapshots after the first are made from the one before: they say what
// changed, keep what did not, and a change that does not build is held
// back and published with the next one that does.
func TestIncrementalSnapshots(t *testing.T) {
	var published []*Snapshot
	m := New(Config{Flows: memory.New(datapath.Config{}, memory.NewHost(nil)), Publish: func(s *Snapshot) { published = append(published, s) }})
	br := &model.Bridge{Meta: model.Meta{ID: brID}, State: model.StateUp}
	if err := m.Apply(nsdb.Batch{Reset: true, Objects: []model.Object{br}}); err != nil {
		t.Fatal(err)
	}
	first := m.Current()
	if !first.Reset || !first.ChangedSince(0, model.PortKind.Name) {
		t.Fatal("a reset snapshot does not say everything changed")
	}
	vm := &model.Port{Meta: model.Meta{ID: bpID}, BridgeID: brID, State: model.StateUp, HostID: "h1", InterfaceName: "tap1", TunnelKey: 5}
	put := func(o model.Object) nsdb.Event {
		return nsdb.Event{Type: nsdb.Put, Kind: model.KindOf(o), ID: o.GetMeta().ID, Object: o}
	}
	if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{put(vm)}}); err != nil {
		t.Fatal(err)
	}
	s := m.Current()
	if s.Reset || len(s.Changes) != 1 || s.Changes[0].ID != bpID || s.Version != first.Version+1 {
		t.Fatalf("snapshot after a port's creation: reset %v, changes %v, version %d", s.Reset, s.Changes, s.Version)
	}
	if !s.ChangedSince(first.Version, model.PortKind.Name) || s.ChangedSince(first.Version, model.RouterKind.Name, RouterPorts, UplinkPorts) {
		t.Fatal("ChangedSince does not name exactly the port")
	}
	if _, ok := s.Topo.PortIndex(bpID); !ok {
		t.Fatal("the topology lacks the new port")
	}
	if _, ok := first.Get(model.PortKind, bpID); ok {
		t.Fatal("the earlier snapshot changed: it has the new port")
	}
	// A port on a bridge that does not exist does not build: nothing is
	// published until a change makes the model whole again.
	stray := &model.Port{Meta: model.Meta{ID: rpID}, BridgeID: "nowhere", State: model.StateUp, TunnelKey: 6}
	if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{put(stray)}}); err != nil {
		t.Fatal(err)
	}
	if m.Current() != s {
		t.Fatal("a topology that does not build was published")
	}
	n := len(published)
	if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Delete, Kind: model.PortKind, ID: rpID}}}); err != nil {
		t.Fatal(err)
	}
	s2 := m.Current()
	if len(published) != n+1 || s2.Version != s.Version+1 || len(s2.Changes) != 2 {
		t.Fatalf("after the repair: %d published (want %d), version %d, changes %v", len(published), n+1, s2.Version, s2.Changes)
	}
	ids := []string{s2.Changes[0].ID, s2.Changes[1].ID}
	if !slices.Equal(ids, []string{rpID, rpID}) {
		t.Fatalf("the held-back change is not published with the repair: %v", ids)
	}
	if _, ok := s2.Topo.PortIndex(bpID); !ok {
		t.Fatal("the repaired topology lost the VM's port")
	}
	if got := len(s2.Objects()); got != 2 {
		t.Fatalf("%d objects, want the bridge and its port", got)
	}
}
