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
	if m.Host == "" {
		return fmt.Errorf("learned MAC %s has no host: %w", m.MAC, model.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(macP+strings.TrimPrefix(m.Key(), nsdb.MACPrefix), m, lease)
}

// LearnedMACs lists the learned MACs, one per entry, the newest host's.
func (s *Store) LearnedMACs(ctx context.Context) ([]nsdb.LearnedMAC, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var merged nsdb.HostEntries[nsdb.MACEntry, nsdb.LearnedMAC]
	for k, e := range s.keys {
		if strings.HasPrefix(k, macP) {
			m := e.value.(nsdb.LearnedMAC)
			merged.Put(m.Entry(), m.Host, m, e.modRev)
		}
	}
	var out []nsdb.LearnedMAC
	merged.Each(func(_ nsdb.MACEntry, m nsdb.LearnedMAC) { out = append(out, m) })
	return out, nil
}

// WatchLearnedMACs delivers the MAC tables like nsdb.Store.WatchLearnedMACs,
// merging the hosts' entries the same way.
func (s *Store) WatchLearnedMACs(ctx context.Context, fn func(nsdb.LearnedMACBatch) error) error {
	var merged nsdb.HostEntries[nsdb.MACEntry, nsdb.LearnedMAC]
	return s.follow(ctx, macP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.LearnedMACBatch{Reset: true, Rev: rev}
			for _, e := range snap {
				m := e.value.(nsdb.LearnedMAC)
				merged.Put(m.Entry(), m.Host, m, e.modRev)
			}
			merged.Each(func(_ nsdb.MACEntry, m nsdb.LearnedMAC) { b.Put = append(b.Put, m) })
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.LearnedMACBatch{Rev: rev}
			for _, c := range cs {
				if c.value != nil {
					m := c.value.(nsdb.LearnedMAC)
					if w, changed := merged.Put(m.Entry(), m.Host, m, c.rev); changed {
						b.Put = append(b.Put, w)
					}
					continue
				}
				m := c.prev.(nsdb.LearnedMAC)
				switch w, present, changed, before := merged.Delete(m.Entry(), m.Host); {
				case !changed:
				case present:
					b.Put = append(b.Put, w)
				default:
					b.Deleted = append(b.Deleted, before)
				}
			}
			if len(b.Put)+len(b.Deleted) == 0 {
				return nil
			}
			return fn(b)
		})
}

// PutLearnedNeighbor publishes a router's learned neighbor under lease.
func (s *Store) PutLearnedNeighbor(ctx context.Context, n nsdb.LearnedNeighbor, lease nsdb.LeaseID) error {
	if n.Host == "" {
		return fmt.Errorf("neighbor %s has no host: %w", n.IP, model.ErrNotFound)
	}
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

// memberKey is where host keeps its status of a member (memberP/host/member).
func memberKey(host, member string) string { return memberP + host + "/" + member }

func parseMemberKey(k string) (host, member string) {
	host, member, _ = strings.Cut(strings.TrimPrefix(k, memberP), "/")
	return host, member
}

// PutMemberStatus records a pool member's health as host checks it,
// under lease, if the member exists.
func (s *Store) PutMemberStatus(ctx context.Context, host, memberID, status string, lease nsdb.LeaseID) error {
	if !nsdb.ValidMemberStatus(status) {
		return &model.FieldError{Field: "status", Msg: fmt.Sprintf("%q is not one of up, down, no_monitor", status)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[objKey(model.PoolMemberKind, memberID)] == nil {
		return fmt.Errorf("pool-member %s does not exist: %w", memberID, model.ErrNotFound)
	}
	if host == "" {
		return fmt.Errorf("status of pool-member %s has no host: %w", memberID, model.ErrNotFound)
	}
	return s.putLocked(memberKey(host, memberID), status, lease)
}

// TakeBackMemberStatus deletes host's status of a member.
func (s *Store) TakeBackMemberStatus(ctx context.Context, host, memberID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(memberKey(host, memberID))
	return nil
}

// MemberStatuses returns every member's health (the newest host's).
func (s *Store) MemberStatuses(ctx context.Context) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var merged nsdb.HostEntries[string, string]
	for k, e := range s.keys {
		if strings.HasPrefix(k, memberP) {
			host, id := parseMemberKey(k)
			merged.Put(id, host, e.value.(string), e.modRev)
		}
	}
	out := map[string]string{}
	merged.Each(func(id, st string) { out[id] = st })
	return out, nil
}

// WatchMemberStatus delivers members' health like
// nsdb.Store.WatchMemberStatus.
func (s *Store) WatchMemberStatus(ctx context.Context, fn func(nsdb.MemberStatusBatch) error) error {
	var merged nsdb.HostEntries[string, string]
	return s.follow(ctx, memberP,
		func(snap map[string]*entry, rev int64) error {
			b := nsdb.MemberStatusBatch{Reset: true, Status: map[string]string{}, Rev: rev}
			for k, e := range snap {
				host, id := parseMemberKey(k)
				merged.Put(id, host, e.value.(string), e.modRev)
			}
			merged.Each(func(id, st string) { b.Status[id] = st })
			return fn(b)
		},
		func(cs []change, rev int64) error {
			b := nsdb.MemberStatusBatch{Status: map[string]string{}, Rev: rev}
			for _, c := range cs {
				host, id := parseMemberKey(c.key)
				if c.value != nil {
					if w, changed := merged.Put(id, host, c.value.(string), c.rev); changed {
						b.Status[id] = w
					}
				} else if w, _, changed, _ := merged.Delete(id, host); changed {
					b.Status[id] = w
				}
			}
			if len(b.Status) == 0 {
				return nil
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
