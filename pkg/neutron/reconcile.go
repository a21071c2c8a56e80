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
	var chains []*model.Chain
	for _, it := range items {
		if c, ok := it.o.(*model.Chain); ok {
			chains = append(chains, c)
		}
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
	// Rules created into a chain were appended in creation order; the
	// translation's order (and the removal of old rules) is the chain's
	// RuleIDs as translated.
	for _, c := range chains {
		o, err := tx.Get(model.ChainKind, c.ID)
		if err != nil {
			return nil, err
		}
		cur := o.(*model.Chain)
		if !slices.Equal(cur.RuleIDs, c.RuleIDs) {
			cur.RuleIDs = slices.Clone(c.RuleIDs)
			if err := tx.Put(cur); err != nil {
				return nil, err
			}
		}
	}
	return owned, nil
}

// create writes a new native object. A port linked to a peer that this
// reconcile creates later is created unlinked: creating the peer links
// both (model.PrepareCreate keeps links symmetric). A chain is created
// empty and its rules join it as they are created. An address-group entry
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
	case *model.Chain:
		c := *x
		c.RuleIDs = nil
		o = &c
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
// the server assigned when it was created (a port's tunnel key).
func rewrite(tx *nsdb.Tx, cur, o model.Object) error {
	switch x := o.(type) {
	case *model.Port:
		c := *x
		c.TunnelKey = cur.(*model.Port).TunnelKey
		if c.MAC.IsZero() {
			c.MAC = cur.(*model.Port).MAC
		}
		o = &c
	case *model.Chain:
		// Its rules are put in order once they exist (see reconcile).
		c := *x
		c.RuleIDs = cur.(*model.Chain).RuleIDs
		o = &c
	}
	return tx.Put(o)
}

// removalOrder deletes referrers before what they reference where the
// reference restricts deletion: entries and rules before ports and
// chains, ports before devices, devices before the chains they filter
// with.
var removalOrder = []string{"dhcp-host", "route", "rule", "ip-address-group-address", "port-group-member", "port",
	"dhcp-subnet", "router", "bridge", "chain", "ip-address-group", "port-group"}

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

// apply reconciles a Neutron object's translation and records it.
func apply(tx *nsdb.Tx, s *Std, want []model.Object) error {
	owned, err := reconcile(tx, s.Owned, want)
	if err != nil {
		return err
	}
	s.Owned = owned
	return nil
}
