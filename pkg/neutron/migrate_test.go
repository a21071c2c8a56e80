package neutron

import (
	"errors"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// TestLegacyPortFilters: ports an older server translated (chains of
// their own, the common chains, an address object per address and group)
// keep working beside new ones — the simulation builds the mixed topology
// — and leave the old shape when updated, when deleted (with everything
// they owned), or when MigratePortFilters runs, which also drops the
// common chains; a second run finds nothing to do. What remains is what a
// new server writes for the same ports.
func TestLegacyPortFilters(t *testing.T) {
	f := newFixture(t)
	ctx, a := f.ctx, f.admin
	net := must(f.s.CreateNetwork(ctx, a, NetworkRequest{StdRequest: named("n1")}))
	must(f.s.CreateSubnet(ctx, a, subnetReq(net.ID, "10.0.0.0/24")))
	must(f.s.CreateSubnet(ctx, a, subnetReq(net.ID, "fd00::/64")))

	// An older server: the common chains once, the old translation.
	_, err := f.store.Update(ctx, func(tx *nsdb.Tx) error {
		_, err := reconcile(tx, nil, legacyCommonChains())
		return err
	})
	noErr(t, err)
	f.s.translatePort = legacyTranslatePort
	var old []*Port
	for range 3 {
		old = append(old, must(f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID})))
	}
	legacy := func(id string) bool {
		_, err := f.store.Get(ctx, model.ChainKind, portInChainID(id))
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			t.Fatal(err)
		}
		np := must(f.store.Get(ctx, model.PortKind, id)).(*model.Port)
		if (err == nil) != (np.InboundFilterID == portInChainID(id)) || (err == nil) == np.Secured() {
			t.Errorf("port %s is half old, half new: chain found %v, %+v", id, err == nil, np)
		}
		return err == nil
	}
	for _, p := range old {
		if !legacy(p.ID) {
			t.Fatalf("the old translation wrote no chains of port %s", p.ID)
		}
	}
	if got := f.native()["ip-address-group-address"]; got != 6 {
		t.Errorf("old ports' address objects: %d, want 6 (two addresses each, one group)", got)
	}

	// This server, beside them: a new port in the same group.
	f.s.translatePort = TranslatePort
	fresh := must(f.s.CreatePort(ctx, a, PortRequest{NetworkID: net.ID}))
	if legacy(fresh.ID) {
		t.Errorf("a new port got chains of its own")
	}
	if _, err := sim.Build(f.all()); err != nil {
		t.Fatalf("the simulation refuses old and new ports together: %v", err)
	}

	// An update translates a port again; a delete removes what it owned.
	must(f.s.UpdatePort(ctx, a, old[0].ID, PortRequest{StdRequest: named("renamed")}, 0))
	if legacy(old[0].ID) {
		t.Errorf("an updated port kept its old chains")
	}
	noErr(t, f.s.DeletePort(ctx, a, old[1].ID, 0))
	for _, id := range []string{portInChainID(old[1].ID), portOutChainID(old[1].ID), portEgChainID(old[1].ID)} {
		if _, err := f.store.Get(ctx, model.ChainKind, id); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("chain %s of a deleted old port: %v, want not found", id, err)
		}
	}

	n, err := f.s.MigratePortFilters(ctx)
	noErr(t, err)
	if n != 1 || legacy(old[2].ID) {
		t.Errorf("migration: %d ports migrated, want 1 (the one neither updated nor deleted)", n)
	}
	for _, id := range []string{legacyCommonInChainID, legacyCommonOutChainID} {
		if _, err := f.store.Get(ctx, model.ChainKind, id); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("common chain %s after the migration: %v, want not found", id, err)
		}
	}
	if n, err := f.s.MigratePortFilters(ctx); err != nil || n != 0 {
		t.Errorf("a second migration: %d ports, %v; want 0 and no error", n, err)
	}
	if _, err := sim.Build(f.all()); err != nil {
		t.Fatalf("the simulation refuses the migrated topology: %v", err)
	}

	// Three ports of one group, the old ones migrated: what a new server
	// writes for three ports.
	want := map[string]int{"bridge": 1, "dhcp-subnet": 1, "dhcp-host": 3, "port": 3, "ip-address-group": 1, "chain": 2, "rule": 4}
	if got := f.native(); !sameCounts(got, want) {
		t.Errorf("after the migration: %v, want %v", got, want)
	}
}
