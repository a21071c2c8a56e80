package neutron

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// createWith creates a new Neutron object with its translation.
func createWith[T Object](tx *nsdb.Tx, o T, native []model.Object) (T, error) {
	if err := apply(tx, o.std(), native); err != nil {
		return o, err
	}
	c, err := tx.Create(o)
	if err != nil {
		return o, err
	}
	return c.(T), nil
}

// listOf lists the objects of T's kind whose field names value.
func listOf[T model.Object](tx *nsdb.Tx, field, value string) ([]T, error) {
	var zero T
	objs, err := tx.List(model.KindOf(zero), field, value)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out, nil
}

// reconcile makes the native objects a Neutron object owns match its new
// translation, inside the caller's transaction: objects no longer wanted
// are deleted, new ones created under the model's write rules (tunnel
// keys, peer links, rule order), and changed ones rewritten; objects whose
// translated form is unchanged since the last reconcile (same hash) are
// not even read. It returns the new owned map for the Neutron object.
func reconcile(tx *nsdb.Tx, old map[string]string, want []model.Object) (map[string]string, error) {
	type item struct {
		key, hash string
		o         model.Object
	}
	items := make([]item, 0, len(want))
	wanted := make(map[string]bool, len(want))
	for _, o := range want {
		model.ApplyDefaults(o)
		if err := model.Validate(o); err != nil {
			return nil, fmt.Errorf("neutron: translated %s %s is invalid: %w", model.KindOf(o).Name, o.GetMeta().ID, err)
		}
		k := ownedKey(o)
		items = append(items, item{k, hashOf(o), o})
		wanted[k] = true
	}
	// Entries, rules and ports go first (they reference the rest); the
	// chains, groups and devices they referenced go after the rewrites,
	// which may drop references to them (a port losing its filters).
	if err := removeOwned(tx, old, wanted, true); err != nil {
		return nil, err
	}
	created := map[string]bool{}
	owned := make(map[string]string, len(items))
	for _, it := range items {
		if h, ok := old[it.key]; ok && h == it.hash {
			owned[it.key] = it.hash
			continue
		}
		k := model.KindOf(it.o)
		id := it.o.GetMeta().ID
		var cur model.Object
		if _, ok := old[it.key]; ok {
			o, err := tx.Get(k, id)
			if err != nil && !errors.Is(err, model.ErrNotFound) {
				return nil, err
			}
			cur = o
		}
		if cur != nil {
			if err := rewrite(tx, cur, it.o); err != nil {
				return nil, err
			}
		} else {
			skip, err := create(tx, it.o, wanted, created)
			if err != nil {
				return nil, err
			}
			if skip {
				continue
			}
		}
		created[it.key] = true
		owned[it.key] = it.hash
	}
	if err := removeOwned(tx, old, wanted, false); err != nil {
		return nil, err
	}
	return owned, nil
}

// create writes a new native object. A port linked to a peer that this
// reconcile creates later is created unlinked: creating the peer links
// both (model.PrepareCreate keeps links symmetric). A chain is written
// whole, listing the rules created after it (references are checked when
// the transaction commits, and a rule its chain lists keeps its place).
// An address-group entry
// for an address another port already put in the group is skipped (the
// group is a set).
func create(tx *nsdb.Tx, o model.Object, wanted, created map[string]bool) (skip bool, err error) {
	switch x := o.(type) {
	case *model.Port:
		if x.PeerID != "" {
			key := "port/" + x.PeerID
			if wanted[key] && !created[key] {
				c := *x
				c.PeerID = ""
				o = &c
			}
		}
	case *model.IPAddrGroupAddr:
		f := model.IPAddrGroupAddrKind.Field("address")
		owner, err := tx.UniqueOwner(model.IPAddrGroupAddrKind, f, x.IPAddrGroupID, x.Address.String())
		if err != nil {
			return false, err
		}
		if owner != "" && owner != x.ID {
			return true, nil
		}
	}
	_, err = tx.Create(o)
	return false, err
}

// rewrite replaces a native object by its new translation, keeping what
// the server assigned when it was created (a port's tunnel key) and what
// an agent wrote (the binding of a physical-network uplink, while it stays
// on the same physical network and VLAN).
func rewrite(tx *nsdb.Tx, cur, o model.Object) error {
	switch x := o.(type) {
	case *model.Port:
		c, cp := *x, cur.(*model.Port)
		c.TunnelKey = cp.TunnelKey
		if c.MAC.IsZero() {
			c.MAC = cp.MAC
		}
		if c.PhysicalNetwork != "" && c.HostID == "" && cp.PhysicalNetwork == c.PhysicalNetwork && cp.PhysicalVLAN == c.PhysicalVLAN {
			c.HostID, c.InterfaceName = cp.HostID, cp.InterfaceName
		}
		o = &c
	}
	return tx.Put(o)
}

// removalOrder deletes referrers before what they reference where the
// reference restricts deletion: entries and rules before ports and
// chains, ports before devices, devices before the chains they filter
// with.
var removalOrder = []string{"dhcp-host", "route", "rule", "ip-address-group-address", "port-group-member", "port",
	"dhcp-subnet", "router", "bridge", "chain", "ip-address-group", "port-group", "qos-policy"}

// early are the kinds removeOwned removes before the rewrites.
var early = map[string]bool{"dhcp-host": true, "route": true, "rule": true, "ip-address-group-address": true, "port-group-member": true, "port": true}

func removeOwned(tx *nsdb.Tx, old map[string]string, keep map[string]bool, first bool) error {
	var doomed []string
	for k := range old {
		kind, _, _ := strings.Cut(k, "/")
		if !keep[k] && early[kind] == first {
			doomed = append(doomed, k)
		}
	}
	rank := func(k string) int {
		kind, _, _ := strings.Cut(k, "/")
		if i := slices.Index(removalOrder, kind); i >= 0 {
			return i
		}
		return len(removalOrder)
	}
	slices.SortFunc(doomed, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, key := range doomed {
		name, id, _ := strings.Cut(key, "/")
		k := model.KindByName(name)
		if k == nil {
			continue
		}
		// Cascades may have removed it already (a port's routes).
		if err := tx.Delete(k, id); err != nil && !errors.Is(err, model.ErrNotFound) {
			return fmt.Errorf("neutron: remove %s: %w", key, err)
		}
	}
	return nil
}

func ownedKey(o model.Object) string { return model.KindOf(o).Name + "/" + o.GetMeta().ID }

func hashOf(o model.Object) string {
	b, _ := json.Marshal(o)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// apply reconciles a Neutron object's translation and records it in the
// object's Translation. An object not stored yet (Revision 0: created in
// this transaction) has none to read.
func apply(tx *nsdb.Tx, s *Std, want []model.Object) error {
	id := DerivedID("translation", s.ID)
	existed := false
	if !s.ownedLoaded && s.Revision != 0 {
		o, err := tx.Get(TranslationKind, id)
		switch {
		case err == nil:
			s.owned, existed = o.(*Translation).Owned, true
		case !errors.Is(err, model.ErrNotFound):
			return err
		}
	} else if s.ownedLoaded {
		existed = s.owned != nil
	}
	owned, err := reconcile(tx, s.owned, want)
	if err != nil {
		return err
	}
	switch {
	case len(owned) == 0 && existed:
		err = tx.Delete(TranslationKind, id)
		owned = nil
	case len(owned) == 0:
		owned = nil
	case existed:
		err = tx.Put(&Translation{Meta: model.Meta{ID: id}, Owned: owned})
	default:
		_, err = tx.Create(&Translation{Meta: model.Meta{ID: id}, Owned: owned})
	}
	s.owned, s.ownedLoaded = owned, true
	return err
}
