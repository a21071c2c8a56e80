package nsdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/internal/backoff"
	"github.com/nagare/nagare/pkg/model"
)

const (
	// maxAttempts bounds how often Update reruns a function whose commit lost
	// to concurrent writers. Conflicts need writers touching the same keys
	// (rules of one chain, the same peer), so a handful of attempts with
	// backoff settles all but pathological contention.
	maxAttempts = 12
	// rangeKeyCompares: a range read of at most this many keys also
	// compares each key's ModRevision, which catches keys deleted after the
	// read (the prefix compare only sees keys modified or created). Larger
	// ranges get the prefix compare only, so they do not exhaust etcd's
	// operation limit.
	rangeKeyCompares = 64
	// pageSize bounds one range response, so listing a large kind does not
	// make etcd build one huge message.
	pageSize = 2000
	// opsPerRead bounds the gets batched into one read-only etcd
	// transaction; 128 is etcd's default operation limit, so this works
	// against external clusters with default settings too.
	opsPerRead = 128
)

// Tx is a transaction of the store. It implements model.Tx, so the model's
// write rules run in it. A Tx is used by one goroutine and only inside the
// function given to Update.
type Tx struct {
	s        *Store
	ctx      context.Context
	readOnly bool             // views: no reads recorded, writes refused
	rev      int64            // snapshot revision; 0 before the first read
	reads    map[string]*read // keys read from etcd
	ranges   map[string]bool  // prefixes read from etcd
	writes   map[string]*write
	seq      int

	refChecks []refCheck // references written, checked at commit

	// optimistic: assert instead of read where Update allows (see there).
	optimistic bool
	asserts    map[string]bool // key → must exist (true) or be absent (false) at commit
}

var _ model.Tx = (*Tx)(nil)

type kv = mvccpb.KeyValue

// retries counts reruns of transactions that lost to concurrent writers
// (benchmarks report it; it will become a metric).
var retries atomic.Int64

// Retries is how many transactions of this process have been rerun
// because a compare or an assertion failed at commit (see Update).
func Retries() int64 { return retries.Load() }

type read struct {
	value             []byte
	modRev, createRev int64 // 0, 0: absent
	check             bool  // compared at commit
}

type write struct {
	value []byte
	del   bool
	seq   int
	// obj is the decoding of value when Put wrote an object: remembered
	// (nsdb.decoded) at the commit's revision, so that the watch events
	// and later reads of this write need not decode it.
	obj model.Object
}

func newTx(s *Store, ctx context.Context, readOnly bool) *Tx {
	return &Tx{s: s, ctx: ctx, readOnly: readOnly, reads: map[string]*read{}, ranges: map[string]bool{},
		writes: map[string]*write{}, asserts: map[string]bool{}}
}

// Update runs fn in a transaction and commits its writes in one etcd
// transaction, guarded by compares on everything fn read. If a concurrent
// writer changed what fn read, fn runs again from scratch (so fn must not
// keep state across calls, and must build objects afresh each time). An
// error from fn aborts without writing and is returned as is. When the
// transaction keeps losing, Update returns a *model.ConflictError.
//
// rev is the revision of the commit: every object written has it as its
// revision. A transaction that wrote nothing returns the snapshot revision.
//
// The first attempt is optimistic about facts it would otherwise spend a
// round trip each to read: that a referenced object exists, that a unique
// value is free, that a freshly generated id is unused. It asserts them in
// the commit's compares instead. If an assertion fails, the next attempt
// reads them and reports exactly what is wrong. Creating a port thus costs
// two round trips (its tunnel key, the commit) instead of four.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) (rev int64, err error) {
	for attempt := 1; ; attempt++ {
		tx := newTx(s, ctx, false)
		tx.optimistic = attempt == 1
		err := fn(tx)
		if err == nil {
			var ok bool
			rev, ok, err = tx.commit()
			if err == nil && ok {
				return rev, nil
			}
		}
		// A snapshot older than the compaction point cannot be read any more:
		// a new attempt takes a new snapshot.
		if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
			return 0, err
		}
		retries.Add(1)
		if attempt == maxAttempts {
			return 0, model.Conflictf("the write kept conflicting with concurrent writes (%d attempts); try again", attempt)
		}
		if tx.optimistic && len(tx.asserts) > 0 {
			continue // likely a failed assertion, not a concurrent writer
		}
		if err := backoff.Sleep(ctx, backoff.Jitter(attempt, 2*time.Millisecond, 250*time.Millisecond)); err != nil {
			return 0, err
		}
	}
}

// View runs fn in a read-only transaction: one consistent snapshot of
// several reads, without the bookkeeping Update keeps for its compares.
// Writes fail. It returns the snapshot's revision.
func (s *Store) View(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	return s.view(ctx, fn)
}

// view runs fn in a read-only transaction: one consistent snapshot, no
// bookkeeping for compares.
func (s *Store) view(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	tx := newTx(s, ctx, true)
	if err := fn(tx); err != nil {
		return 0, err
	}
	return tx.rev, nil
}

// snapshot pins reads after the first to the first read's revision.
func (tx *Tx) snapshot(opts ...clientv3.OpOption) []clientv3.OpOption {
	if tx.rev != 0 {
		opts = append(opts, clientv3.WithRev(tx.rev))
	}
	return opts
}

func (tx *Tx) pin(rev int64) {
	if tx.rev == 0 {
		tx.rev = rev
	}
}

// read returns a key as stored at the snapshot, recording it for the commit.
func (tx *Tx) read(key string) (*read, error) {
	if r, ok := tx.reads[key]; ok {
		r.check = !tx.readOnly
		return r, nil
	}
	resp, err := tx.s.cli.Get(tx.ctx, key, tx.snapshot()...)
	if err != nil {
		return nil, fmt.Errorf("nsdb: read %s: %w", key, err)
	}
	tx.pin(resp.Header.Revision)
	r := &read{check: !tx.readOnly}
	if len(resp.Kvs) == 1 {
		kv := resp.Kvs[0]
		r.value, r.modRev, r.createRev = kv.Value, kv.ModRevision, kv.CreateRevision
	}
	tx.reads[key] = r
	return r, nil
}

// get returns a key as the transaction sees it: its own writes first.
func (tx *Tx) get(key string) (value []byte, exists bool, err error) {
	if w, ok := tx.writes[key]; ok {
		return w.value, !w.del, nil
	}
	if exists, ok := tx.asserts[key]; ok && !exists {
		if _, read := tx.reads[key]; !read {
			return nil, false, nil
		}
	}
	r, err := tx.read(key)
	if err != nil {
		return nil, false, err
	}
	return r.value, r.modRev != 0, nil
}

// probeAbsent is get for a key the caller expects to be absent (a unique
// value, a generated id): an optimistic transaction asserts it instead of
// reading it, unless the key is known already.
func (tx *Tx) probeAbsent(key string) (value []byte, exists bool, err error) {
	_, written := tx.writes[key]
	_, read := tx.reads[key]
	if tx.optimistic && !written && !read {
		tx.asserts[key] = false
		return nil, false, nil
	}
	return tx.get(key)
}

// prefetch reads many keys in one round trip (a read-only etcd transaction
// at the snapshot revision), so later gets of them are served locally.
func (tx *Tx) prefetch(keys []string) error {
	var todo []string
	for _, k := range keys {
		if _, ok := tx.reads[k]; !ok && tx.writes[k] == nil && !slices.Contains(todo, k) {
			todo = append(todo, k)
		}
	}
	for len(todo) > 0 {
		n := min(len(todo), opsPerRead)
		if tx.rev == 0 {
			n = 1 // the first read pins the snapshot
		}
		batch := todo[:n]
		todo = todo[n:]
		ops := make([]clientv3.Op, len(batch))
		for i, k := range batch {
			ops[i] = clientv3.OpGet(k, tx.snapshot()...)
		}
		resp, err := tx.s.cli.Txn(tx.ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("nsdb: read %d keys: %w", len(batch), err)
		}
		tx.pin(resp.Header.Revision)
		for i, k := range batch {
			r := &read{}
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
				r.value, r.modRev, r.createRev = kvs[0].Value, kvs[0].ModRevision, kvs[0].CreateRevision
			}
			tx.reads[k] = r // check stays false until the key is used
		}
	}
	return nil
}

// scan returns the keys under prefix as the transaction sees them, in key
// order, and records the range for the commit.
func (tx *Tx) scan(prefix string, keysOnly bool) ([]entry, error) {
	kvs, rev, err := tx.s.rangeAll(tx.ctx, prefix, tx.rev, keysOnly)
	if err != nil {
		return nil, err
	}
	tx.pin(rev)
	es := make([]entry, 0, len(kvs))
	if tx.readOnly {
		for _, kv := range kvs {
			es = append(es, entry{key: string(kv.Key), value: kv.Value, modRev: kv.ModRevision, createRev: kv.CreateRevision})
		}
		return es, nil
	}
	tx.ranges[prefix] = true
	check := len(kvs) <= rangeKeyCompares
	for _, kv := range kvs {
		key := string(kv.Key)
		if r, ok := tx.reads[key]; ok {
			r.check = r.check || check
		} else if !keysOnly {
			tx.reads[key] = &read{value: kv.Value, modRev: kv.ModRevision, createRev: kv.CreateRevision, check: check}
		} else if check {
			tx.reads[key] = &read{modRev: kv.ModRevision, createRev: kv.CreateRevision, check: true}
		}
		if w := tx.writes[key]; w != nil {
			if !w.del {
				es = append(es, entry{key: key, value: w.value, modRev: kv.ModRevision, createRev: kv.CreateRevision, own: true})
			}
			continue
		}
		es = append(es, entry{key: key, value: kv.Value, modRev: kv.ModRevision, createRev: kv.CreateRevision})
	}
	// Keys this transaction created under the prefix.
	var stored map[string]bool
	added := false
	for key, w := range tx.writes {
		if w.del || !strings.HasPrefix(key, prefix) {
			continue
		}
		if stored == nil {
			stored = make(map[string]bool, len(kvs))
			for _, kv := range kvs {
				stored[string(kv.Key)] = true
			}
		}
		if !stored[key] {
			es = append(es, entry{key: key, value: w.value, seq: w.seq, own: true})
			added = true
		}
	}
	if added {
		sort.Slice(es, func(i, j int) bool { return es[i].key < es[j].key })
	}
	return es, nil
}

// byCreation sorts entries in creation order: stored keys by their create
// revision, then keys this transaction created, in the order it did.
func byCreation(es []entry) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.createRev == 0) != (b.createRev == 0) {
			return b.createRev == 0
		}
		if a.createRev != b.createRev {
			return a.createRev < b.createRev
		}
		return a.seq < b.seq
	})
}

func (tx *Tx) put(key string, value []byte) {
	w := tx.pending(key)
	w.value, w.del, w.obj = value, false, nil
}

func (tx *Tx) del(key string) {
	w := tx.pending(key)
	w.value, w.del, w.obj = nil, true, nil
}

// pending returns key's pending write, creating it in sequence order the
// first time the transaction touches key.
func (tx *Tx) pending(key string) *write {
	w := tx.writes[key]
	if w == nil {
		tx.seq++
		w = &write{seq: tx.seq}
		tx.writes[key] = w
	}
	return w
}

func (tx *Tx) writable() error {
	if tx.readOnly {
		return errors.New("nsdb: write in a read-only view")
	}
	return nil
}

// commit writes the buffered writes in one etcd transaction guarded by the
// reads. ok is false when a guard failed (another writer got in first).
func (tx *Tx) commit() (rev int64, ok bool, err error) {
	if len(tx.writes) == 0 {
		return tx.rev, true, nil
	}
	if err := tx.checkRefs(); err != nil {
		return 0, false, err
	}
	var cmps []clientv3.Cmp
	for key, r := range tx.reads {
		switch {
		case !r.check:
		case r.modRev == 0:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		default:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", r.modRev))
		}
	}
	for key, exists := range tx.asserts {
		if exists {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), ">", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		}
	}
	for prefix := range tx.ranges {
		// Every key under the prefix, including ones created since, must
		// be unmodified since the snapshot. An empty range passes: etcd
		// compares against a zero key, whose ModRevision 0 is < rev+1.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(prefix), "<", tx.rev+1).WithPrefix())
	}
	keys := make([]string, 0, len(tx.writes))
	for k := range tx.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ops := make([]clientv3.Op, 0, len(keys))
	for _, k := range keys {
		if w := tx.writes[k]; w.del {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.value)))
		}
	}
	resp, err := tx.s.cli.Txn(tx.ctx).If(cmps...).Then(ops...).Commit()
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return 0, false, fmt.Errorf("nsdb: the change needs %d writes and %d checks in one etcd transaction, more than etcd's --max-txn-ops allows (nagare's embedded etcd allows 2048): %w", len(ops), len(cmps), err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return 0, false, fmt.Errorf("nsdb: the change (%d writes) is larger than etcd's --max-request-bytes: %w", len(ops), err)
	case err != nil:
		return 0, false, fmt.Errorf("nsdb: commit %d writes: %w", len(ops), err)
	}
	if resp.Succeeded {
		for _, k := range keys {
			if w := tx.writes[k]; w.obj != nil {
				w.obj.GetMeta().Revision = resp.Header.Revision
				decoded.put(k, resp.Header.Revision, w.value, w.obj)
			}
		}
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// wrote reports whether the transaction writes key.
func (tx *Tx) wrote(key string) bool { return tx.writes[key] != nil }

// rangeAll reads every key under prefix at rev (0: now), in pages. It
// returns the revision read at.
func (s *Store) rangeAll(ctx context.Context, prefix string, rev int64, keysOnly bool) ([]*kv, int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var out []*kv
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("nsdb: read %s: %w", prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision // later pages come from the same revision
		}
		if out == nil {
			out = make([]*kv, 0, len(resp.Kvs))
		}
		out = append(out, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
