// Package nsdbmem is an in-memory NSDB for unit tests of the agent's
// feature packages: a working fake of the parts of nsdb.Store an agent
// uses, not a script of expected calls. Objects are created, changed,
// removed, listed and watched (a Reset batch, then events with the
// previous version, as nsdb.Store.Watch delivers them); leases are
// granted, kept alive and revoked, and every key written under a lease
// goes with it, as etcd deletes them; host liveness, learned MACs and
// neighbors, pool members' health, NAT translations, learned routes and BGP session states are kept and
// watched the way the store keeps them in etcd.
//
// What it does not do: the model's cross-object write rules (references,
// uniqueness, cascades; nsdb.Tx applies them in etcd transactions), and
// lease expiry by time (a lease lives until revoked). Objects are
// defaulted and validated as the store does. Tests of those behaviours
// run against a real etcd (nsdbtest).
package nsdbmem

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Store is the in-memory NSDB. It is safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	rev       int64
	keys      map[string]*entry
	leases    map[nsdb.LeaseID]map[string]bool // keys held by each live lease
	lastLease nsdb.LeaseID
	watchers  map[*watcher]struct{}
}

// entry is one key: an object (obj/), or a piece of runtime state.
type entry struct {
	value     any
	lease     nsdb.LeaseID
	createRev int64
	modRev    int64
}

// New returns an empty store.
func New() *Store {
	return &Store{keys: map[string]*entry{}, leases: map[nsdb.LeaseID]map[string]bool{}, watchers: map[*watcher]struct{}{}}
}

// change is one key's event, delivered to watchers of its prefix.
type change struct {
	key       string
	value     any // nil: deleted
	prev      any
	createRev int64
	rev       int64
}

// Key prefixes of the keyspace (the store's layout in etcd, simplified).
const (
	objP      = "obj/"
	aliveP    = "alive/"
	macP      = "mac/"
	neighborP = "neighbor/"
	memberP   = "member/"
	natP      = "nat/"
	statusP   = "status/"
)

func objKey(k *model.Kind, id string) string { return objP + k.Name + "/" + id }

// putLocked writes a key and notifies watchers.
func (s *Store) putLocked(key string, v any, lease nsdb.LeaseID) error {
	if lease != nsdb.NoLease && s.leases[lease] == nil {
		return fmt.Errorf("nsdbmem: lease %x not found", int64(lease))
	}
	s.rev++
	old := s.keys[key]
	e := &entry{value: v, lease: lease, createRev: s.rev, modRev: s.rev}
	var prev any
	if old != nil {
		e.createRev, prev = old.createRev, old.value
		if old.lease != nsdb.NoLease && s.leases[old.lease] != nil {
			delete(s.leases[old.lease], key)
		}
	}
	s.keys[key] = e
	if lease != nsdb.NoLease {
		s.leases[lease][key] = true
	}
	s.notifyLocked(change{key: key, value: v, prev: prev, createRev: e.createRev, rev: s.rev})
	return nil
}

func (s *Store) deleteLocked(key string) bool {
	old := s.keys[key]
	if old == nil {
		return false
	}
	s.rev++
	delete(s.keys, key)
	if old.lease != nsdb.NoLease && s.leases[old.lease] != nil {
		delete(s.leases[old.lease], key)
	}
	s.notifyLocked(change{key: key, prev: old.value, createRev: old.createRev, rev: s.rev})
	return true
}

// GrantLease grants a lease; it lives until revoked.
func (s *Store) GrantLease(ctx context.Context, ttl time.Duration) (nsdb.LeaseID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastLease++
	s.leases[s.lastLease] = map[string]bool{}
	return s.lastLease, nil
}

// KeepLeaseAlive blocks until ctx is done or the lease is revoked.
func (s *Store) KeepLeaseAlive(ctx context.Context, lease nsdb.LeaseID) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		alive := s.leases[lease] != nil
		s.mu.Unlock()
		if !alive {
			return fmt.Errorf("nsdbmem: lease %x lost", int64(lease))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ResumeLease is nil while the lease lives, and wraps nsdb.ErrLeaseGone
// once it is revoked.
func (s *Store) ResumeLease(ctx context.Context, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases[lease] == nil {
		return fmt.Errorf("nsdbmem: resume lease %x: %w", int64(lease), nsdb.ErrLeaseGone)
	}
	return nil
}

// RevokeLease ends a lease and deletes every key written under it.
func (s *Store) RevokeLease(ctx context.Context, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.leases[lease]
	if keys == nil {
		return fmt.Errorf("nsdbmem: lease %x not found", int64(lease))
	}
	delete(s.leases, lease)
	for _, k := range slices.Sorted(mapKeys(keys)) {
		s.deleteLocked(k)
	}
	return nil
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Get returns an object; a missing one wraps model.ErrNotFound.
func (s *Store) Get(ctx context.Context, k *model.Kind, id string) (model.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[objKey(k, id)]
	if e == nil {
		return nil, fmt.Errorf("%s %s does not exist: %w", k.Name, id, model.ErrNotFound)
	}
	return s.object(e), nil
}

// object returns a caller's copy of a stored object, with its revision.
func (s *Store) object(e *entry) model.Object {
	o := model.Clone(e.value.(model.Object))
	o.GetMeta().Revision = e.modRev
	return o
}

// List returns the objects of k in creation order, those whose field has
// the text value when field is not "".
func (s *Store) List(ctx context.Context, k *model.Kind, field, value string) ([]model.Object, int64, error) {
	var f *model.Field
	if field != "" {
		if f = k.Field(field); f == nil {
			return nil, 0, fmt.Errorf("nsdbmem: %s has no field %q", k.Name, field)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var es []*entry
	for key, e := range s.keys {
		if strings.HasPrefix(key, objP+k.Name+"/") && (f == nil || f.Text(e.value.(model.Object)) == value) {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(a.createRev, b.createRev) })
	out := make([]model.Object, len(es))
	for i, e := range es {
		out[i] = s.object(e)
	}
	return out, s.rev, nil
}

// Create stores a copy of o, defaulted and validated, with a new id
// unless o has one; it returns the stored object.
func (s *Store) Create(ctx context.Context, o model.Object) (model.Object, error) {
	k := model.KindOf(o)
	if k == nil {
		return nil, fmt.Errorf("nsdbmem: cannot create a %T", o)
	}
	c := model.Clone(o)
	model.ApplyDefaults(c)
	if err := model.Validate(c); err != nil {
		return nil, err
	}
	m := c.GetMeta()
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := objKey(k, m.ID)
	if s.keys[key] != nil {
		return nil, model.Conflictf("%s %s already exists", k.Name, m.ID)
	}
	if err := s.putLocked(key, c, nsdb.NoLease); err != nil {
		return nil, err
	}
	return s.object(s.keys[key]), nil
}

// Modify changes an object: mutate gets a copy, which is defaulted,
// validated and stored if it differs. ifRevision, when not 0, must be
// the object's revision.
func (s *Store) Modify(ctx context.Context, k *model.Kind, id string, ifRevision int64, mutate func(model.Object) error) (model.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := objKey(k, id)
	e := s.keys[key]
	switch {
	case e == nil:
		return nil, fmt.Errorf("%s %s does not exist: %w", k.Name, id, model.ErrNotFound)
	case ifRevision != 0 && ifRevision != e.modRev:
		return nil, model.Conflictf("%s %s is at revision %d, not %d", k.Name, id, e.modRev, ifRevision)
	}
	c := s.object(e)
	if err := mutate(c); err != nil {
		return nil, err
	}
	model.ApplyDefaults(c)
	if err := model.Validate(c); err != nil {
		return nil, err
	}
	c.GetMeta().ID = id
	if sameObject(c, e.value.(model.Object)) {
		return s.object(e), nil
	}
	if err := s.putLocked(key, c, nsdb.NoLease); err != nil {
		return nil, err
	}
	return s.object(s.keys[key]), nil
}

// sameObject compares two versions of an object, revisions aside.
func sameObject(a, b model.Object) bool {
	a, b = model.Clone(a), model.Clone(b)
	a.GetMeta().Revision, b.GetMeta().Revision = 0, 0
	return reflect.DeepEqual(a, b)
}

// Remove deletes an object (no on-delete policies: see the package doc).
func (s *Store) Remove(ctx context.Context, k *model.Kind, id string, ifRevision int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[objKey(k, id)]
	switch {
	case e == nil:
		return fmt.Errorf("%s %s does not exist: %w", k.Name, id, model.ErrNotFound)
	case ifRevision != 0 && ifRevision != e.modRev:
		return model.Conflictf("%s %s is at revision %d, not %d", k.Name, id, e.modRev, ifRevision)
	}
	s.deleteLocked(objKey(k, id))
	return nil
}
