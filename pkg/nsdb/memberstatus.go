package nsdb

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
)

// memberStatePrefix holds the pool members' health as the agents' health
// monitors see it: one key per checking host and member,
// state/pool-member/<hostID>/<memberID>, whose value is model.MemberUp,
// MemberDown or MemberNoMonitor. PoolMember.Status is derived from it the
// way Host.Alive is derived from the host's alive key. Each checker writes
// under its own host id (RBAC lets it write nothing else); when the
// checking moves from one host to another both may hold a status for a
// while, and readers take the newest (HostEntries).
const memberStatePrefix = root + "state/pool-member/"

// MemberStatusKey is where host hostID keeps a pool member's health.
func MemberStatusKey(hostID, memberID string) string {
	return memberStatePrefix + hostID + "/" + memberID
}

func parseMemberStatusKey(key string) (host, member string, ok bool) {
	host, member, ok = hostScoped(key, memberStatePrefix)
	return host, member, ok && !strings.Contains(member, "/")
}

// ValidMemberStatus reports whether s is a status a monitor may write.
func ValidMemberStatus(s string) bool {
	return s == model.MemberUp || s == model.MemberDown || s == model.MemberNoMonitor
}

// PutMemberStatus records a pool member's health as host hostID checks
// it. The writer (the health monitor of an agent) should pass its
// liveness lease: when it dies the status goes with it and the member
// counts as unchecked (usable) rather than frozen in the last state a
// dead checker saw. lease 0 writes a key without lease. The write happens
// only if the member exists, so a status never outlives a deleted member
// by racing its deletion.
func (s *Store) PutMemberStatus(ctx context.Context, hostID, memberID, status string, lease LeaseID) error {
	if !model.IsUUID(memberID) {
		return notFound(model.PoolMemberKind, memberID)
	}
	if !validHostID(hostID) {
		return fmt.Errorf("nsdb: status of pool member %s: host id %q: %w", memberID, hostID, model.ErrNotFound)
	}
	if !ValidMemberStatus(status) {
		return &model.FieldError{Field: "status", Msg: fmt.Sprintf("%q is not one of up, down, no_monitor", status)}
	}
	obj := objKey(model.PoolMemberKind, memberID)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(obj), ">", 0)).
		Then(clientv3.OpPut(MemberStatusKey(hostID, memberID), status, withLease(lease)...)).
		Commit()
	if err != nil {
		return fmt.Errorf("nsdb: write status of pool member %s: %w", memberID, err)
	}
	if !resp.Succeeded {
		return notFound(model.PoolMemberKind, memberID)
	}
	return nil
}

// TakeBackMemberStatus deletes host hostID's status of a member: a
// checker that is no longer responsible for the member takes back its
// verdict (another checker's stays).
func (s *Store) TakeBackMemberStatus(ctx context.Context, hostID, memberID string) error {
	if _, err := s.cli.Delete(ctx, MemberStatusKey(hostID, memberID)); err != nil {
		return fmt.Errorf("nsdb: take back the status of pool member %s: %w", memberID, err)
	}
	return nil
}

// MemberStatus reads one member's health; "" when no monitor wrote one.
func (s *Store) MemberStatus(ctx context.Context, memberID string) (string, error) {
	all, err := s.MemberStatuses(ctx)
	return all[memberID], err
}

// MemberStatuses returns every member's health that a monitor wrote (the
// newest, when several hosts wrote one).
func (s *Store) MemberStatuses(ctx context.Context) (map[string]string, error) {
	kvs, _, err := s.rangeAll(ctx, memberStatePrefix, 0, false)
	if err != nil {
		return nil, err
	}
	var merged HostEntries[string, string]
	return memberStatuses(&merged, kvs), nil
}

func memberStatuses(merged *HostEntries[string, string], kvs []*kv) map[string]string {
	merged.Reset()
	for _, kv := range kvs {
		if host, id, ok := parseMemberStatusKey(string(kv.Key)); ok {
			merged.Put(id, host, string(kv.Value), kv.ModRevision)
		}
	}
	out := make(map[string]string, len(kvs))
	merged.Each(func(id, st string) { out[id] = st })
	return out
}

// MemberStatusBatch is what a member-status watcher receives. On Reset,
// Status holds every written status and replaces what the receiver had;
// otherwise it holds the changes, "" for a status deleted or expired.
type MemberStatusBatch struct {
	Reset  bool
	Status map[string]string
	Rev    int64
}

// WatchMemberStatus delivers members' health to fn like WatchHostLiveness
// delivers liveness: a Reset first, then changes, until ctx is done or fn
// fails.
func (s *Store) WatchMemberStatus(ctx context.Context, fn func(MemberStatusBatch) error) error {
	var merged HostEntries[string, string]
	return s.follow(ctx, memberStatePrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			return fn(MemberStatusBatch{Reset: true, Status: memberStatuses(&merged, kvs), Rev: rev})
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := MemberStatusBatch{Status: map[string]string{}, Rev: rev}
			for _, ev := range evs {
				host, id, ok := parseMemberStatusKey(string(ev.Kv.Key))
				if !ok {
					continue
				}
				if ev.Type == mvccpb.PUT {
					if w, changed := merged.Put(id, host, string(ev.Kv.Value), ev.Kv.ModRevision); changed {
						b.Status[id] = w
					}
				} else if w, _, changed, _ := merged.Delete(id, host); changed {
					b.Status[id] = w // "" when no host has one
				}
			}
			if len(b.Status) == 0 {
				return nil
			}
			return fn(b)
		})
}
