package neutron

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Options configure the Neutron service.
type Options struct {
	// GlobalMTU is the MTU of the physical network (Neutron's
	// global_physnet_mtu, default 1500); overlay networks get it minus
	// their encapsulation overhead.
	GlobalMTU int
	Log       *slog.Logger
}

// Service implements Neutron's resources over the NSDB. Every write is one
// Store.Update that writes the Neutron objects and their native
// translation together, so the two never disagree and a refused request
// changes nothing.
type Service struct {
	store    *nsdb.Store
	log      *slog.Logger
	mtu      int
	now      func() time.Time
	projects sync.Map // project id → struct{}: its neutron-project exists
	hosts    sync.Map // host name → native host id (verified in each transaction)
	// quotas are projects' limits as last read (project id → *cachedLimits),
	// for the quota check of creates (see checkQuota).
	quotas   sync.Map
	quotaGen atomic.Int64 // changes of limits through this server
	// translatePort is TranslatePort; the migration tests make it the
	// old translation to write what an older server wrote.
	translatePort func(PortInput) []model.Object
}

// New returns the service over a store.
func New(store *nsdb.Store, opts Options) *Service {
	if opts.GlobalMTU == 0 {
		opts.GlobalMTU = 1500
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Service{store: store, log: opts.Log, mtu: opts.GlobalMTU, now: time.Now, translatePort: TranslatePort}
}

// Store is the service's NSDB.
func (s *Service) Store() *nsdb.Store { return s.store }

func (s *Service) timestamp() string { return s.now().UTC().Format("2006-01-02T15:04:05Z") }

// newStd fills the standard attributes of a new object.
func (s *Service) newStd(project string) Std {
	ts := s.timestamp()
	st := Std{ProjectID: project, CreatedAt: ts, UpdatedAt: ts, RevisionNumber: 1}
	if project != "" {
		st.ProjectRef = projectObjectID(project)
	}
	return st
}

// touch records a change of o: a new revision and update time.
func (s *Service) touch(o *Std) {
	o.RevisionNumber++
	o.UpdatedAt = s.timestamp()
}

// ensureProject creates, once, the neutron-project object of a project and
// its default security group, as Neutron creates the default group on a
// project's first request. Projects are never deleted, so the result is
// cached.
func (s *Service) ensureProject(ctx context.Context, project string) error {
	if project == "" {
		return nil
	}
	if _, ok := s.projects.Load(project); ok {
		return nil
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		id := projectObjectID(project)
		if _, err := tx.Get(ProjectKind, id); err == nil {
			return nil
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
		sgID := defaultGroupID(project)
		if _, err := tx.Create(&Project{Meta: model.Meta{ID: id}, ProjectID: project, DefaultGroupID: sgID}); err != nil {
			return err
		}
		return s.createDefaultGroup(tx, project, sgID)
	})
	if err != nil {
		return err
	}
	s.projects.Store(project, struct{}{})
	return nil
}

// getProject reads a project's neutron-project object (nil if the project
// never used the API).
func (s *Service) getProject(ctx context.Context, project string) (*Project, error) {
	o, err := s.store.Get(ctx, ProjectKind, projectObjectID(project))
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return o.(*Project), nil
}

// hostID resolves binding:host_id (a host name, as Nova sends it) to the
// native host an agent registered. The cache is a hint: the transaction
// reads the host it names, so a stale entry cannot bind to the wrong host.
func (s *Service) hostID(tx *nsdb.Tx, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	if id, ok := s.hosts.Load(name); ok {
		o, err := tx.Get(model.HostKind, id.(string))
		if err == nil && o.(*model.Host).Name == name {
			return id.(string), nil
		}
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			return "", err
		}
		s.hosts.Delete(name)
	}
	hs, err := tx.List(model.HostKind, "name", name)
	if err != nil || len(hs) == 0 {
		return "", err
	}
	id := hs[0].GetMeta().ID
	s.hosts.Store(name, id)
	return id, nil
}

// view runs read-only work in one consistent snapshot.
func (s *Service) view(ctx context.Context, fn func(tx *nsdb.Tx) error) error {
	_, err := s.store.View(ctx, fn)
	return err
}
