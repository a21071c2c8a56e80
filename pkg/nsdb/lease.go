package nsdb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
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
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(reconnect)},
		Logger:      zap.NewNop()}) // the client logs every retried call at warn
	if err != nil {
		return nil, fmt.Errorf("connect to the NSDB %v: %w", endpoints, err)
	}
	return &Store{cli: cli, owned: true}, nil
}

// reconnect is how often a client tries an unreachable member again.
// gRPC's default backs off to two minutes: after a 30 s outage of the
// whole cluster an agent would come back up to 17 s after etcd did, by
// which time etcd has expired its lease and its peers have stopped
// tunnelling to it. A second at most between tries keeps the reconnection
// well inside the lease's TTL plus the election timeout etcd adds to every
// lease when a leader takes office (so the host never looks dead), and
// costs an unreachable cluster one refused connection per second per
// client.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
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

// ErrLeaseGone says the NSDB no longer holds a lease: it expired, or was
// revoked.
var ErrLeaseGone = errors.New("lease gone")

// ResumeLease refreshes lease once. The client gives a lease up when the
// NSDB has not answered its keepalives within the TTL, but the NSDB itself
// may still hold it: etcd cannot expire leases while it is down, and
// extends every lease by its TTL and an election timeout when a leader
// takes office. A host that resumes its lease then never looked dead to
// anyone. It returns an error wrapping ErrLeaseGone when the lease is no
// more (then take a new one), another error when the NSDB did not answer.
func (s *Store) ResumeLease(ctx context.Context, lease LeaseID) error {
	_, err := s.cli.KeepAliveOnce(ctx, lease)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("nsdb: resume lease %x: %w", int64(lease), ErrLeaseGone)
	default:
		return fmt.Errorf("nsdb: resume lease %x: %w", int64(lease), err)
	}
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
