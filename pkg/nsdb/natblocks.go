package nsdb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/flowstate"
)

// NATBlockPrefix holds the NAT port blocks leased by hosts, one key per
// block under the holder's own prefix:
//
//	/nagare/v1/state/natblock/<hostID>/<device>/<ip>/<block>   the holder's host id
//
// so that etcd's RBAC can let a host write its own blocks and nothing of
// another's (see HostPermissions). A device is a router UUID.
//
// Who holds a block: when several live hosts have its key, the oldest key
// (lowest create revision) does. A host leases a block by creating its key
// and then reading, at the revision of that creation, the block's key of
// every host alive then: if one is older, it lost, deletes its key and
// tries another block. A host that creates its key later sees the earlier
// one, so exactly one wins; a dead host's blocks free themselves (its keys
// live under its liveness lease, with its alive key). The reads are
// batched into read-only transactions of at most opsPerRead gets, so a
// lease costs a few round trips whatever the number of hosts and never
// meets etcd's --max-txn-ops (an earlier layout compared every host's key
// in the leasing transaction: one compare per host, 128 by default).
const NATBlockPrefix = root + "state/natblock/"

// NATPrefix holds NAT state other than blocks: the published translations
// (NATTranslationsPrefix).
const NATPrefix = root + "state/nat/"

// Tuning of NATBlocks. The spares are what the miss path is served from;
// a few blocks of 64 ports each absorb a burst of new connections while
// the refill, one round trip per block, catches up.
const (
	// natSpareBlocks is how many blocks NATBlocks keeps leased ahead for
	// each (device, address, range) once it has been used.
	natSpareBlocks = 4
	// natSyncTimeout bounds the one synchronous lease the first use of an
	// address may do, on the miss path with the flow table locked.
	natSyncTimeout = 300 * time.Millisecond
	// natOpTimeout bounds each background etcd operation.
	natOpTimeout = 5 * time.Second
	// natRetryAfter is how long a refill that found no free block (or no
	// etcd) waits before another miss may start one: exhaustion must not
	// turn every miss into a range read.
	natRetryAfter = time.Second
)

// NATBlockKey is the key of one block leased by host.
func NATBlockKey(host, device string, ip netip.Addr, block uint16) string {
	return natIPPrefix(host, device, ip) + strconv.Itoa(int(block))
}

func natIPPrefix(host, device string, ip netip.Addr) string {
	return NATBlockPrefix + host + "/" + device + "/" + ip.Unmap().String() + "/"
}

// NATBlockHolding is one leased block as stored.
type NATBlockHolding struct {
	Host, Device string
	IP           netip.Addr
	Block        uint16
}

// ParseNATBlockKey splits a key under NATBlockPrefix.
func ParseNATBlockKey(key string) (NATBlockHolding, bool) {
	rest, ok := strings.CutPrefix(key, NATBlockPrefix)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 4 || parts[0] == "" || parts[1] == "" {
		return NATBlockHolding{}, false
	}
	ip, err := netip.ParseAddr(parts[2])
	b, err2 := strconv.ParseUint(parts[3], 10, 16)
	if err != nil || err2 != nil || b >= flowstate.BlocksPerIP {
		return NATBlockHolding{}, false
	}
	return NATBlockHolding{Host: parts[0], Device: parts[1], IP: ip, Block: uint16(b)}, true
}

// NATBlocks is the NSDB-backed flowstate.Blocks of one host: blocks are
// leased in etcd under the host's lease, so that two hosts never hand out
// the same (address, port).
//
// Lease runs on the miss path with the flow table locked, so it answers
// from blocks leased ahead of time and never waits on etcd, except for the
// very first block of an address, which may take one short synchronous
// transaction. Taking a spare starts a background refill. Searches start
// at a random block, so hosts leasing the same address rarely race for
// the same key.
type NATBlocks struct {
	s          *Store
	host       string
	retryAfter time.Duration // natRetryAfter; tests shorten it

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	lease clientv3.LeaseID
	ips   map[natRange]*natSpares
	held  map[natBlock]struct{} // handed out to the table, not yet released
	inUse map[natAddr]int       // blocks held per address
}

// natAddr is one translated address of one device.
type natAddr struct {
	device string
	ip     netip.Addr
}

// natRange is one (device, address, block range) spares are kept for.
type natRange struct {
	device string
	ip     netip.Addr
	lo, hi uint16
}

type natBlock struct {
	device string
	ip     netip.Addr
	block  uint16
}

type natSpares struct {
	ready     []uint16 // leased in etcd, not yet handed out
	refilling bool
	dropped   bool      // the address went out of use: keep no spares
	failedAt  time.Time // last refill that could not lease a block
}

var errNATBlocksClosed = errors.New("nsdb: NAT blocks closed")

// NewNATBlocks returns the NAT blocks of hostID, leased under lease (the
// host's liveness lease). Close it to stop its background work and give
// back its spare blocks.
func NewNATBlocks(s *Store, hostID string, lease clientv3.LeaseID) *NATBlocks {
	ctx, cancel := context.WithCancel(context.Background())
	return &NATBlocks{s: s, host: hostID, lease: lease, ctx: ctx, cancel: cancel, retryAfter: natRetryAfter,
		ips: map[natRange]*natSpares{}, held: map[natBlock]struct{}{}, inUse: map[natAddr]int{}}
}

var _ flowstate.Blocks = (*NATBlocks)(nil)

func checkNATArgs(device string, ip netip.Addr, lo, hi uint16) error {
	switch {
	case device == "" || strings.ContainsAny(device, "/ ") || device == "translations":
		return fmt.Errorf("nsdb: NAT block device %q: not a device id", device)
	case !ip.IsValid():
		return fmt.Errorf("nsdb: NAT block ip: invalid address")
	case lo > hi || hi >= flowstate.BlocksPerIP:
		return fmt.Errorf("nsdb: NAT block range %d-%d: want lo <= hi < %d", lo, hi, flowstate.BlocksPerIP)
	}
	return nil
}

// Lease implements flowstate.Blocks.
func (n *NATBlocks) Lease(device string, ip netip.Addr, lo, hi uint16) (uint16, error) {
	hi = min(hi, flowstate.BlocksPerIP-1)
	if err := checkNATArgs(device, ip, lo, hi); err != nil {
		return 0, err
	}
	ip = ip.Unmap()
	r := natRange{device, ip, lo, hi}
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return 0, errNATBlocksClosed
	}
	sp := n.ips[r]
	first := sp == nil
	if first {
		sp = &natSpares{}
		n.ips[r] = sp
	}
	if k := len(sp.ready); k > 0 {
		b := sp.ready[k-1]
		sp.ready = sp.ready[:k-1]
		n.holdLocked(natBlock{device, ip, b})
		n.refillLocked(r, sp)
		n.mu.Unlock()
		return b, nil
	}
	lease := n.lease
	n.mu.Unlock()
	if !first {
		n.mu.Lock()
		n.refillLocked(r, sp)
		n.mu.Unlock()
		return 0, flowstate.ErrNoPorts
	}
	// First use of this address: one synchronous attempt, short.
	ctx, cancel := context.WithTimeout(n.ctx, natSyncTimeout)
	b, err := n.take(ctx, r, lease)
	cancel()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.holdLocked(natBlock{device, ip, b})
	} else {
		sp.failedAt = time.Now()
	}
	n.refillLocked(r, sp)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", flowstate.ErrNoPorts, err)
	}
	return b, nil
}

func (n *NATBlocks) holdLocked(b natBlock) {
	n.held[b] = struct{}{}
	n.inUse[natAddr{b.device, b.ip}]++
}

// Release implements flowstate.Blocks: the key is deleted in the
// background (the caller holds the flow table's lock). When the table
// gives back the last block it held of an address (its bindings there all
// ended, and the block stayed idle for flowstate's BlockIdle), the spares
// of that address go too: an address used once does not keep blocks from
// other hosts for ever. Its next lease is a first one again.
func (n *NATBlocks) Release(device string, ip netip.Addr, block uint16) {
	if checkNATArgs(device, ip, block, block) != nil {
		return
	}
	ip = ip.Unmap()
	nb := natBlock{device, ip, block}
	n.mu.Lock()
	_, ok := n.held[nb]
	if !ok || n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	delete(n.held, nb)
	gone := []natBlock{nb}
	a := natAddr{device, ip}
	if n.inUse[a]--; n.inUse[a] <= 0 {
		delete(n.inUse, a)
		for r, sp := range n.ips {
			if r.device == device && r.ip == ip {
				for _, b := range sp.ready {
					gone = append(gone, natBlock{device, ip, b})
				}
				sp.ready, sp.dropped = nil, true // a running refill gives back what it takes
				delete(n.ips, r)
			}
		}
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, natOpTimeout)
		defer cancel()
		for _, b := range gone {
			_ = n.deleteBlock(ctx, b)
		}
	}()
}

// deleteBlock deletes a block's key if this host still holds it.
func (n *NATBlocks) deleteBlock(ctx context.Context, nb natBlock) error {
	key := NATBlockKey(n.host, nb.device, nb.ip, nb.block)
	_, err := n.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", n.host)).
		Then(clientv3.OpDelete(key)).
		Commit()
	return err
}

// refillLocked starts a background refill of r's spares unless one runs,
// they are full, or the last one failed moments ago.
func (n *NATBlocks) refillLocked(r natRange, sp *natSpares) {
	if sp.refilling || len(sp.ready) >= natSpareBlocks || time.Since(sp.failedAt) < n.retryAfter || n.ctx.Err() != nil {
		return
	}
	sp.refilling = true
	n.wg.Add(1)
	go n.refill(r, sp)
}

func (n *NATBlocks) refill(r natRange, sp *natSpares) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		lease := n.lease
		if len(sp.ready) >= natSpareBlocks || n.ctx.Err() != nil || sp.dropped {
			sp.refilling = false
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		ctx, cancel := context.WithTimeout(n.ctx, natOpTimeout)
		b, err := n.take(ctx, r, lease)
		cancel()
		n.mu.Lock()
		if err != nil {
			sp.refilling = false
			sp.failedAt = time.Now()
			n.mu.Unlock()
			return
		}
		if n.lease != lease || n.ctx.Err() != nil || sp.dropped {
			// Leased under a lease we no longer use, for an address out of
			// use, or closed meanwhile: give it back rather than keep a
			// block nobody will hand out.
			n.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), natOpTimeout)
			_ = n.deleteBlock(ctx, natBlock{r.device, r.ip, b})
			cancel()
			continue
		}
		sp.ready = append(sp.ready, b)
		n.mu.Unlock()
	}
}

// errNoFreeBlock: every block of the range is held by some host.
var errNoFreeBlock = errors.New("no free block")

// natView is what a lease chooses from: the blocks of one address the
// hosts alive at one revision hold.
type natView struct {
	taken map[uint16]string // block → holder
}

// aliveAt lists the hosts alive at rev (0: now) and the revision read.
func (n *NATBlocks) aliveAt(ctx context.Context, rev int64) ([]string, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}
	if rev != 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := n.s.cli.Get(ctx, hostStatePrefix, opts...)
	if err != nil {
		return nil, 0, err
	}
	return aliveHostsOf(resp.Kvs), resp.Header.Revision, nil
}

// readAt runs gets (made WithRev of one revision) in read-only
// transactions of at most opsPerRead, and returns every key they found.
func (n *NATBlocks) readAt(ctx context.Context, gets []clientv3.Op) ([]*mvccpb.KeyValue, error) {
	var out []*mvccpb.KeyValue
	for len(gets) > 0 {
		k := min(len(gets), opsPerRead)
		tr, err := n.s.cli.Txn(ctx).Then(gets[:k]...).Commit()
		if err != nil {
			return nil, err
		}
		for _, r := range tr.Responses {
			out = append(out, r.GetResponseRange().Kvs...)
		}
		gets = gets[k:]
	}
	return out, nil
}

// look reads which blocks of (device, ip) the hosts alive now hold, at one
// revision.
func (n *NATBlocks) look(ctx context.Context, device string, ip netip.Addr) (*natView, error) {
	hosts, rev, err := n.aliveAt(ctx, 0)
	if err != nil {
		return nil, err
	}
	gets := make([]clientv3.Op, 0, len(hosts))
	for _, h := range hosts {
		gets = append(gets, clientv3.OpGet(natIPPrefix(h, device, ip), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev)))
	}
	kvs, err := n.readAt(ctx, gets)
	if err != nil {
		return nil, err
	}
	v := &natView{taken: map[uint16]string{}}
	for _, kv := range kvs {
		if h, ok := ParseNATBlockKey(string(kv.Key)); ok {
			if cur, held := v.taken[h.Block]; !held || cur == n.host { // another holder is the news
				v.taken[h.Block] = h.Host
			}
		}
	}
	return v, nil
}

// aliveHostsOf picks the host ids of alive keys, sorted.
func aliveHostsOf(kvs []*mvccpb.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		rest, _ := strings.CutPrefix(string(kv.Key), hostStatePrefix)
		if id, ok := strings.CutSuffix(rest, "/alive"); ok && id != "" && !strings.Contains(id, "/") {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// claim creates this host's key of block b under lease and keeps it if
// no host alive at that moment holds an older key of b. It returns the
// older holder when it lost ("" and true when it won).
func (n *NATBlocks) claim(ctx context.Context, device string, ip netip.Addr, b uint16, lease clientv3.LeaseID) (holder string, won bool, err error) {
	key := NATBlockKey(n.host, device, ip, b)
	resp, err := n.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, n.host, clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return "", false, fmt.Errorf("lease NAT block %s: %w", key, err)
	}
	if !resp.Succeeded {
		return n.host, false, nil // held already (a concurrent lease of ours): not a new block
	}
	created := resp.Header.Revision
	hosts, _, err := n.aliveAt(ctx, created)
	if err == nil {
		gets := make([]clientv3.Op, 0, len(hosts))
		for _, h := range hosts {
			if h != n.host {
				gets = append(gets, clientv3.OpGet(NATBlockKey(h, device, ip, b), clientv3.WithKeysOnly(), clientv3.WithRev(created)))
			}
		}
		var kvs []*mvccpb.KeyValue
		if kvs, err = n.readAt(ctx, gets); err == nil {
			for _, kv := range kvs {
				if kv.CreateRevision < created {
					if h, ok := ParseNATBlockKey(string(kv.Key)); ok {
						holder = h.Host
					}
				}
			}
			if holder == "" {
				return "", true, nil
			}
		}
	}
	// Lost (or could not tell): take the key back, unless it was made
	// again meanwhile.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), natOpTimeout)
	defer cancel()
	if _, derr := n.s.cli.Txn(dctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", created)).
		Then(clientv3.OpDelete(key)).Commit(); derr != nil && err == nil {
		err = fmt.Errorf("give back NAT block %s: %w", key, derr)
	}
	if err != nil {
		return "", false, fmt.Errorf("lease NAT block %s: %w", key, err)
	}
	return holder, false, nil
}

// take leases one free block of r in etcd. It reads the view once and
// then claims a randomly chosen free block; when another host got it
// first it reads the view again. Hosts leasing the same address start at
// random blocks, so they rarely collide.
func (n *NATBlocks) take(ctx context.Context, r natRange, lease clientv3.LeaseID) (uint16, error) {
	size := int(r.hi-r.lo) + 1
	for {
		v, err := n.look(ctx, r.device, r.ip)
		if err != nil {
			return 0, fmt.Errorf("read NAT blocks of %s %s: %w", r.device, r.ip, err)
		}
		free := 0
		for b := r.lo; ; b++ {
			if _, t := v.taken[b]; !t {
				free++
			}
			if b == r.hi {
				break
			}
		}
		if free == 0 {
			return 0, errNoFreeBlock
		}
		start := rand.IntN(size)
		var b uint16
		for j := range size {
			b = r.lo + uint16((start+j)%size)
			if _, t := v.taken[b]; !t {
				break
			}
		}
		_, won, err := n.claim(ctx, r.device, r.ip, b, lease)
		if err != nil {
			return 0, err
		}
		if won {
			return b, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// SetLease moves the blocks this host holds to a new liveness lease (the
// agent registered again after losing its lease, which freed them in
// etcd). Blocks handed out are taken again under the new lease; one that
// another host took meanwhile is counted in the returned number of
// conflicts (its ports may be handed out twice until the bindings
// expire). Spares are forgotten.
func (n *NATBlocks) SetLease(ctx context.Context, lease clientv3.LeaseID) (conflicts int, err error) {
	n.mu.Lock()
	n.lease = lease
	for _, sp := range n.ips {
		sp.ready = nil
	}
	held := make([]natBlock, 0, len(n.held))
	for b := range n.held {
		held = append(held, b)
	}
	n.mu.Unlock()
	for _, b := range held {
		holder, err := n.retake(ctx, b, lease)
		if err != nil {
			return conflicts, fmt.Errorf("nsdb: move NAT block %s to the new lease: %w", NATBlockKey(n.host, b.device, b.ip, b.block), err)
		}
		if holder != "" {
			conflicts++
		}
	}
	return conflicts, nil
}

// retake puts block b under lease for this host: at once when this host
// still holds it, otherwise only if no live host holds it. It returns the
// other holder when one does.
func (n *NATBlocks) retake(ctx context.Context, b natBlock, lease clientv3.LeaseID) (holder string, err error) {
	key := NATBlockKey(n.host, b.device, b.ip, b.block)
	put := clientv3.OpPut(key, n.host, clientv3.WithLease(lease))
	resp, err := n.s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", n.host)).Then(put).Commit()
	if err != nil || resp.Succeeded {
		return "", err
	}
	for range 10 {
		v, err := n.look(ctx, b.device, b.ip)
		if err != nil {
			return "", err
		}
		if h, ok := v.taken[b.block]; ok && h != n.host {
			return h, nil
		}
		holder, won, err := n.claim(ctx, b.device, b.ip, b.block, lease)
		if err != nil || won {
			return "", err
		}
		if holder != "" && holder != n.host {
			return holder, nil
		}
	}
	return "", fmt.Errorf("block %d of %s %s: hosts keep coming and going; try again", b.block, b.device, b.ip)
}

// Claim takes block under this host's current lease for a binding
// restored after a restart: the table's pools start empty, so nothing
// else would hold the block its ports come from, and once the previous
// run's lease expired another host could lease it and hand out the same
// ports. A block this host held (under any lease) or nobody holds is
// taken; one another host holds is an error naming it. Claimed blocks are
// not handed out by Lease; they stay leased until the host's lease ends.
func (n *NATBlocks) Claim(ctx context.Context, device string, ip netip.Addr, block uint16) error {
	if err := checkNATArgs(device, ip, block, block); err != nil {
		return err
	}
	n.mu.Lock()
	lease := n.lease
	n.mu.Unlock()
	holder, err := n.retake(ctx, natBlock{device, ip.Unmap(), block}, lease)
	if err != nil {
		return fmt.Errorf("nsdb: claim NAT block %d of %s %s: %w", block, device, ip, err)
	}
	if holder != "" {
		return fmt.Errorf("nsdb: NAT block %d of %s %s is held by host %s", block, device, ip, holder)
	}
	return nil
}

// Close stops the background work and gives back the spare blocks. Blocks
// handed out stay leased until the host's lease ends.
func (n *NATBlocks) Close() {
	n.mu.Lock()
	n.cancel()
	var spares []natBlock
	for r, sp := range n.ips {
		for _, b := range sp.ready {
			spares = append(spares, natBlock{r.device, r.ip, b})
		}
		sp.ready = nil
	}
	n.mu.Unlock()
	n.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), natOpTimeout)
	defer cancel()
	for _, b := range spares {
		_ = n.deleteBlock(ctx, b)
	}
}
