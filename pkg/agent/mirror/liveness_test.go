package mirror

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// TestLivenessIncremental: hosts dying and coming back, and their
// tunnel-zone memberships created, moved and deleted meanwhile, are
// applied to the simulator's topology incrementally (simChanges); after
// every step a frame from this host's VM goes exactly where it goes in a
// topology built whole from the same snapshot.
func TestLivenessIncremental(t *testing.T) {
	const others = 6
	self := "h0"
	var objs []model.Object
	objs = append(objs, &model.TunnelZone{Meta: model.Meta{ID: "tz"}, Type: model.TunnelVXLAN},
		&model.TunnelZone{Meta: model.Meta{ID: "tz2"}, Type: model.TunnelGRE},
		&model.Bridge{Meta: model.Meta{ID: "br"}, State: model.StateUp})
	for h := range others + 1 {
		id := fmt.Sprintf("h%d", h)
		objs = append(objs, &model.Host{Meta: model.Meta{ID: id}},
			&model.TunnelZoneMember{Meta: model.Meta{ID: "m" + id}, TunnelZoneID: "tz", HostID: id,
				Address: netip.AddrFrom4([4]byte{10, 99, 0, byte(h + 1)})},
			&model.Port{Meta: model.Meta{ID: "vm" + id}, BridgeID: "br", State: model.StateUp, HostID: id,
				InterfaceName: "tap" + id, TunnelKey: uint32(h + 1), MAC: packet.MAC{2, 0, 0, 0, 0, byte(h + 1)}})
	}
	m := New(Config{HostID: self, Flows: memory.New(datapath.Config{}, memory.NewHost(nil))})
	if err := m.Apply(nsdb.Batch{Reset: true, Objects: objs, Rev: 1}); err != nil {
		t.Fatal(err)
	}
	alive := map[string]bool{}
	for h := range others + 1 {
		alive[fmt.Sprintf("h%d", h)] = true
	}
	if err := m.ApplyLiveness(nsdb.Liveness{Reset: true, Alive: alive}); err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{
		// ARP who-has from the VM: broadcast, flooded to every reachable host.
		append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
			0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1}, make([]byte, 10)...),
	}
	for h := 1; h <= others; h++ { // unicast to each peer's VM
		frames = append(frames, append([]byte{2, 0, 0, 0, 0, byte(h + 1), 2, 0, 0, 0, 0, 1, 0x88, 0xb5}, make([]byte, 46)...))
	}
	r := rand.New(rand.NewPCG(1, 2))
	flips := 0
	for step := range 400 {
		host := fmt.Sprintf("h%d", 1+r.IntN(others))
		var what string
		switch r.IntN(4) {
		case 0, 1: // the host dies or comes back
			up := m.Current().Unreachable[host]
			what = fmt.Sprintf("%s alive %v", host, up)
			if err := m.ApplyLiveness(nsdb.Liveness{Alive: map[string]bool{host: up}}); err != nil {
				t.Fatal(err)
			}
			flips++
		case 2: // a membership created, or moved to another host or zone
			zm := &model.TunnelZoneMember{Meta: model.Meta{ID: fmt.Sprintf("x%d", r.IntN(4))},
				TunnelZoneID: []string{"tz", "tz2"}[r.IntN(2)], HostID: host,
				Address: netip.AddrFrom4([4]byte{10, 99, 1, byte(step)})}
			prev, _ := m.Current().Get(model.TunnelZoneMemberKind, zm.ID)
			what = fmt.Sprintf("put %+v", *zm)
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Put, Kind: model.TunnelZoneMemberKind,
				ID: zm.ID, Object: zm, Prev: prev}}, Rev: int64(step + 2)}); err != nil {
				t.Fatal(err)
			}
		case 3: // a membership deleted
			id := fmt.Sprintf("x%d", r.IntN(4))
			prev, ok := m.Current().Get(model.TunnelZoneMemberKind, id)
			if !ok {
				continue
			}
			what = "delete " + id
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Delete, Kind: model.TunnelZoneMemberKind,
				ID: id, Prev: prev}}, Rev: int64(step + 2)}); err != nil {
				t.Fatal(err)
			}
		}
		s := m.Current()
		full, err := sim.BuildFrom(reachable{s.objs, s.Unreachable})
		if err != nil {
			t.Fatalf("step %d (%s): full build: %v", step, what, err)
		}
		inc, whole := sim.NewSimulator(s.Topo, sim.Config{HostID: self}), sim.NewSimulator(full, sim.Config{HostID: self})
		for fi, f := range frames {
			var p packet.Parsed
			ri, rf := sim.NewResult(), sim.NewResult()
			p.Decode(f)
			inc.Simulate(&sim.Input{InPortID: "vmh0", Pkt: &p}, ri)
			p.Decode(f)
			whole.Simulate(&sim.Input{InPortID: "vmh0", Pkt: &p}, rf)
			if a, b := outcome(ri), outcome(rf); a != b {
				t.Fatalf("step %d (%s), frame %d: incremental topology %s, whole %s (unreachable %v)", step, what, fi, a, b, s.Unreachable)
			}
		}
	}
	for _, o := range objs { // the watch's objects are shared (nsdb.ShareDecoded): never changed
		if h, ok := o.(*model.Host); ok && h.Alive {
			t.Fatalf("the mirror changed the watch's host %s", h.ID)
		}
	}
	if flips < 100 {
		t.Fatalf("only %d liveness changes", flips)
	}
}

// outcome is what a walk decided, its tags sorted.
func outcome(r *sim.Result) string {
	tags := slices.Clone(r.Tags())
	slices.Sort(tags)
	return fmt.Sprintf("%v %v %v tags %v", r.Verdict, r.Reason, r.Actions(), tags)
}

// TestMemberIndexEqualsScan: the host → memberships index that liveness
// changes read equals a full scan of the mirrored memberships after every
// step of random creates, moves, deletes, resets and liveness flips, and a
// host's liveness change reports exactly the memberships the scan finds.
func TestMemberIndexEqualsScan(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { testMemberIndex(t, seed) })
	}
}

func testMemberIndex(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	hosts := []string{"h0", "h1", "h2", "h3", "h4", "h5"}
	m := New(Config{HostID: "h0", Flows: memory.New(datapath.Config{}, memory.NewHost(nil))})
	base := []model.Object{&model.TunnelZone{Meta: model.Meta{ID: "tz"}, Type: model.TunnelVXLAN}}
	for _, h := range hosts {
		base = append(base, &model.Host{Meta: model.Meta{ID: h}})
	}
	if err := m.Apply(nsdb.Batch{Reset: true, Objects: base, Rev: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyLiveness(nsdb.Liveness{Reset: true, Alive: map[string]bool{"h0": true}}); err != nil {
		t.Fatal(err)
	}
	scan := func(host string) []string {
		var ids []string
		m.Current().Each(model.TunnelZoneMemberKind, func(o model.Object) bool {
			if zm := o.(*model.TunnelZoneMember); zm.HostID == host {
				ids = append(ids, zm.ID)
			}
			return true
		})
		slices.Sort(ids)
		return ids
	}
	member := func(step int) *model.TunnelZoneMember {
		return &model.TunnelZoneMember{Meta: model.Meta{ID: fmt.Sprintf("m%d", r.IntN(10))}, TunnelZoneID: "tz",
			HostID: hosts[r.IntN(len(hosts))], Address: netip.AddrFrom4([4]byte{10, 99, byte(step >> 8), byte(step)})}
	}
	flips := 0
	for step := range 400 {
		var what string
		switch k := r.IntN(10); {
		case k < 4: // a membership created or moved to another host
			zm := member(step)
			what = fmt.Sprintf("put %s on %s", zm.ID, zm.HostID)
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Put, Kind: model.TunnelZoneMemberKind, ID: zm.ID, Object: zm}},
				Rev: int64(step + 2)}); err != nil {
				t.Fatal(err)
			}
		case k < 6: // a membership deleted
			id := fmt.Sprintf("m%d", r.IntN(10))
			what = "delete " + id
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Delete, Kind: model.TunnelZoneMemberKind, ID: id}},
				Rev: int64(step + 2)}); err != nil {
				t.Fatal(err)
			}
		case k < 9: // a host dies or comes back: its memberships, exactly, change
			h := hosts[1+r.IntN(len(hosts)-1)]
			up := m.Current().Unreachable[h]
			what = fmt.Sprintf("%s alive %v", h, up)
			v := m.Current().Version
			if err := m.ApplyLiveness(nsdb.Liveness{Alive: map[string]bool{h: up}}); err != nil {
				t.Fatal(err)
			}
			s := m.Current()
			if s.Version != v+1 {
				t.Fatalf("step %d (%s): no snapshot published", step, what)
			}
			var got []string
			for _, ev := range s.Changes {
				if ev.Kind == model.TunnelZoneMemberKind {
					got = append(got, ev.ID)
				}
			}
			slices.Sort(got)
			if want := scan(h); !slices.Equal(got, want) {
				t.Fatalf("step %d (%s): memberships reported %v, a full scan finds %v", step, what, got, want)
			}
			flips++
		default: // a relist: everything replaced
			objs := slices.Clone(base)
			for range r.IntN(6) {
				objs = append(objs, member(step))
			}
			what = "reset"
			if err := m.Apply(nsdb.Batch{Reset: true, Objects: dedupe(objs), Rev: int64(step + 2)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range hosts {
			var idx []string
			for _, zm := range m.members.of(m.objs, h) {
				idx = append(idx, zm.ID)
			}
			if want := scan(h); !slices.Equal(idx, want) {
				t.Fatalf("step %d (%s): index of %s holds %v, a full scan finds %v", step, what, h, idx, want)
			}
		}
	}
	if flips < 50 {
		t.Fatalf("only %d liveness changes", flips)
	}
}

// dedupe keeps the last object of each kind and id.
func dedupe(objs []model.Object) []model.Object {
	last := map[string]int{}
	for i, o := range objs {
		last[model.KindOf(o).Name+"/"+o.GetMeta().ID] = i
	}
	var out []model.Object
	for i, o := range objs {
		if last[model.KindOf(o).Name+"/"+o.GetMeta().ID] == i {
			out = append(out, o)
		}
	}
	return out
}

// BenchmarkLivenessFlip: one host of a thousand dying or coming back (its
// memberships found through the index, not a scan of every host's).
func BenchmarkLivenessFlip(b *testing.B) {
	const hosts = 1000
	objs := []model.Object{&model.TunnelZone{Meta: model.Meta{ID: "tz"}, Type: model.TunnelVXLAN}}
	alive := map[string]bool{}
	for h := range hosts {
		id := fmt.Sprintf("h%d", h)
		alive[id] = true
		objs = append(objs, &model.Host{Meta: model.Meta{ID: id}}, &model.TunnelZoneMember{Meta: model.Meta{ID: "m" + id},
			TunnelZoneID: "tz", HostID: id, Address: netip.AddrFrom4([4]byte{10, 99, byte(h >> 8), byte(h)})})
	}
	m := New(Config{HostID: "h0", Flows: memory.New(datapath.Config{}, memory.NewHost(nil))})
	if err := m.Apply(nsdb.Batch{Reset: true, Objects: objs, Rev: 1}); err != nil {
		b.Fatal(err)
	}
	if err := m.ApplyLiveness(nsdb.Liveness{Reset: true, Alive: alive}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := m.ApplyLiveness(nsdb.Liveness{Alive: map[string]bool{"h7": i%2 == 1}}); err != nil {
			b.Fatal(err)
		}
	}
}
