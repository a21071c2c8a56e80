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
// monitors see it: one key per member whose value is model.MemberUp,
// MemberDown or MemberNoMonitor. PoolMember.Status is derived from it the
// way Host.Alive is derived from the host's alive key.
const memberStatePrefix = root + "state/pool-member/"

// MemberStatusKey is where a pool member's health status lives.
func MemberStatusKey(memberID string) string { return memberStatePrefix + memberID }

func parseMemberStatusKey(key string) (string, bool) {
	id, ok := strings.CutPrefix(key, memberStatePrefix)
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// ValidMemberStatus reports whether s is a status a monitor may write.
func ValidMemberStatus(s string) bool {
	return s == model.MemberUp || s == model.MemberDown || s == model.MemberNoMonitor
}

// PutMemberStatus records a pool member's health. The writer (the health
// monitor of an agent) should pass its liveness lease: when it dies the
// status goes with it and the member counts as unchecked (usable) rather
// than frozen in the last state a dead checker saw. lease 0 writes a key
// without lease. The write happens only if the member exists, so a status
// never outlives a deleted member by racing its deletion.
func (s *Store) PutMemberStatus(ctx context.Context, memberID, status string, lease LeaseID) error {
	if !model.IsUUID(memberID) {
		return notFound(model.PoolMemberKind, memberID)
	}
	if !ValidMemberStatus(status) {
		return &model.FieldError{Field: "status", Msg: fmt.Sprintf("%q is not one of up, down, no_monitor", status)}
	}
	obj := objKey(model.PoolMemberKind, memberID)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(obj), ">", 0)).
		Then(clientv3.OpPut(MemberStatusKey(memberID), status, withLease(lease)...)).
		Commit()
	if err != nil {
		return fmt.Errorf("nsdb: write status of pool member %s: %w", memberID, err)
	}
	if !resp.Succeeded {
		return notFound(model.PoolMemberKind, memberID)
	}
	return nil
}

// DeleteMemberStatus forgets a member's health (its monitor was removed).
func (s *Store) DeleteMemberStatus(ctx context.Context, memberID string) error {
	if _, err := s.cli.Delete(ctx, MemberStatusKey(memberID)); err != nil {
		return fmt.Errorf("nsdb: delete status of pool member %s: %w", memberID, err)
	}
	return nil
}

// TakeBackMemberStatus deletes a member's health if it is still the one
// written under lease: a checker that is no longer responsible for the
// member takes back its verdict, but not one another checker has written
// since.
func (s *Store) TakeBackMemberStatus(ctx context.Context, memberID string, lease LeaseID) error {
	key := MemberStatusKey(memberID)
	_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("nsdb: take back the status of pool member %s: %w", memberID, err)
	}
	return nil
}

// MemberStatus reads one member's health; "" when no monitor wrote one.
func (s *Store) MemberStatus(ctx context.Context, memberID string) (string, error) {
	resp, err := s.cli.Get(ctx, MemberStatusKey(memberID))
	if err != nil {
		return "", fmt.Errorf("nsdb: read status of pool member %s: %w", memberID, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// MemberStatuses returns every member's health that a monitor wrote.
func (s *Store) MemberStatuses(ctx context.Context) (map[string]string, error) {
	kvs, _, err := s.rangeAll(ctx, memberStatePrefix, 0, false)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		if id, ok := parseMemberStatusKey(string(kv.Key)); ok {
			out[id] = string(kv.Value)
		}
	}
	return out, nil
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
	return s.follow(ctx, memberStatePrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			b := MemberStatusBatch{Reset: true, Status: make(map[string]string, len(kvs)), Rev: rev}
			for _, kv := range kvs {
				if id, ok := parseMemberStatusKey(string(kv.Key)); ok {
					b.Status[id] = string(kv.Value)
				}
			}
			return fn(b)
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := MemberStatusBatch{Status: map[string]string{}, Rev: rev}
			for _, ev := range evs {
				if id, ok := parseMemberStatusKey(string(ev.Kv.Key)); ok {
					if ev.Type == mvccpb.PUT {
						b.Status[id] = string(ev.Kv.Value)
					} else {
						b.Status[id] = ""
					}
				}
			}
			return fn(b)
		})
}
