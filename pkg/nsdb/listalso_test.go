package nsdb

import (
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// ListAlso hands also the listed objects' ids (in any order) and reads what it names
// with them, so the caller's Gets of those need no round trip; the
// objects listed are List's.
func TestListAlso(t *testing.T) {
	f := newFixture(t)
	b := f.bridge("b")
	p1, p2 := f.bridgePort(b.ID), f.bridgePort(b.ID)
	f.bridgePort(f.bridge("other").ID)
	c := f.chain("c")
	for _, field := range []string{"bridge_id", ""} { // the reverse index, and a scan
		_, err := f.s.Update(f.ctx, func(tx *Tx) error {
			var got []string
			objs, err := tx.ListAlso(model.PortKind, field, b.ID, func(ids []string) []ObjectID {
				got = slices.Clone(ids)
				return []ObjectID{{Kind: model.ChainKind, ID: c.ID}, {Kind: model.BridgeKind, ID: b.ID}}
			})
			if err != nil {
				return err
			}
			want := []string{p1.ID, p2.ID}
			if field == "" {
				want = nil
				for _, o := range objs {
					want = append(want, o.GetMeta().ID)
				}
				if len(objs) != 3 {
					t.Errorf("ListAlso of every port: %d ports, want 3", len(objs))
				}
			} else if len(objs) != 2 || objs[0].GetMeta().ID != p1.ID || objs[1].GetMeta().ID != p2.ID {
				t.Errorf("ListAlso(bridge_id): %d objects, want ports %s and %s in creation order", len(objs), p1.ID, p2.ID)
			}
			// The index hands ids in key order, not creation order.
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("field %q: also got ids %v, want %v", field, got, want)
			}
			for _, key := range []string{objKey(model.ChainKind, c.ID), objKey(model.BridgeKind, b.ID)} {
				if r := tx.reads[key]; r == nil || r.modRev == 0 {
					t.Errorf("field %q: %s was not read with the list", field, key)
				}
			}
			o, err := tx.Get(model.ChainKind, c.ID)
			if err != nil || o.(*model.Chain).Name != "c" {
				t.Errorf("field %q: get of the prefetched chain: %v, %v", field, o, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
