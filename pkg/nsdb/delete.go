package nsdb

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Deleting with references: the on-delete policies (restrict, cascade,
// nullify) over everything a Delete takes with it.

// doomed is an object a Delete removes.
type doomed struct {
	k  *model.Kind
	id string
	o  model.Object
}

// referrer is a reference found in the reverse index.
type referrer struct {
	target int // index of the referenced object in the doomed list
	k      *model.Kind
	id     string
	f      *model.Field
}

// Delete removes an object and applies every reference's on-delete policy:
// restrict refuses (a *model.ConflictError naming a referrer), cascade
// deletes the referrer too (recursively, each object once), nullify clears
// the reference in the referrer. Restrict is judged on the whole set being
// deleted, so a reference from an object that is itself cascaded away does
// not block. A missing object is an error wrapping model.ErrNotFound.
func (tx *Tx) Delete(k *model.Kind, id string) error {
	if err := tx.writable(); err != nil {
		return err
	}
	o, err := tx.Get(k, id)
	if err != nil {
		return err
	}
	set := []doomed{{k, id, o}}
	in := map[string]bool{objKey(k, id): true}
	var restricts, nullifies []referrer
	for i := 0; i < len(set); i++ {
		refs, err := tx.referrers(i, set[i])
		if err != nil {
			return err
		}
		for _, r := range refs {
			switch r.f.OnDelete {
			case model.Restrict:
				restricts = append(restricts, r)
			case model.Nullify:
				nullifies = append(nullifies, r)
			case model.Cascade:
				key := objKey(r.k, r.id)
				if in[key] {
					continue
				}
				ro, err := tx.Get(r.k, r.id)
				if err != nil {
					return fmt.Errorf("nsdb: %s %s is in the reference index of %s %s but cannot be read: %w", r.k.Name, r.id, set[i].k.Name, set[i].id, err)
				}
				in[key] = true
				set = append(set, doomed{r.k, r.id, ro})
			}
		}
	}
	if err := restrictError(set, restricts, in); err != nil {
		return err
	}
	for _, d := range set {
		tx.remove(d)
	}
	return tx.nullify(set, nullifies, in)
}

// referrers reads the reverse index of one doomed object.
func (tx *Tx) referrers(i int, d doomed) ([]referrer, error) {
	es, err := tx.scan(refTargetPrefix(d.id), true)
	if err != nil {
		return nil, err
	}
	var out []referrer
	var keys []string
	for _, e := range es {
		src, srcID, field, ok := parseRefKey(e.key, d.id)
		if !ok {
			continue
		}
		f := src.Field(field)
		if f == nil || f.Ref != d.k.Name {
			continue // a reference to another kind's object with the same id
		}
		out = append(out, referrer{i, src, srcID, f})
		if f.OnDelete != model.Restrict {
			keys = append(keys, objKey(src, srcID))
		}
	}
	return out, tx.prefetch(keys)
}

// restrictError explains the first object whose restricting referrers
// survive the delete, counting them per kind with one example each.
func restrictError(set []doomed, restricts []referrer, in map[string]bool) error {
	type group struct {
		k       *model.Kind
		ids     map[string]bool
		example referrer
	}
	target := -1
	var groups []*group
	for _, r := range restricts {
		if in[objKey(r.k, r.id)] || (target >= 0 && r.target != target) {
			continue
		}
		target = r.target
		var g *group
		for _, x := range groups {
			if x.k == r.k {
				g = x
			}
		}
		if g == nil {
			g = &group{k: r.k, ids: map[string]bool{}, example: r}
			groups = append(groups, g)
		}
		g.ids[r.id] = true
	}
	if target < 0 {
		return nil
	}
	parts := make([]string, len(groups))
	children := true
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%d %s(s) (e.g. %s %s via %s)", len(g.ids), g.k.Name, g.k.Name, g.example.id, g.example.f.JSON)
		children = children && g.example.f.Parent
	}
	advice := "delete them first"
	if !children {
		advice = "delete them or clear those references first"
	}
	t := set[target]
	msg := fmt.Sprintf("%s %s still has %s; %s", t.k.Name, t.id, strings.Join(parts, " and "), advice)
	if target != 0 {
		msg = fmt.Sprintf("%s %s cannot be deleted: it would delete %s", set[0].k.Name, set[0].id, msg)
	}
	return &model.ConflictError{Msg: msg}
}

// remove deletes a doomed object with its outgoing references and unique
// keys (which it owns: Put checked that).
func (tx *Tx) remove(d doomed) {
	tx.del(objKey(d.k, d.id))
	for _, f := range d.k.Refs() {
		for _, t := range f.RefIDs(d.o) {
			tx.del(refKey(t, d.k, d.id, f.JSON))
		}
	}
	for _, f := range d.k.Uniques() {
		if key := uniqKeyOf(d.k, f, d.o); key != "" {
			tx.del(key)
		}
	}
}

// nullify clears, in every surviving referrer, all its references to
// deleted objects at once, then writes it once: clearing them one by one
// would make Put check a reference to an object already gone.
func (tx *Tx) nullify(set []doomed, refs []referrer, in map[string]bool) error {
	var order []string
	byObj := map[string][]referrer{}
	for _, r := range refs {
		key := objKey(r.k, r.id)
		if in[key] {
			continue
		}
		if byObj[key] == nil {
			order = append(order, key)
		}
		byObj[key] = append(byObj[key], r)
	}
	sort.Strings(order)
	for _, key := range order {
		rs := byObj[key]
		o, err := tx.Get(rs[0].k, rs[0].id)
		if err != nil {
			return fmt.Errorf("nsdb: %s %s is in the reference index but cannot be read: %w", rs[0].k.Name, rs[0].id, err)
		}
		for _, r := range rs {
			clearRef(r.k, r.f, o, set[r.target].id)
		}
		if err := tx.Put(o); err != nil {
			return fmt.Errorf("nsdb: clear references in %s %s: %w", rs[0].k.Name, rs[0].id, err)
		}
	}
	return nil
}

// clearRef removes id from field f of o. A value unique within the scope of
// f (a binding's interface name within its host) means nothing once f is
// cleared, so it is cleared too; otherwise it would collide with the same
// name unbound from another host.
func clearRef(k *model.Kind, f *model.Field, o model.Object, id string) {
	v := f.Value(o)
	if !f.IsList() {
		v.SetString("")
		for _, g := range k.Uniques() {
			if g.Scope == f.JSON {
				gv := g.Value(o)
				gv.Set(reflect.Zero(gv.Type()))
			}
		}
		return
	}
	ids := v.Interface().([]string)
	kept := make([]string, 0, len(ids))
	for _, x := range ids {
		if x != id {
			kept = append(kept, x)
		}
	}
	if len(kept) == 0 {
		kept = nil // stored as absent, like a list never set
	}
	v.Set(reflect.ValueOf(kept))
}
