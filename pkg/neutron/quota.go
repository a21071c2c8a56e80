package neutron

import (
	"context"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

func newID() string { return uuid.NewString() }

// DefaultQuotas are Neutron's default quotas (neutron.conf [quotas]).
var DefaultQuotas = map[string]int{
	"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
	"security_group": 10, "security_group_rule": 100, "subnetpool": -1, "rbac_policy": 10,
}

// quotaKinds are the kinds counted against each quota.
var quotaKinds = map[string]*model.Kind{
	"network": NetworkKind, "subnet": SubnetKind, "port": PortKind, "router": RouterKind,
	"floatingip": FloatingIPKind, "security_group": SecurityGroupKind, "security_group_rule": SecurityGroupRuleKind,
}

// usage counts a project's objects of a quota resource from the reverse
// index of its neutron-project (one count-only etcd read).
func (s *Service) usage(ctx context.Context, project, resource string) (int, error) {
	k := quotaKinds[resource]
	if k == nil {
		return 0, nil
	}
	n, err := s.store.CountReferrers(ctx, projectObjectID(project), k)
	return int(n), err
}

func (s *Service) limits(ctx context.Context, project string) (map[string]int, error) {
	out := make(map[string]int, len(DefaultQuotas))
	for k, v := range DefaultQuotas {
		out[k] = v
	}
	p, err := s.getProject(ctx, project)
	if err != nil || p == nil {
		return out, err
	}
	for k, v := range p.Quotas {
		out[k] = v
	}
	return out, nil
}

// limitsTTL is how long a create's quota check trusts the limits it read:
// a change made through this server applies at once, one made through
// another server within limitsTTL.
const limitsTTL = time.Second

type cachedLimits struct {
	limits map[string]int
	read   time.Time
}

// createLimits is limits for the quota check of creates: read at most
// once per limitsTTL, so that a project's creates do not each spend a
// read on limits that rarely change (and, unlimited, need nothing else).
func (s *Service) createLimits(ctx context.Context, project string) (map[string]int, error) {
	if c, ok := s.quotas.Load(project); ok && s.now().Sub(c.(*cachedLimits).read) < limitsTTL {
		return c.(*cachedLimits).limits, nil
	}
	at, gen := s.now(), s.quotaGen.Load()
	lim, err := s.limits(ctx, project)
	if err != nil {
		return nil, err
	}
	if s.quotaGen.Load() == gen { // else a change through this server may have overtaken the read
		s.quotas.Store(project, &cachedLimits{lim, at})
	}
	return lim, nil
}

// unlimited reports, from limits read recently, that a project's
// resource has no quota: the create needs no check at all.
func (s *Service) unlimited(project, resource string) bool {
	c, ok := s.quotas.Load(project)
	return ok && s.now().Sub(c.(*cachedLimits).read) < limitsTTL && c.(*cachedLimits).limits[resource] < 0
}

// forgetLimits drops what createLimits remembers of a project whose
// limits this server changed.
func (s *Service) forgetLimits(project string) {
	s.quotaGen.Add(1)
	s.quotas.Delete(project)
}

// checkQuota refuses a create that would take a project over its quota.
// Like Neutron's it is checked before the write, not inside its
// transaction: concurrent creates may overshoot by their number, which
// keeps creates in one project from serializing on a counter.
func (s *Service) checkQuota(ctx context.Context, project, resource string, n int) error {
	if project == "" {
		return nil
	}
	lim, err := s.createLimits(ctx, project)
	if err != nil {
		return err
	}
	l := lim[resource]
	if l < 0 {
		return nil
	}
	used, err := s.usage(ctx, project, resource)
	if err != nil {
		return err
	}
	if used+n > l {
		return conflict("OverQuota", "Quota exceeded for resources: ['%s'].", resource)
	}
	return nil
}

// checkQuotaAsync starts checkQuota and returns the wait for its answer,
// so a create overlaps the count with its own reads.
func (s *Service) checkQuotaAsync(ctx context.Context, project, resource string, n int) func() error {
	if s.unlimited(project, resource) {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() { done <- s.checkQuota(ctx, project, resource, n) }()
	var err error
	waited := false
	return func() error {
		if !waited {
			err, waited = <-done, true
		}
		return err
	}
}

// Quotas returns a project's limits.
func (s *Service) Quotas(ctx context.Context, c *identity.Context, project string) (map[string]int, error) {
	if !c.IsAdmin() && project != c.ProjectID {
		return nil, PolicyNotAuthorized("get_quota")
	}
	return s.limits(ctx, project)
}

// QuotaDetails returns limits with usage (the quota_details extension).
func (s *Service) QuotaDetails(ctx context.Context, c *identity.Context, project string) (map[string]map[string]int, error) {
	lim, err := s.Quotas(ctx, c, project)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]int{}
	for k, l := range lim {
		used, err := s.usage(ctx, project, k)
		if err != nil {
			return nil, err
		}
		out[k] = map[string]int{"limit": l, "used": used, "reserved": 0}
	}
	return out, nil
}

// SetQuotas changes a project's limits (admin only): each resource of
// DefaultQuotas it names, to at least -1 (no limit).
func (s *Service) SetQuotas(ctx context.Context, c *identity.Context, project string, limits map[string]int) (map[string]int, error) {
	if !c.IsAdmin() {
		return nil, PolicyNotAuthorized("update_quota")
	}
	for _, k := range slices.Sorted(maps.Keys(limits)) {
		if _, ok := DefaultQuotas[k]; !ok {
			return nil, quotaResourceUnknown(k)
		}
		if limits[k] < -1 {
			return nil, Invalid(k, "'%d' is too small - must be at least '-1'", limits[k])
		}
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := tx.Get(ProjectKind, projectObjectID(project))
		if err != nil {
			return err
		}
		p := o.(*Project)
		if p.Quotas == nil {
			p.Quotas = map[string]int{}
		}
		for k, v := range limits {
			p.Quotas[k] = v
		}
		return tx.Put(p)
	})
	s.forgetLimits(project)
	if err != nil {
		return nil, err
	}
	return s.limits(ctx, project)
}

// ResetQuotas returns a project to the default limits (admin only).
func (s *Service) ResetQuotas(ctx context.Context, c *identity.Context, project string) error {
	if !c.IsAdmin() {
		return PolicyNotAuthorized("delete_quota")
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := tx.Get(ProjectKind, projectObjectID(project))
		if err != nil {
			return nil // never used: already at the defaults
		}
		p := o.(*Project)
		p.Quotas = nil
		return tx.Put(p)
	})
	s.forgetLimits(project)
	return err
}

// quotaResourceUnknown is the quota extension's 404 for a resource it
// does not know.
func quotaResourceUnknown(resource string) *Error {
	return NewError(NotFound, "QuotaResourceUnknown", "Unknown quota resources ['%s'].", resource)
}

// ProjectQuota is one project's limits, for the admin's quota list.
type ProjectQuota struct {
	ProjectID string
	Limits    map[string]int
}

// ListQuotas lists the projects whose limits differ from the defaults.
func (s *Service) ListQuotas(ctx context.Context, c *identity.Context) ([]ProjectQuota, error) {
	if !c.IsAdmin() {
		return nil, PolicyNotAuthorized("get_quota")
	}
	objs, _, err := s.store.List(ctx, ProjectKind, "", "")
	if err != nil {
		return nil, err
	}
	var out []ProjectQuota
	for _, o := range objs {
		p := o.(*Project)
		if len(p.Quotas) == 0 {
			continue
		}
		lim := map[string]int{}
		for k, v := range DefaultQuotas {
			lim[k] = v
		}
		for k, v := range p.Quotas {
			lim[k] = v
		}
		out = append(out, ProjectQuota{p.ProjectID, lim})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProjectID < out[j].ProjectID })
	return out, nil
}
