package nsdbmem

import (
	"context"
	"fmt"
	"strings"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// PutLearnedMAC publishes a learned MAC under lease.
func (s *Store) PutLearnedMAC(ctx context.Context, m nsdb.LearnedMAC, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(macP+strings.TrimPrefix(m.Key(), nsdb.MACPrefix), m, lease)
}

// LearnedMACs lists the learned MACs.
func (s *Store) LearnedMACs(ctx context.Context) ([]nsdb.LearnedMAC, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []nsdb.LearnedMAC
	for k, e := range s.keys {
		if strings.HasPrefix(k, macP) {
			out = append(out, e.value.(nsdb.LearnedMAC))
		}
	}
	return out, nil
}

// WatchLearnedMACs delivers the MAC tables like nsdb.Store.WatchLearnedMACs.
func (s *Store) WatchLearnedMACs(ctx context.Context, fn func(nsdb.LearnedMACBatch) error) error {
	return s.follow(ctx, macP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.LearnedMACBatch{Reset: true, Rev: rev}
			for _, e := range snap {
				b.Put = append(b.Put, e.value.(nsdb.LearnedMAC))
			}
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.LearnedMACBatch{Rev: rev}
			for _, c := range cs {
				if c.value != nil {
					b.Put = append(b.Put, c.value.(nsdb.LearnedMAC))
				} else {
					b.Deleted = append(b.Deleted, c.prev.(nsdb.LearnedMAC))
				}
			}
			return fn(b)
		})
}

// PutLearnedNeighbor publishes a router's learned neighbor under lease.
func (s *Store) PutLearnedNeighbor(ctx context.Context, n nsdb.LearnedNeighbor, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(neighborP+strings.TrimPrefix(n.Key(), nsdb.NeighborPrefix), n, lease)
}

// WatchLearnedNeighbors delivers the neighbor tables like
// nsdb.Store.WatchLearnedNeighbors (new entries only after the Reset).
func (s *Store) WatchLearnedNeighbors(ctx context.Context, fn func(nsdb.LearnedNeighborBatch) error) error {
	return s.follow(ctx, neighborP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.LearnedNeighborBatch{Reset: true, Rev: rev}
			for _, e := range snap {
				b.Entries = append(b.Entries, e.value.(nsdb.LearnedNeighbor))
			}
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.LearnedNeighborBatch{Rev: rev}
			for _, c := range cs {
				if c.value != nil {
					b.Entries = append(b.Entries, c.value.(nsdb.LearnedNeighbor))
				}
			}
			if len(b.Entries) == 0 {
				return nil
			}
			return fn(b)
		})
}

// PutMemberStatus records a pool member's health under lease, if the
// member exists.
func (s *Store) PutMemberStatus(ctx context.Context, memberID, status string, lease nsdb.LeaseID) error {
	if !nsdb.ValidMemberStatus(status) {
		return &model.FieldError{Field: "status", Msg: fmt.Sprintf("%q is not one of up, down, no_monitor", status)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[objKey(model.PoolMemberKind, memberID)] == nil {
		return fmt.Errorf("pool-member %s does not exist: %w", memberID, model.ErrNotFound)
	}
	return s.putLocked(memberP+memberID, status, lease)
}

// TakeBackMemberStatus deletes a member's health if lease wrote it.
func (s *Store) TakeBackMemberStatus(ctx context.Context, memberID string, lease nsdb.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.keys[memberP+memberID]; e != nil && e.lease == lease {
		s.deleteLocked(memberP + memberID)
	}
	return nil
}

// MemberStatuses returns every member's health.
func (s *Store) MemberStatuses(ctx context.Context) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, e := range s.keys {
		if id, ok := strings.CutPrefix(k, memberP); ok {
			out[id] = e.value.(string)
		}
	}
	return out, nil
}

// WatchMemberStatus delivers members' health like
// nsdb.Store.WatchMemberStatus.
func (s *Store) WatchMemberStatus(ctx context.Context, fn func(nsdb.MemberStatusBatch) error) error {
	return s.follow(ctx, memberP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.MemberStatusBatch{Reset: true, Status: map[string]string{}, Rev: rev}
			for k, e := range snap {
				b.Status[strings.TrimPrefix(k, memberP)] = e.value.(string)
			}
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.MemberStatusBatch{Status: map[string]string{}, Rev: rev}
			for _, c := range cs {
				st, _ := c.value.(string)
				b.Status[strings.TrimPrefix(c.key, memberP)] = st
			}
			return fn(b)
		})
}

// PutNATTranslations publishes a host's NAT bindings under lease.
func (s *Store) PutNATTranslations(ctx context.Context, hostID string, lease nsdb.LeaseID, t *agentstatus.NATTranslations) error {
	cp := *t
	cp.Translations = append([]agentstatus.NATTranslation(nil), t.Translations...)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(natP+hostID, &cp, lease)
}

// NATTranslations returns what hostID published, nil if nothing.
func (s *Store) NATTranslations(hostID string) *agentstatus.NATTranslations {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.keys[natP+hostID]; e != nil {
		return e.value.(*agentstatus.NATTranslations)
	}
	return nil
}

// PutDatapathStatus publishes an agent's datapath status under lease.
func (s *Store) PutDatapathStatus(ctx context.Context, st *agentstatus.Datapath, lease nsdb.LeaseID) error {
	cp := *st
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(statusP+st.HostID, &cp, lease)
}

// DatapathStatus returns what the agent on hostID published; it wraps
// model.ErrNotFound when nothing is.
func (s *Store) DatapathStatus(ctx context.Context, hostID string) (*agentstatus.Datapath, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.keys[statusP+hostID]; e != nil {
		return e.value.(*agentstatus.Datapath), nil
	}
	return nil, fmt.Errorf("host %s has no running agent: %w", hostID, model.ErrNotFound)
}
