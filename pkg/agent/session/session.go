// Package session is the agent's registration in the NSDB and the one
// owner of its liveness lease.
//
// Open finds or creates the host's record and takes a lease under which
// the host's alive key lives: when the agent dies, etcd deletes the key
// after the lease's TTL and every reader sees the host go. Everything
// else the agent publishes about itself (learned MACs and neighbors, NAT
// blocks and translations, health statuses, its datapath status) is
// written under the same lease, read from Lease at the time of the write.
// Run keeps the lease alive. When the client gives it up (etcd unanswered
// for longer than the TTL) Run first resumes it: after an outage of the
// NSDB etcd still holds every lease for a while, and a host that resumes
// its own never looks dead to its peers (who would stop tunnelling to it).
// Only a lease that is gone is replaced: Run takes a new one, marks the
// host alive again and tells the holders of state that must move
// (OnLeaseChange).
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/internal/backoff"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// NSDB is what the session reads and writes.
type NSDB interface {
	List(ctx context.Context, k *model.Kind, field, value string) ([]model.Object, int64, error)
	Create(ctx context.Context, o model.Object) (model.Object, error)
	GrantLease(ctx context.Context, ttl time.Duration) (nsdb.LeaseID, error)
	KeepLeaseAlive(ctx context.Context, lease nsdb.LeaseID) error
	ResumeLease(ctx context.Context, lease nsdb.LeaseID) error
	SetHostAlive(ctx context.Context, hostID string, lease nsdb.LeaseID) error
}

// HostRecord changes the host's own record (hostclaim.Claims: the NSDB
// directly, or the server for a joined agent, which may not write the
// topology).
type HostRecord interface {
	SetHost(ctx context.Context, hostID string, h hostclaim.HostInfo) error
}

// Config is the host's identity and the lease's lifetime.
type Config struct {
	HostName string
	// Addresses, when set, replace the host record's addresses (the
	// tunnel IP given on the command line), through Record.
	Addresses []netip.Addr
	Record    HostRecord
	// LeaseTTL is how long the host stays alive after the agent dies.
	LeaseTTL time.Duration
	Log      *slog.Logger
}

// Session is a registered host and its current lease.
type Session struct {
	db     NSDB
	cfg    Config
	hostID string
	lease  atomic.Int64

	mu       sync.Mutex
	onChange []func(context.Context, nsdb.LeaseID)
}

// Open registers the host (finding it by name, or creating it) and takes
// its first lease.
func Open(ctx context.Context, db NSDB, cfg Config) (*Session, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Session{db: db, cfg: cfg}
	if err := s.register(ctx); err != nil {
		return nil, err
	}
	lease, err := s.grant(ctx)
	if err != nil {
		return nil, err
	}
	s.lease.Store(int64(lease))
	return s, nil
}

func (s *Session) register(ctx context.Context) error {
	name := s.cfg.HostName
	for attempt := 0; ; attempt++ {
		hosts, _, err := s.db.List(ctx, model.HostKind, "name", name)
		if err != nil {
			return fmt.Errorf("look up host %q in the NSDB: %w", name, err)
		}
		if len(hosts) > 0 {
			s.hostID = hosts[0].GetMeta().ID
			if len(s.cfg.Addresses) == 0 || slices.Equal(hosts[0].(*model.Host).Addresses, s.cfg.Addresses) {
				return nil
			}
			if err := s.cfg.Record.SetHost(ctx, s.hostID, hostclaim.HostInfo{Addresses: s.cfg.Addresses}); err != nil {
				return fmt.Errorf("update host %q: %w", name, err)
			}
			return nil
		}
		h, err := s.db.Create(ctx, &model.Host{Name: name, Addresses: s.cfg.Addresses})
		if err == nil {
			s.hostID = h.GetMeta().ID
			return nil
		}
		if attempt > 3 { // another agent with our name raced us: list again
			return fmt.Errorf("register host %q: %w", name, err)
		}
	}
}

// grant takes a new lease and marks the host alive under it.
func (s *Session) grant(ctx context.Context) (nsdb.LeaseID, error) {
	lease, err := s.db.GrantLease(ctx, s.cfg.LeaseTTL)
	if err != nil {
		return 0, fmt.Errorf("grant the liveness lease: %w", err)
	}
	if err := s.db.SetHostAlive(ctx, s.hostID, lease); err != nil {
		return 0, fmt.Errorf("publish liveness: %w", err)
	}
	return lease, nil
}

// HostID is the host's id in the NSDB.
func (s *Session) HostID() string { return s.hostID }

// Lease is the current liveness lease: write the host's state under it.
func (s *Session) Lease() nsdb.LeaseID { return nsdb.LeaseID(s.lease.Load()) }

// OnLeaseChange registers fn, called on Run's goroutine with every new
// lease that replaces a lost one. Register before Run.
func (s *Session) OnLeaseChange(fn func(ctx context.Context, lease nsdb.LeaseID)) {
	s.mu.Lock()
	s.onChange = append(s.onChange, fn)
	s.mu.Unlock()
}

// Run keeps the lease alive until ctx is done, taking a new one whenever
// it is lost, so the host comes back alive by itself. When the NSDB
// refuses the host (its certificate was revoked: the server ended its
// lease and deleted its etcd user) Run returns an error, and the agent
// stops rather than forward on a topology it no longer receives.
func (s *Session) Run(ctx context.Context) error {
	regrant := backoff.Policy{Base: 250 * time.Millisecond, Max: time.Second}
	for {
		err := s.db.KeepLeaseAlive(ctx, s.Lease())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.cfg.Log.Warn("liveness lease unanswered; resuming it", "err", err)
		if err := s.resume(ctx, regrant); err == nil {
			s.cfg.Log.Info("liveness lease resumed", "host_id", s.hostID)
			continue
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		s.cfg.Log.Warn("liveness lease lost; registering again")
		var lease nsdb.LeaseID
		var refused error
		rctx, stop := context.WithCancel(ctx)
		err = regrant.Retry(rctx, func(ctx context.Context) (err error) {
			lease, err = s.grant(ctx)
			if nsdb.IsPermissionDenied(err) {
				refused = err
				stop()
			}
			return err
		}, func(attempt int, err error) {
			s.cfg.Log.Warn("cannot take a new liveness lease; retrying", "attempt", attempt, "err", err)
		})
		stop()
		if refused != nil {
			return fmt.Errorf("the NSDB refuses host %s (was it revoked?): %w", s.hostID, refused)
		}
		if err != nil {
			return err
		}
		s.lease.Store(int64(lease))
		s.cfg.Log.Info("liveness lease renewed", "host_id", s.hostID)
		s.mu.Lock()
		fns := s.onChange
		s.mu.Unlock()
		for _, fn := range fns {
			fn(ctx, lease)
		}
	}
}

// resume tries the current lease until the NSDB answers: nil when it
// still holds it, an error wrapping nsdb.ErrLeaseGone when not (or ctx's).
// Each try is bounded, so that an NSDB that comes back is asked again at
// once rather than after a request stuck on the dead one.
func (s *Session) resume(ctx context.Context, p backoff.Policy) error {
	var gone error
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	err := p.Retry(rctx, func(ctx context.Context) error {
		tctx, cancel := context.WithTimeout(ctx, max(s.cfg.LeaseTTL/2, time.Second))
		defer cancel()
		err := s.db.ResumeLease(tctx, s.Lease())
		if errors.Is(err, nsdb.ErrLeaseGone) || nsdb.IsPermissionDenied(err) {
			gone = err
			stop()
		}
		return err
	}, nil)
	if gone != nil {
		return gone
	}
	return err
}
