package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
)

// NATTranslationsPrefix holds each agent's NAT bindings, one key per host
// written under the host's lease (gone when the agent dies): what
// `show ip nat translations` lists. Beside the port blocks (NATPrefix),
// whose device segment is a UUID and never "translations".
const NATTranslationsPrefix = NATPrefix + "translations/"

// NATTranslationsKey is where the agent on hostID publishes its bindings.
func NATTranslationsKey(hostID string) string { return NATTranslationsPrefix + hostID }

// MaxNATTranslations bounds the bindings one host publishes: a snapshot
// must stay well under etcd's request limit (1.5 MiB; a record is about
// 300 bytes of JSON). The rest are counted in Truncated.
const MaxNATTranslations = 2048

// The NAT translation shapes live in pkg/agentstatus (see status.go).
type (
	NATTranslation  = agentstatus.NATTranslation
	NATTranslations = agentstatus.NATTranslations
)

// PutNATTranslations publishes the bindings of hostID under lease.
func (s *Store) PutNATTranslations(ctx context.Context, hostID string, lease LeaseID, t *NATTranslations) error {
	if !model.IsUUID(hostID) {
		return notFound(model.HostKind, hostID)
	}
	if len(t.Translations) > MaxNATTranslations {
		t.Truncated += len(t.Translations) - MaxNATTranslations
		t.Translations = t.Translations[:MaxNATTranslations]
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("nsdb: encode NAT translations of host %s: %w", hostID, err)
	}
	if _, err := s.cli.Put(ctx, NATTranslationsKey(hostID), string(b), withLease(lease)...); err != nil {
		return fmt.Errorf("nsdb: publish NAT translations of host %s: %w", hostID, err)
	}
	return nil
}

// ListNATTranslations returns every host's published bindings, with each
// record's HostID set, in key (host id) order. A malformed value is
// skipped rather than failing the whole list (a newer agent's format).
func (s *Store) ListNATTranslations(ctx context.Context) ([]NATTranslations, error) {
	resp, err := s.cli.Get(ctx, NATTranslationsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("nsdb: read NAT translations: %w", err)
	}
	out := make([]NATTranslations, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		host := strings.TrimPrefix(string(kv.Key), NATTranslationsPrefix)
		var t NATTranslations
		if json.Unmarshal(kv.Value, &t) != nil || strings.Contains(host, "/") {
			continue
		}
		t.HostID = host
		for i := range t.Translations {
			t.Translations[i].HostID = host
		}
		out = append(out, t)
	}
	return out, nil
}

// HostLease returns the lease that keeps hostID alive (the agent's current
// liveness lease), 0 when the host is not alive. Writers of the host's
// state that outlive a re-registration find the new lease here.
func (s *Store) HostLease(ctx context.Context, hostID string) (LeaseID, error) {
	resp, err := s.cli.Get(ctx, hostAliveKey(hostID))
	if err != nil {
		return 0, fmt.Errorf("nsdb: read the liveness of host %s: %w", hostID, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return LeaseID(resp.Kvs[0].Lease), nil
}
