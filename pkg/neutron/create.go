package neutron

import (
	"cmp"
	"context"
	"maps"
	"slices"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Creates in two steps, so that several go into one transaction (Neutron's
// native bulk create: all or nothing). Prepare<Resource> applies what
// needs no NSDB read (policy, the request's values) and returns a
// Creation; Create (one) or CreateBulk (several) admits them (quota, the
// project's neutron-project) and writes them in one etcd transaction.

// Creation is a create that passed the checks that need no read.
type Creation struct {
	project string // the new object's project ("" none)
	quota   string // the quota resource it counts against ("" none)
	// write creates the object with its translation; nsdb may run it
	// again when the transaction is retried.
	write func(tx *nsdb.Tx) (model.Object, error)
}

// creation is a Creation of a project's object counted against quota.
func creation(project, quota string, write func(tx *nsdb.Tx) (model.Object, error)) *Creation {
	return &Creation{project: project, quota: quota, write: write}
}

// Create writes one prepared creation.
func (s *Service) Create(ctx context.Context, cr *Creation) (model.Object, error) {
	objs, err := s.CreateBulk(ctx, []*Creation{cr})
	if err != nil {
		return nil, err
	}
	return objs[0], nil
}

// CreateBulk writes prepared creations in one transaction, in order: all
// or nothing. Each project's quota is checked for all of its new objects
// at once, while the transaction reads.
func (s *Service) CreateBulk(ctx context.Context, crs []*Creation) ([]model.Object, error) {
	need := map[[2]string]int{}
	for _, cr := range crs {
		if cr.project != "" {
			need[[2]string{cr.project, cr.quota}]++
		}
	}
	keys := slices.SortedFunc(maps.Keys(need), func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	var quotas []func() error
	for _, k := range keys {
		if err := s.ensureProject(ctx, k[0]); err != nil {
			return nil, err
		}
		if k[1] != "" {
			quotas = append(quotas, s.checkQuotaAsync(ctx, k[0], k[1], need[k]))
		}
	}
	var out []model.Object
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		out = out[:0]
		for _, cr := range crs {
			o, err := cr.write(tx)
			if err != nil {
				return err
			}
			out = append(out, o)
		}
		for _, q := range quotas {
			if err := q(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// created writes a prepared creation of a T.
func created[T model.Object](ctx context.Context, s *Service, cr *Creation, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	o, err := s.Create(ctx, cr)
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}
