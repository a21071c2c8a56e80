package ports

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// discardFlows is a fake flow table: this test looks at snapshots only.
type discardFlows struct{}

func (discardFlows) Flush() int               { return 0 }
func (discardFlows) Invalidate(...uint64) int { return 0 }

// TestPeerSetFollowsChanges: the peers followed membership by membership
// through random registrations, moves, deletions, deaths and returns (of
// other hosts and this one), hosts deleted and created, and zone changes
// equal a full scan of every
// snapshot.
func TestPeerSetFollowsChanges(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { testPeerSetFollows(t, seed) })
	}
}

func testPeerSetFollows(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 0))
	m := mirror.New(mirror.Config{HostID: host, Flows: discardFlows{}, Log: quiet})
	hosts := []string{host}
	for i := range 12 {
		hosts = append(hosts, fmt.Sprintf("h%02d", i))
	}
	zoneTypes := []model.TunnelType{model.TunnelVXLAN, model.TunnelGRE}
	var objs []model.Object
	for _, h := range hosts {
		objs = append(objs, &model.Host{Meta: model.Meta{ID: h}})
	}
	for i := range 3 {
		objs = append(objs, &model.TunnelZone{Meta: model.Meta{ID: fmt.Sprintf("z%d", i)}, Type: zoneTypes[i%2]})
	}
	objs = append(objs, &model.TunnelZoneMember{Meta: model.Meta{ID: "mine"}, TunnelZoneID: "z0", HostID: host,
		Address: netip.MustParseAddr("10.0.0.1")})
	if err := m.Apply(nsdb.Batch{Reset: true, Objects: objs}); err != nil {
		t.Fatal(err)
	}
	alive := map[string]bool{}
	for _, h := range hosts {
		alive[h] = true
	}
	if err := m.ApplyLiveness(nsdb.Liveness{Reset: true, Alive: alive}); err != nil {
		t.Fatal(err)
	}
	members, gone := map[string]string{"mine": host}, map[string]bool{} // membership → host; hosts deleted
	var ps *peerSet
	var version uint64
	incremental, consecutive := 0, 0
	for step := range 400 {
		var what string
		switch r := rnd.IntN(22); {
		case r < 10: // a membership created or moved
			id := fmt.Sprintf("m%d", rnd.IntN(30))
			h := hosts[rnd.IntN(len(hosts))]
			if rnd.IntN(10) != 0 && h == host {
				h = hosts[1+rnd.IntN(len(hosts)-1)] // this host's own, now and then
			}
			x := &model.TunnelZoneMember{Meta: model.Meta{ID: id}, TunnelZoneID: fmt.Sprintf("z%d", rnd.IntN(3)), HostID: h,
				Address: netip.AddrFrom4([4]byte{10, 0, 1, byte(rnd.IntN(8))})} // shared addresses too
			if gone[h] {
				continue
			}
			what = fmt.Sprintf("put %s %s %s %s", id, h, x.TunnelZoneID, x.Address)
			members[id] = h
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Put, Kind: model.TunnelZoneMemberKind, ID: id, Object: x}}}); err != nil {
				t.Fatal(err)
			}
		case r < 14: // a membership deleted
			id := fmt.Sprintf("m%d", rnd.IntN(30))
			if _, ok := members[id]; !ok {
				continue
			}
			delete(members, id)
			what = "delete " + id
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Delete, Kind: model.TunnelZoneMemberKind, ID: id}}}); err != nil {
				t.Fatal(err)
			}
		case r < 19: // a host dies or returns
			h := hosts[1+rnd.IntN(len(hosts)-1)]
			alive[h] = !alive[h]
			what = fmt.Sprintf("%s alive %v", h, alive[h])
			if err := m.ApplyLiveness(nsdb.Liveness{Alive: map[string]bool{h: alive[h]}}); err != nil {
				t.Fatal(err)
			}
		case r < 20: // a host without memberships deleted, or created again
			h := hosts[1+rnd.IntN(len(hosts)-1)]
			if !gone[h] && slices.Contains(slices.Collect(maps.Values(members)), h) {
				continue
			}
			gone[h] = !gone[h]
			ev := nsdb.Event{Type: nsdb.Put, Kind: model.HostKind, ID: h, Object: &model.Host{Meta: model.Meta{ID: h}}}
			if gone[h] {
				ev = nsdb.Event{Type: nsdb.Delete, Kind: model.HostKind, ID: h}
			}
			what = fmt.Sprintf("%s deleted %v", h, gone[h])
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{ev}}); err != nil {
				t.Fatal(err)
			}
		default: // a zone's type changes
			id := fmt.Sprintf("z%d", rnd.IntN(3))
			z := &model.TunnelZone{Meta: model.Meta{ID: id}, Type: zoneTypes[rnd.IntN(2)]}
			what = "zone " + id + " " + string(z.Type)
			if err := m.Apply(nsdb.Batch{Events: []nsdb.Event{{Type: nsdb.Put, Kind: model.TunnelZoneKind, ID: id, Object: z}}}); err != nil {
				t.Fatal(err)
			}
		}
		s := m.Current()
		if ps != nil && s.Version == version+1 {
			consecutive++
		}
		switch {
		case ps == nil || s.Version != version+1:
			ps = newPeerSet(s, host, netip.Addr{}, 4789)
		case ps.apply(s):
			incremental++
		default:
			ps = newPeerSet(s, host, netip.Addr{}, 4789)
		}
		version = s.Version
		got, want := ps.config(), TunnelConfig(s, host, netip.Addr{}, 4789)
		if !tunnelConfigEqual(got, want) {
			t.Fatalf("step %d (%s): followed %+v, a full scan %+v", step, what, got, want)
		}
	}
	if incremental < consecutive/2 || consecutive < 200 {
		t.Fatalf("only %d of %d snapshots (of 400 changes) were followed incrementally", incremental, consecutive)
	}
}
