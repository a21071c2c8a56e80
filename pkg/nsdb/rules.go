package nsdb

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
)

// notFoundError says which object is missing; errors.Is(err,
// model.ErrNotFound) holds.
type notFoundError struct{ kind, id string }

func (e *notFoundError) Error() string        { return e.kind + " " + e.id + " does not exist" }
func (e *notFoundError) Is(target error) bool { return target == model.ErrNotFound }

func notFound(k *model.Kind, id string) error { return &notFoundError{k.Name, id} }

// Get returns a copy of an object as the transaction sees it. Its Revision
// is the one stored before the transaction (0 for objects it created).
func (tx *Tx) Get(k *model.Kind, id string) (model.Object, error) {
	if !model.IsUUID(id) {
		return nil, notFound(k, id) // also keeps arbitrary text out of keys
	}
	key := objKey(k, id)
	val, ok, err := tx.get(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound(k, id)
	}
	return tx.decode(k, key, val)
}

// decode decodes key's value val as the transaction sees it: a stored
// one through the process's cache, its own write afresh.
func (tx *Tx) decode(k *model.Kind, key string, val []byte) (model.Object, error) {
	if w := tx.writes[key]; w != nil {
		if w.obj != nil { // Put's own object, as stored
			o := model.Clone(w.obj)
			o.GetMeta().Revision = tx.storedRev(key)
			return o, nil
		}
		return decodeFresh(k, key, val, tx.storedRev(key))
	}
	return decode(k, key, val, tx.storedRev(key))
}

func (tx *Tx) storedRev(key string) int64 {
	if r := tx.reads[key]; r != nil {
		return r.modRev
	}
	return 0
}

// peek returns a key already fetched (by prefetch or scan) as the
// transaction sees it, without turning it into a compare.
func (tx *Tx) peek(key string) (entry, bool) {
	e := entry{key: key}
	r := tx.reads[key]
	if r != nil {
		e.value, e.modRev, e.createRev = r.value, r.modRev, r.createRev
	}
	if w := tx.writes[key]; w != nil {
		if w.del {
			return e, false
		}
		e.value, e.own = w.value, true
		if e.createRev == 0 {
			e.seq = w.seq
		}
		return e, true
	}
	return e, r != nil && r.modRev != 0
}

// List returns the objects of k whose field (JSON name) has the text value
// (for list fields: contains it), in creation order; field "" lists all.
// A reference field is looked up in the reverse index instead of scanning
// the kind, so listing the ports of one bridge costs the same with 10 or
// 10,000 ports elsewhere.
func (tx *Tx) List(k *model.Kind, field, value string) ([]model.Object, error) {
	return tx.ListAlso(k, field, value, nil)
}

// ListAlso is List that also reads, in the round trip that reads the
// listed objects from a reverse-index lookup, the objects also names from
// their ids (what the caller will Get next: objects sharing their ids,
// ones known beforehand), as Prefetch would. also may be nil.
func (tx *Tx) ListAlso(k *model.Kind, field, value string, also func(ids []string) []ObjectID) ([]model.Object, error) {
	var f *model.Field
	if field != "" {
		if f = k.Field(field); f == nil {
			return nil, &model.FieldError{Field: field, Msg: "unknown field for " + k.Name}
		}
	}
	var es []entry
	if f != nil && f.Ref != "" {
		if !model.IsUUID(value) {
			return nil, nil // nothing can reference it
		}
		refs, err := tx.scan(refTargetPrefix(value)+k.Name+"/", true)
		if err != nil {
			return nil, err
		}
		var keys, ids []string
		for _, r := range refs {
			if _, id, fld, ok := parseRefKey(r.key, value); ok && fld == f.JSON {
				keys, ids = append(keys, objKey(k, id)), append(ids, id)
			}
		}
		fetch := keys
		if also != nil {
			fetch = append(slices.Clip(keys), objectKeys(also(ids))...)
		}
		if err := tx.prefetch(fetch); err != nil {
			return nil, err
		}
		// The objects listed must not change under a writer either: each
		// is compared when they are few, else the whole kind (coarser, but
		// within etcd's limit on compares).
		few := len(keys) <= rangeKeyCompares
		if !few && !tx.readOnly {
			tx.ranges[kindPrefix(k)] = true
		}
		for _, key := range keys {
			e, ok := tx.peek(key)
			if !ok {
				continue // the index is written with the object: cannot happen
			}
			if r := tx.reads[key]; r != nil && !tx.readOnly && few {
				r.check = true
			}
			es = append(es, e)
		}
	} else {
		var err error
		if es, err = tx.scan(kindPrefix(k), false); err != nil {
			return nil, err
		}
	}
	byCreation(es)
	objs, err := decodeEntries(k, es)
	if err != nil {
		return nil, err
	}
	out := objs
	if f != nil {
		out = objs[:0]
		for _, o := range objs {
			if matches(f, o, value) {
				out = append(out, o)
			}
		}
	}
	if also != nil && (f == nil || f.Ref == "") {
		// A scan read the objects themselves: what goes with them takes
		// one more round trip.
		ids := make([]string, len(out))
		for i, o := range out {
			ids[i] = o.GetMeta().ID
		}
		if err := tx.Prefetch(also(ids)...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func matches(f *model.Field, o model.Object, value string) bool {
	if !f.IsList() {
		return f.Text(o) == value
	}
	v := f.Value(o)
	for i := range v.Len() {
		e := v.Index(i)
		var s string
		if tm, ok := e.Interface().(encoding.TextMarshaler); ok {
			b, _ := tm.MarshalText()
			s = string(b)
		} else if e.Kind() == reflect.String {
			s = e.String()
		} else {
			s = fmt.Sprint(e.Interface())
		}
		if s == value {
			return true
		}
	}
	return false
}

// ObjectID names an object for Prefetch.
type ObjectID struct {
	Kind *model.Kind
	ID   string
}

// Prefetch reads objects the transaction is about to Get in one round
// trip instead of one each. Like every read it is compared at commit only
// once the object is actually used (Get).
func (tx *Tx) Prefetch(ids ...ObjectID) error {
	return tx.prefetch(objectKeys(ids))
}

// objectKeys are the keys of the objects named (ids that cannot be stored
// left out).
func objectKeys(ids []ObjectID) []string {
	keys := make([]string, 0, len(ids))
	for _, o := range ids {
		if model.IsUUID(o.ID) {
			keys = append(keys, objKey(o.Kind, o.ID))
		}
	}
	return keys
}

// UniqueOwner returns the id of the object of k holding value in field f
// (within scope, the text of f's scoping field), or "". Callers ask it about
// values they hope are free (a random tunnel key), so an optimistic attempt
// asserts the value free at commit instead of reading it first.
func (tx *Tx) UniqueOwner(k *model.Kind, f *model.Field, scope, value string) (string, error) {
	val, ok, err := tx.probeAbsent(uniqKey(k, f, scope, value))
	if err != nil || !ok {
		return "", err
	}
	return string(val), nil
}

// Require is a caller's compare-and-swap precondition: the object must
// still be at revision (what the caller read, e.g. from an If-Match
// header). A mismatch is a *model.ConflictError and is not retried: the
// caller has to look at the new state.
func (tx *Tx) Require(k *model.Kind, id string, revision int64) error {
	if !model.IsUUID(id) {
		return notFound(k, id)
	}
	key := objKey(k, id)
	if w := tx.writes[key]; w != nil && w.del {
		return notFound(k, id)
	}
	r, err := tx.read(key)
	if err != nil {
		return err
	}
	if r.modRev == 0 {
		return notFound(k, id)
	}
	if r.modRev != revision {
		return model.Conflictf("stale revision: %s %s is at revision %d, the request was based on %d", k.Name, id, r.modRev, revision)
	}
	return nil
}

// Put creates or replaces o as is, maintaining what the store derives from
// the schema: the reverse index follows the references, unique values must
// be free (a *model.FieldError otherwise), and every new reference must
// name an existing object of the right kind — checked when the transaction
// commits, so objects that reference each other can be written in any
// order. o gets a random UUID when it has none. Put does not validate or
// apply the model's write rules: Create and Modify do.
func (tx *Tx) Put(o model.Object) error {
	if err := tx.writable(); err != nil {
		return err
	}
	k := model.KindOf(o)
	if k == nil {
		return fmt.Errorf("nsdb: cannot store a %T: not a kind of the model", o)
	}
	m := o.GetMeta()
	if m.ID == "" {
		m.ID = uuid.NewString()
	} else if !model.IsUUID(m.ID) {
		return &model.FieldError{Field: "id", Msg: fmt.Sprintf("%q is not a UUID", m.ID)}
	}
	key := objKey(k, m.ID)
	b, stored, err := encodeStored(o)
	if err != nil {
		return err
	}
	oldVal, exists, err := tx.get(key)
	if err != nil {
		return err
	}
	var old model.Object
	if exists {
		if bytes.Equal(oldVal, b) {
			return nil // no change: no write, no new revision, no watch event
		}
		if old, err = tx.decode(k, key, oldVal); err != nil {
			return err
		}
	}
	if err := tx.putRefs(k, m.ID, old, o); err != nil {
		return err
	}
	if err := tx.putUniques(k, m.ID, old, o); err != nil {
		return err
	}
	tx.put(key, b)
	if decoded.enabled() {
		tx.writes[key].obj = model.Clone(stored)
	}
	return nil
}

func (tx *Tx) putRefs(k *model.Kind, id string, old, o model.Object) error {
	for _, f := range k.Refs() {
		target := model.KindByName(f.Ref)
		was := map[string]bool{}
		if old != nil {
			for _, t := range f.RefIDs(old) {
				was[t] = true
			}
		}
		var added []string
		for _, t := range f.RefIDs(o) {
			if !was[t] {
				added = append(added, t)
			}
			delete(was, t)
		}
		// Only new references are checked: the old ones were checked when
		// written, and deletes keep them valid. The check waits for the
		// commit, so a transaction may write objects in any order (a chain
		// listing a rule before the rule, as model.PrepareCreate does).
		for _, t := range added {
			if !model.IsUUID(t) {
				return &model.FieldError{Field: f.JSON, Msg: fmt.Sprintf("%q is not a UUID of a %s", t, f.Ref)}
			}
			key := refKey(t, k, id, f.JSON)
			tx.put(key, nil)
			tx.refChecks = append(tx.refChecks, refCheck{key, f, objKey(target, t), t})
		}
		for t := range was {
			tx.del(refKey(t, k, id, f.JSON))
		}
	}
	return nil
}

func (tx *Tx) putUniques(k *model.Kind, id string, old, o model.Object) error {
	for _, f := range k.Uniques() {
		newKey, oldKey := uniqKeyOf(k, f, o), ""
		if old != nil {
			oldKey = uniqKeyOf(k, f, old)
		}
		if newKey == oldKey {
			continue
		}
		if newKey != "" {
			owner, taken, err := tx.probeAbsent(newKey)
			if err != nil {
				return err
			}
			if taken && string(owner) != id {
				msg := fmt.Sprintf("%q is already used by %s %s", f.Text(o), k.Name, owner)
				if f.Scope != "" {
					msg += fmt.Sprintf(" with the same %s", f.Scope)
				}
				return &model.FieldError{Field: f.JSON, Msg: msg}
			}
			tx.put(newKey, []byte(id))
		}
		if oldKey != "" {
			tx.del(oldKey)
		}
	}
	return nil
}

// refCheck is a reference written by the transaction, whose target must
// exist when it commits.
type refCheck struct {
	refKey    string
	f         *model.Field
	targetKey string
	targetID  string
}

// checkRefs runs before the commit: every reference the transaction still
// writes must name an object that exists in the transaction's view.
func (tx *Tx) checkRefs() error {
	var keys []string
	for _, c := range tx.refChecks {
		_, written := tx.writes[c.targetKey]
		_, read := tx.reads[c.targetKey]
		if tx.optimistic && !written && !read {
			tx.asserts[c.targetKey] = true
			continue
		}
		keys = append(keys, c.targetKey)
	}
	if err := tx.prefetch(keys); err != nil {
		return err
	}
	for _, c := range tx.refChecks {
		if w := tx.writes[c.refKey]; w == nil || w.del {
			continue // the reference was dropped again (or its source deleted)
		}
		if tx.asserts[c.targetKey] {
			continue
		}
		_, ok, err := tx.get(c.targetKey)
		if err != nil {
			return err
		}
		if !ok {
			return &model.FieldError{Field: c.f.JSON, Msg: fmt.Sprintf("%s %s does not exist", c.f.Ref, c.targetID), Missing: true}
		}
	}
	return nil
}

// Create validates o and creates it under the model's write rules
// (defaults, validation, model.PrepareCreate, Put). It works on a copy, so
// o is unchanged and safe to pass again when Update retries, and returns
// the object as it will be stored (Revision is known after the commit). An
// id that exists already is a *model.ConflictError.
func (tx *Tx) Create(o model.Object) (model.Object, error) {
	k := model.KindOf(o)
	if k == nil {
		return nil, fmt.Errorf("nsdb: cannot create a %T: not a kind of the model", o)
	}
	c := model.Clone(o)
	model.ApplyDefaults(c)
	if err := model.Validate(c); err != nil {
		return nil, err
	}
	m := c.GetMeta()
	m.Revision = 0
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	// A new id, generated here or chosen by the caller (the Neutron
	// translation derives its objects' ids), is expected to be free: an
	// optimistic attempt asserts that at commit instead of reading it, and
	// only a failed assertion costs the read that reports the conflict.
	if _, exists, err := tx.probeAbsent(objKey(k, m.ID)); err != nil {
		return nil, err
	} else if exists {
		return nil, model.Conflictf("%s %s already exists", k.Name, m.ID)
	}
	if err := model.PrepareCreate(tx, c); err != nil {
		return nil, err
	}
	if err := tx.Put(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Modify changes an object under the model's write rules: mutate gets a
// copy, the result is defaulted, validated, checked by
// model.PrepareUpdate and Put. ifRevision, when not 0, must be the
// object's current revision (see Require). mutate may run several times
// (once per attempt of Update) and must only change the object it gets.
func (tx *Tx) Modify(k *model.Kind, id string, ifRevision int64, mutate func(model.Object) error) (model.Object, error) {
	old, err := tx.Get(k, id)
	if err != nil {
		return nil, err
	}
	if ifRevision != 0 {
		if err := tx.Require(k, id, ifRevision); err != nil {
			return nil, err
		}
	}
	o := model.Clone(old)
	if err := mutate(o); err != nil {
		return nil, err
	}
	model.ApplyDefaults(o)
	if err := model.Validate(o); err != nil {
		return nil, err
	}
	if err := model.PrepareUpdate(tx, old, o); err != nil {
		return nil, err
	}
	if err := tx.Put(o); err != nil {
		return nil, err
	}
	return o, nil
}

// Remove deletes an object (see Delete), first checking ifRevision when
// it is not 0.
func (tx *Tx) Remove(k *model.Kind, id string, ifRevision int64) error {
	if ifRevision != 0 {
		if err := tx.Require(k, id, ifRevision); err != nil {
			return err
		}
	}
	return tx.Delete(k, id)
}
