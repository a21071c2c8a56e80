package nsdb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/flowstate"
)

// NATPrefix holds the NAT port blocks leased by hosts, one key per block:
//
//	/nagare/v1/state/nat/<device>/<ip>/<block>   the holder's host id
//
// written with a compare CreateRevision == 0 (so one host wins a block) and
// under the holder's liveness lease (so a dead host's blocks free
// themselves). The published translations live beside them under
// NATTranslationsPrefix; a device is a router UUID, never "translations".
const NATPrefix = "/nagare/v1/state/nat/"

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

// NATBlockKey is the key of one leased block.
func NATBlockKey(device string, ip netip.Addr, block uint16) string {
	return natIPPrefix(device, ip) + strconv.Itoa(int(block))
}

func natIPPrefix(device string, ip netip.Addr) string {
	return NATPrefix + device + "/" + ip.Unmap().String() + "/"
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
	key := NATBlockKey(nb.device, nb.ip, nb.block)
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

// take leases one free block of r in etcd. Each attempt is one round trip:
// it tries to create a randomly chosen free block's key and, when that key
// was taken meanwhile, reads which blocks are taken in the same
// transaction, so the next attempt chooses among free ones.
func (n *NATBlocks) take(ctx context.Context, r natRange, lease clientv3.LeaseID) (uint16, error) {
	size := int(r.hi-r.lo) + 1
	taken := map[uint16]bool{}
	prefix := natIPPrefix(r.device, r.ip)
	for {
		if len(taken) >= size {
			return 0, errNoFreeBlock
		}
		// A random free block: random start, then the next free one.
		start := rand.IntN(size)
		var b uint16
		for j := range size {
			b = r.lo + uint16((start+j)%size)
			if !taken[b] {
				break
			}
		}
		key := prefix + strconv.Itoa(int(b))
		resp, err := n.s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, n.host, clientv3.WithLease(lease))).
			Else(clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("lease NAT block %s: %w", key, err)
		}
		if resp.Succeeded {
			return b, nil
		}
		taken[b] = true
		for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
			v, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), prefix), 10, 16)
			if err == nil && uint16(v) >= r.lo && uint16(v) <= r.hi {
				taken[uint16(v)] = true
			}
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
		key := NATBlockKey(b.device, b.ip, b.block)
		resp, err := n.s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(key), "=", n.host)).
			Then(clientv3.OpPut(key, n.host, clientv3.WithLease(lease))).
			Commit()
		if err == nil && !resp.Succeeded {
			resp, err = n.s.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, n.host, clientv3.WithLease(lease))).
				Commit()
			if err == nil && !resp.Succeeded {
				conflicts++
			}
		}
		if err != nil {
			return conflicts, fmt.Errorf("nsdb: move NAT block %s to the new lease: %w", key, err)
		}
	}
	return conflicts, nil
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
	key := NATBlockKey(device, ip, block)
	put := clientv3.OpPut(key, n.host, clientv3.WithLease(lease))
	resp, err := n.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", n.host)).Then(put).Commit()
	if err == nil && !resp.Succeeded {
		resp, err = n.s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(put).
			Else(clientv3.OpGet(key)).Commit()
		if err == nil && !resp.Succeeded {
			holder := "another host"
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
				holder = "host " + string(kvs[0].Value)
			}
			return fmt.Errorf("nsdb: NAT block %s is held by %s", key, holder)
		}
	}
	if err != nil {
		return fmt.Errorf("nsdb: claim NAT block %s: %w", key, err)
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
