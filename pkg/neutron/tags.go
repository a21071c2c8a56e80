package neutron

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Tags (standard-attr-tag) of the objects with standard attributes.

const maxTags = 50

// ValidTag checks one tag: 1 to 255 characters, no commas (the filters
// separate tags with them).
func ValidTag(t string) error {
	if t == "" || len([]rune(t)) > 255 {
		return Invalid("tags", "'%s' is not a valid tag: tags are 1 to 255 characters", t)
	}
	if strings.Contains(t, ",") {
		return Invalid("tags", "'%s' contains ',': tags cannot contain commas (the filters separate tags with them)", t)
	}
	return nil
}

// NormalizeTags checks a list of tags and returns it sorted, without
// duplicates, never nil.
func NormalizeTags(xs []string) ([]string, error) {
	seen := map[string]bool{}
	out := []string{}
	for _, t := range xs {
		if err := ValidTag(t); err != nil {
			return nil, err
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, BadResourceRequest("tags", "The number of tags exceeds the limit %d", maxTags)
	}
	sort.Strings(out)
	return out, nil
}

// Tags returns an object's tags.
func (s *Service) Tags(ctx context.Context, c *identity.Context, k *model.Kind, id string) ([]string, error) {
	var out []string
	err := s.Read(ctx, c, func(r *Reader) error {
		o, err := r.Get(k, id)
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
func (s *Service) ChangeTags(ctx context.Context, c *identity.Context, k *model.Kind, id string, change func([]string) ([]string, error)) ([]string, error) {
	action := "update_" + resourceName(k) + ":tags"
	var out []string
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := s.reader(tx, c).Get(k, id)
		if err != nil {
			return err
		}
		st := o.(Object).std()
		if !owns(c, st) {
			return PolicyNotAuthorized(action)
		}
		if err := may(c, action); err != nil {
			return err
		}
		next, err := change(slices.Clone(st.Tags))
		if err != nil {
			return err
		}
		if next, err = NormalizeTags(next); err != nil {
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
func TagNotFound(k *model.Kind, id, tag string) error {
	return NewError(NotFound, "TagNotFound", "Tag %s could not be found for %s %s.", tag, resourceName(k), id)
}
