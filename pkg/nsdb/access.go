package nsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Access control in the NSDB: etcd's authentication and RBAC, with users
// named by the CN of their client certificates (etcd's --client-cert-auth
// maps the CN to the user).
//
//   - root (the server's own certificate): etcd's root role, everything.
//     Only the server writes the topology (obj/, ref/, uniq/) and the
//     services' data (svc/: Neutron, identity, join tokens).
//   - host:<name> (an agent's certificate, issued when it joined): reads
//     the topology (obj/), the schema version and every host's runtime
//     state (state/: liveness, learned tables, NAT blocks, member health,
//     learned routes, BGP sessions),
//     and writes only keys under its own host id (HostPermissions). It
//     never reads svc/: password hashes, token keys, join tokens. What it
//     needs changed in the topology (its addresses, the uplinks and
//     health-check ports it takes over) it asks the server for, with its
//     certificate (package hostclaim).
//
// A revoked host loses its user and role at once: etcd checks the
// permission of every request against the current auth store, so the
// next request on an open connection is already refused.

// RootUser is etcd's root user, the server's identity.
const RootUser = "root"

// HostUser is the etcd user (and role) of host name: the CN of its
// certificate.
func HostUser(name string) string { return "host:" + name }

// Permission is one grant of an etcd role: the key alone, or the prefix
// when Prefix is set.
type Permission struct {
	Key    string
	Prefix bool
	Write  bool // read and write; otherwise read only
}

// hostPrefixes are the runtime state laid out <prefix><hostID>/…: a
// host's role writes its own subtree of each and reads everyone's. A new
// kind of host-written state adds its prefix here (and its readers merge
// the hosts' copies, see HostEntries).
var hostPrefixes = []string{hostStatePrefix, NATBlockPrefix, MACPrefix, NeighborPrefix, memberStatePrefix,
	LearnedRoutePrefix, bgpPeerStatePrefix}

// HostPermissions are the grants of host hostID's role.
func HostPermissions(hostID string) []Permission {
	ps := []Permission{
		{Key: objPrefix, Prefix: true},
		{Key: schemaKey},
		{Key: root + "state/", Prefix: true},
		{Key: DatapathStatusKey(hostID), Write: true},
		{Key: NATTranslationsKey(hostID), Write: true},
	}
	for _, p := range hostPrefixes {
		ps = append(ps, Permission{Key: p + hostID + "/", Prefix: true, Write: true})
	}
	return ps
}

// EnableAccessControl turns etcd's authentication on, with the root user
// and serverUser (the CN of the server's client certificate; no
// passwords: they authenticate by certificate) holding the root role. It
// is idempotent.
func (s *Store) EnableAccessControl(ctx context.Context, serverUser string) error {
	st, err := s.cli.AuthStatus(ctx)
	switch {
	case status.Code(err) == codes.Unimplemented:
		// etcd before 3.5 cannot tell: adding what exists and enabling
		// what is enabled are both harmless.
	case err != nil:
		return fmt.Errorf("nsdb: read etcd's auth status: %w", err)
	case st.Enabled:
		return nil
	}
	for _, u := range []string{RootUser, serverUser} {
		if err := s.ensureUser(ctx, u); err != nil {
			return err
		}
		if _, err := s.cli.UserGrantRole(ctx, u, "root"); err != nil {
			return fmt.Errorf("nsdb: grant etcd role root to user %s: %w", u, err)
		}
	}
	if _, err := s.cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("nsdb: enable etcd authentication: %w", err)
	}
	return nil
}

// ensureUser adds a password-less etcd user unless it exists.
func (s *Store) ensureUser(ctx context.Context, name string) error {
	_, err := s.cli.UserAddWithOptions(ctx, name, "", &clientv3.UserAddOptions{NoPassword: true})
	if err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("nsdb: add etcd user %s: %w", name, err)
	}
	return nil
}

// GrantHost gives host name (id hostID) its etcd user and role. Run again
// it replaces the role's grants with the current ones.
func (s *Store) GrantHost(ctx context.Context, name, hostID string) error {
	user := HostUser(name)
	if _, err := s.cli.RoleDelete(ctx, user); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("nsdb: reset etcd role %s: %w", user, err)
	}
	if _, err := s.cli.RoleAdd(ctx, user); err != nil {
		return fmt.Errorf("nsdb: add etcd role %s: %w", user, err)
	}
	for _, p := range HostPermissions(hostID) {
		end := ""
		if p.Prefix {
			end = clientv3.GetPrefixRangeEnd(p.Key)
		}
		typ := clientv3.PermissionType(authpb.READ)
		if p.Write {
			typ = clientv3.PermissionType(authpb.READWRITE)
		}
		if _, err := s.cli.RoleGrantPermission(ctx, user, p.Key, end, typ); err != nil {
			return fmt.Errorf("nsdb: grant %s on %s: %w", user, p.Key, err)
		}
	}
	if err := s.ensureUser(ctx, user); err != nil {
		return err
	}
	if _, err := s.cli.UserGrantRole(ctx, user, user); err != nil {
		return fmt.Errorf("nsdb: grant etcd role %s: %w", user, err)
	}
	return nil
}

// RevokeHost deletes host name's etcd user and role: its certificate
// authenticates nobody from the next request on.
func (s *Store) RevokeHost(ctx context.Context, name string) error {
	user := HostUser(name)
	if _, err := s.cli.UserDelete(ctx, user); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("nsdb: delete etcd user %s: %w", user, err)
	}
	if _, err := s.cli.RoleDelete(ctx, user); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("nsdb: delete etcd role %s: %w", user, err)
	}
	return nil
}

// IsPermissionDenied reports whether err is etcd refusing a request for
// lack of permission (or of a user).
func IsPermissionDenied(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserNotFound) ||
		err != nil && strings.Contains(err.Error(), rpctypes.ErrPermissionDenied.Error())
}

// revokedPrefix holds a key per revoked host, written by the server
// only: hosts read it (under state/) and cannot write it (it is not one
// of hostPrefixes).
const revokedPrefix = root + "state/revoked/"

// MarkHostRevoked records that host hostID was revoked, for good, where
// agents read it: a peer whose lease ends is cut at once if it was
// revoked, whatever its datapath still answers (pkg/agent/reach). It is
// written before the host's lease is ended (EndHostLease).
func (s *Store) MarkHostRevoked(ctx context.Context, hostID string) error {
	if _, err := s.cli.Put(ctx, revokedPrefix+hostID, ""); err != nil {
		return fmt.Errorf("nsdb: mark host %s revoked: %w", hostID, err)
	}
	return nil
}

// HostRevoked reports whether host hostID was revoked (MarkHostRevoked).
func (s *Store) HostRevoked(ctx context.Context, hostID string) (bool, error) {
	resp, err := s.cli.Get(ctx, revokedPrefix+hostID, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("nsdb: read whether host %s is revoked: %w", hostID, err)
	}
	return resp.Count > 0, nil
}

// EndHostLease revokes the lease that keeps host hostID alive: its alive
// key and every state key written under the lease go at once. A host that
// is not alive is left alone.
func (s *Store) EndHostLease(ctx context.Context, hostID string) error {
	resp, err := s.cli.Get(ctx, hostAliveKey(hostID))
	if err != nil {
		return fmt.Errorf("nsdb: read liveness of host %s: %w", hostID, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		return nil
	}
	if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("nsdb: end the lease of host %s: %w", hostID, err)
	}
	return nil
}
