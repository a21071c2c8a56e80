package neutron

import (
	"context"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Taggable are the resources the standard-attr-tag extension tags here.
var Taggable = []*Resource{Networks, Subnets, Ports, Routers, FloatingIPs, SecurityGroups}

// Tags returns an object's tags.
func (s *Service) Tags(ctx context.Context, c *identity.Context, r *Resource, id string) ([]string, error) {
	var out []string
	err := s.Read(ctx, c, func(v *Viewer) error {
		o, err := v.Get(r, id)
		if err != nil {
			return err
		}
		out = o.(Object).std().Tags
		return nil
	})
	if out == nil {
		out = []string{}
	}
	return out, err
}

// ChangeTags applies change to an object's tags (add one, remove one,
// replace all) and bumps its revision, as Neutron's tag plugin does.
func (s *Service) ChangeTags(ctx context.Context, c *identity.Context, r *Resource, id string, change func([]string) ([]string, error)) ([]string, error) {
	var out []string
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		v := &Viewer{s: s, tx: tx, c: c, networks: map[string]*Network{}}
		o, err := v.Get(r, id)
		if err != nil {
			return err
		}
		st := o.(Object).std()
		if !owns(c, st) {
			return policyNotAuthorized("update_" + r.Singular + ":tags")
		}
		if err := may(c, "update_"+r.Singular+":tags"); err != nil {
			return err
		}
		next, err := change(slices.Clone(st.Tags))
		if err != nil {
			return err
		}
		if next, err = normalizeTags(next); err != nil {
			return err
		}
		out = next
		if slices.Equal(next, st.Tags) || (len(next) == 0 && len(st.Tags) == 0) {
			return nil
		}
		st.Tags = next
		if len(next) == 0 {
			st.Tags = nil
		}
		s.touch(st)
		return tx.Put(o)
	})
	return out, err
}

// TagNotFound is the tag plugin's 404 for a tag an object lacks.
func TagNotFound(r *Resource, id, tag string) error {
	return newErr(404, "TagNotFound", "Tag %s could not be found for %s %s.", tag, r.Singular, id)
}

// ValidTag checks a tag given in a URL.
func ValidTag(t string) error { return validTag(t) }
