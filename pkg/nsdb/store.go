package nsdb

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
)

// Store is the NSDB. It is safe for concurrent use and holds no state of its
// own beyond the client, so any number of servers can share one etcd.
type Store struct {
	cli   *clientv3.Client
	owned bool // made by Dial: Close closes cli
}

// New returns a store over an etcd client (embedded or external alike).
func New(cli *clientv3.Client) *Store { return &Store{cli: cli} }

// Client is the underlying etcd client, for what the store does not wrap
// (leases for host liveness, elections).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Init makes sure the NSDB holds this binary's schema version, writing it
// into an empty NSDB. An NSDB of another version is refused rather than
// misread.
func (s *Store) Init(ctx context.Context) error {
	want := strconv.Itoa(SchemaVersion)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(schemaKey), "=", 0)).
		Then(clientv3.OpPut(schemaKey, want)).
		Else(clientv3.OpGet(schemaKey)).
		Commit()
	if err != nil {
		return fmt.Errorf("nsdb: read the schema version: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && string(kvs[0].Value) == want {
		return nil
	}
	have := "an unreadable value"
	if len(kvs) == 1 {
		have = fmt.Sprintf("version %q", kvs[0].Value)
	}
	return fmt.Errorf("nsdb: the NSDB holds schema %s but this binary supports version %s; run a nagare release that matches it (or point it at another etcd)", have, want)
}

// Ping checks that etcd answers a linearizable read (which needs a leader)
// within two seconds; /healthz reports it.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.cli.Get(ctx, schemaKey); err != nil {
		return fmt.Errorf("nsdb: etcd does not answer: %w", err)
	}
	return nil
}

// Get returns an object with its Revision; a missing one is an error
// wrapping model.ErrNotFound. Derived fields are left to the caller.
func (s *Store) Get(ctx context.Context, k *model.Kind, id string) (model.Object, error) {
	var o model.Object
	_, err := s.view(ctx, func(tx *Tx) (err error) {
		o, err = tx.Get(k, id)
		return err
	})
	return o, err
}

// List returns the objects of k in creation order, those whose field (a
// JSON name) has the text value when field is not "" (see Tx.List), and
// the revision of the snapshot they come from.
func (s *Store) List(ctx context.Context, k *model.Kind, field, value string) ([]model.Object, int64, error) {
	var objs []model.Object
	rev, err := s.view(ctx, func(tx *Tx) (err error) {
		objs, err = tx.List(k, field, value)
		return err
	})
	return objs, rev, err
}

// Create creates an object under the model's rules (see Tx.Create) and
// returns it as stored, with its Revision. o itself is not modified.
func (s *Store) Create(ctx context.Context, o model.Object) (model.Object, error) {
	var out model.Object
	rev, err := s.Update(ctx, func(tx *Tx) (err error) {
		out, err = tx.Create(o)
		return err
	})
	if err != nil {
		return nil, err
	}
	out.GetMeta().Revision = rev
	return out, nil
}

// Modify changes an object under the model's rules (see Tx.Modify) and
// returns it as stored. A change that leaves the object as it was writes
// nothing and keeps its revision.
func (s *Store) Modify(ctx context.Context, k *model.Kind, id string, ifRevision int64, mutate func(model.Object) error) (model.Object, error) {
	var (
		out   model.Object
		wrote bool
	)
	rev, err := s.Update(ctx, func(tx *Tx) (err error) {
		out, err = tx.Modify(k, id, ifRevision, mutate)
		wrote = err == nil && tx.wrote(objKey(k, id))
		return err
	})
	if err != nil {
		return nil, err
	}
	if wrote {
		out.GetMeta().Revision = rev
	}
	return out, nil
}

// Remove deletes an object with the on-delete policies of the references
// to it (see Tx.Delete), checking ifRevision when it is not 0.
func (s *Store) Remove(ctx context.Context, k *model.Kind, id string, ifRevision int64) error {
	_, err := s.Update(ctx, func(tx *Tx) error { return tx.Remove(k, id, ifRevision) })
	return err
}

// CountReferrers counts the references that objects of kind src hold to
// the object id, from the reverse index alone: one count-only read, however
// many there are (quotas count a project's ports this way). An object that
// references id through two fields counts twice. The count is a snapshot,
// not part of any transaction.
func (s *Store) CountReferrers(ctx context.Context, id string, src *model.Kind) (int64, error) {
	if !model.IsUUID(id) {
		return 0, nil
	}
	resp, err := s.cli.Get(ctx, refTargetPrefix(id)+src.Name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("nsdb: count references to %s: %w", id, err)
	}
	return resp.Count, nil
}

// SetHostAlive marks a host alive for as long as lease lives. The agent
// owns the lease and keeps it alive; when the agent dies the key expires
// and watchers see the host go.
func (s *Store) SetHostAlive(ctx context.Context, hostID string, lease LeaseID) error {
	if !model.IsUUID(hostID) {
		return notFound(model.HostKind, hostID)
	}
	if _, err := s.cli.Put(ctx, hostAliveKey(hostID), "", clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("nsdb: mark host %s alive: %w", hostID, err)
	}
	return nil
}

// AliveHosts returns the ids of hosts whose agents hold their lease.
func (s *Store) AliveHosts(ctx context.Context) (map[string]bool, error) {
	kvs, _, err := s.rangeAll(ctx, hostStatePrefix, 0, true)
	if err != nil {
		return nil, err
	}
	alive := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if id, ok := parseHostAliveKey(string(kv.Key)); ok {
			alive[id] = true
		}
	}
	return alive, nil
}

func parseHostAliveKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, hostStatePrefix)
	if !ok {
		return "", false
	}
	id, tail, ok := strings.Cut(rest, "/")
	return id, ok && tail == "alive"
}

// HostAlive reports, in a transaction, whether host hostID's agent holds
// its lease; the commit fails if that changes meanwhile.
func (tx *Tx) HostAlive(hostID string) (bool, error) {
	if !model.IsUUID(hostID) {
		return false, nil
	}
	_, exists, err := tx.get(hostAliveKey(hostID))
	return exists, err
}

// AliveHosts lists, in a transaction, the hosts whose agents hold their
// lease, sorted; the commit fails if a host comes or goes meanwhile.
func (tx *Tx) AliveHosts() ([]string, error) {
	es, err := tx.scan(hostStatePrefix, true)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if id, ok := parseHostAliveKey(e.key); ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}
