package nsdb

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// LeaseID names an etcd lease. Agents keep their host's liveness key, and
// every key of their runtime state, under one lease: when the agent dies,
// etcd deletes them all after the lease's TTL.
type LeaseID = clientv3.LeaseID

// NoLease writes a key that no lease ends.
const NoLease = clientv3.NoLease

// Dial connects to the etcd cluster at endpoints and returns a store that
// owns the connection: Close closes it.
func Dial(endpoints []string, tlsConfig *tls.Config) (*Store, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: tlsConfig,
		Logger: zap.NewNop()}) // the client logs every retried call at warn
	if err != nil {
		return nil, fmt.Errorf("connect to the NSDB %v: %w", endpoints, err)
	}
	return &Store{cli: cli, owned: true}, nil
}

// Close closes the connection of a store made by Dial; a store made by
// New leaves its client to the caller.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	return s.cli.Close()
}

// GrantLease grants a lease of ttl, rounded up to whole seconds.
func (s *Store) GrantLease(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	g, err := s.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("nsdb: grant a lease: %w", err)
	}
	return g.ID, nil
}

// KeepLeaseAlive refreshes lease until ctx is done, returning ctx's
// error, or until the lease is lost (it expired while etcd was
// unreachable, or was revoked), returning an error that says so.
func (s *Store) KeepLeaseAlive(ctx context.Context, lease LeaseID) error {
	ch, err := s.cli.KeepAlive(ctx, lease)
	if err != nil {
		return fmt.Errorf("nsdb: keep lease %x alive: %w", int64(lease), err)
	}
	for range ch {
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("nsdb: lease %x lost", int64(lease))
}

// RevokeLease ends lease now: every key written under it is deleted.
func (s *Store) RevokeLease(ctx context.Context, lease LeaseID) error {
	if _, err := s.cli.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("nsdb: revoke lease %x: %w", int64(lease), err)
	}
	return nil
}

// withLease is the put option of a key kept under lease (none for NoLease).
func withLease(lease LeaseID) []clientv3.OpOption {
	if lease == NoLease {
		return nil
	}
	return []clientv3.OpOption{clientv3.WithLease(lease)}
}
