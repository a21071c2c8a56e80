package neutron

import (
	"context"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Policy: who may do what, the steps every write takes in the same order.
// A create: creating (the caller writes; the project is the request's or
// the caller's), the request's own checks, then Create or CreateBulk
// (create.go: quota, the project's neutron-project and default group, and
// one transaction for all). An update or
// delete: modify, which reads the object under its get policy (missing or
// hidden: not found) and applies changing's (owner, role, If-Match)
// before the resource's own checks, in one transaction. Reads go through
// a Reader (reader.go), which applies each resource's get policy.

// creating starts a create: the caller must hold a role that writes, and
// the project the request names (or the caller's) is the new object's.
func (s *Service) creating(c *identity.Context, r *StdRequest, action string) (Std, error) {
	if err := may(c, action); err != nil {
		return Std{}, err
	}
	project, err := projectFor(c, r.ProjectID)
	if err != nil {
		return Std{}, err
	}
	return s.newStd(project), nil
}

// checkRevision is the If-Match compare-and-swap (0: no constraint).
func checkRevision(o *Std, ifRev int64) error {
	if ifRev != 0 && o.RevisionNumber != ifRev {
		return revisionConstraintFailed(ifRev, o.RevisionNumber)
	}
	return nil
}

// may refuses a write to a caller with a read-only role.
func may(c *identity.Context, action string) error {
	if !c.CanWrite() {
		return PolicyNotAuthorized(action)
	}
	return nil
}

// projectFor applies Neutron's project rules to a create: the caller's own
// project unless the request names one, and only admins name another.
func projectFor(c *identity.Context, asked *string) (string, error) {
	p := c.ProjectID
	if asked != nil {
		p = *asked
	}
	if p != c.ProjectID && !c.IsAdmin() {
		return "", HTTPBadRequest("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request is not allowed for current user.")
	}
	if p == "" {
		return "", HTTPBadRequest("Running without keystone AuthN requires that tenant_id is specified")
	}
	return p, nil
}

// owns reports whether the caller owns o (admins own everything).
func owns(c *identity.Context, o *Std) bool { return c.IsAdmin() || o.ProjectID == c.ProjectID }

// get reads an object as the caller may see it within a write's
// transaction (its kind's NotFoundError when it is missing or hidden).
func get[T Object](tx *nsdb.Tx, c *identity.Context, id string) (T, error) {
	var zero T
	r := &Reader{tx: tx, c: c, networks: map[string]*Network{}}
	o, err := r.Get(model.KindOf(zero), id)
	if err == nil {
		err = r.err
	}
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}

// changing reads the object an update or delete names and applies the
// write's policy: missing or hidden, it is not found; seen, the caller
// must own it (a port: or own its network, Neutron's
// admin_or_network_owner, which is its get policy already), hold a role
// that writes, and name its revision if If-Match does.
func changing[T Object](tx *nsdb.Tx, c *identity.Context, id, action string, ifRev int64) (T, error) {
	o, err := get[T](tx, c, id)
	if err != nil {
		return o, err
	}
	var zero T
	if _, port := any(o).(*Port); !port && !owns(c, o.std()) {
		return zero, PolicyNotAuthorized(action)
	}
	if err := may(c, action); err != nil {
		return zero, err
	}
	if err := checkRevision(o.std(), ifRev); err != nil {
		return zero, err
	}
	return o, nil
}

// modify runs an update or delete of one existing object in one
// transaction: fn gets the object as changing reads it, and writes.
func modify[T Object](ctx context.Context, s *Service, c *identity.Context, id, action string, ifRev int64, fn func(*nsdb.Tx, T) error) (T, error) {
	var out T
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := changing[T](tx, c, id, action, ifRev)
		if err != nil {
			return err
		}
		if err := fn(tx, o); err != nil {
			return err
		}
		out = o
		return nil
	})
	return out, err
}

// rename changes the standard attributes (name, description) of an object
// that has no other attribute an update may change.
func rename[T Object](ctx context.Context, s *Service, c *identity.Context, id, action string, r StdRequest, ifRev int64) (T, error) {
	return modify(ctx, s, c, id, action, ifRev, func(tx *nsdb.Tx, x T) error {
		r.apply(x.std())
		s.touch(x.std())
		return tx.Put(x)
	})
}
