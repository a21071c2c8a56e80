package nsdb

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/packet"
)

const natDev = "2f9a5f0e-4c1b-4a39-9f0e-6d1c2b3a4d5e"

var natIP = netip.MustParseAddr("198.51.100.7")

func (f *fixture) grant() clientv3.LeaseID {
	f.t.Helper()
	g, err := f.cli.Grant(f.ctx, 60)
	if err != nil {
		f.t.Fatal(err)
	}
	return g.ID
}

func (f *fixture) natBlocks(host string) (*NATBlocks, clientv3.LeaseID) {
	lease := f.grant()
	// A host leases blocks only while alive: its blocks count as taken
	// only while its alive key (under the same lease) exists.
	if _, err := f.cli.Put(f.ctx, hostAliveKey(host), "", clientv3.WithLease(lease)); err != nil {
		f.t.Fatal(err)
	}
	n := NewNATBlocks(f.s, host, lease)
	n.retryAfter = 50 * time.Millisecond // the tests wait for exhaustion to be seen
	f.t.Cleanup(n.Close)
	return n, lease
}

// leaseWait leases like the miss path does, retrying while a refill is
// under way; it gives up only when a refill that started after it found
// nothing free.
func leaseWait(n *NATBlocks, device string, ip netip.Addr, lo, hi uint16) (uint16, error) {
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		b, err := n.Lease(device, ip, lo, hi)
		if err == nil || !errors.Is(err, flowstate.ErrNoPorts) {
			return b, err
		}
		n.mu.Lock()
		sp := n.ips[natRange{device, ip.Unmap(), lo, min(hi, flowstate.BlocksPerIP-1)}]
		done := sp != nil && !sp.refilling && len(sp.ready) == 0 && sp.failedAt.After(start)
		n.mu.Unlock()
		if done || time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// waitSpares waits until r's background refill has stopped.
func waitSpares(t testing.TB, n *NATBlocks, r natRange) int {
	t.Helper()
	for range 10000 {
		n.mu.Lock()
		sp := n.ips[r]
		idle := sp != nil && !sp.refilling
		k := 0
		if sp != nil {
			k = len(sp.ready)
		}
		n.mu.Unlock()
		if idle {
			return k
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("refill never stopped")
	return 0
}

// natKeys returns block → holder as etcd has them, from every host's
// prefix; a block held by two hosts fails the test.
func (f *fixture) natKeys(device string, ip netip.Addr) map[uint16]string {
	f.t.Helper()
	resp, err := f.cli.Get(f.ctx, NATBlockPrefix, clientv3.WithPrefix())
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[uint16]string{}
	for _, kv := range resp.Kvs {
		h, ok := ParseNATBlockKey(string(kv.Key))
		if !ok {
			f.t.Fatalf("malformed NAT block key %s", kv.Key)
		}
		if h.Device != device || h.IP != ip.Unmap() {
			continue
		}
		if h.Host != string(kv.Value) {
			f.t.Errorf("key %s holds %q", kv.Key, kv.Value)
		}
		if other, dup := out[h.Block]; dup {
			f.t.Errorf("block %d held by %s and %s", h.Block, other, h.Host)
		}
		out[h.Block] = h.Host
	}
	return out
}

// Two hosts leasing blocks of the same address as fast as they can, from
// several goroutines each, never get the same block, and etcd names the
// holder of every block each got.
func TestNATBlocksTwoHostsNeverShareABlock(t *testing.T) {
	f := newFixture(t)
	f.leaseConcurrently([]string{"host-a", "host-b"}, 4, 40, flowstate.BlocksPerIP-1)
}

// leaseConcurrently has hosts lease blocks of natIP in 0..hi from
// workers goroutines each, each leasing per blocks, and checks that no
// block went to two, and that etcd names the holder of every block.
func (f *fixture) leaseConcurrently(hosts []string, workers, per int, hi uint16) {
	t := f.t
	t.Helper()
	var (
		mu  sync.Mutex
		got = map[uint16]string{}
		wg  sync.WaitGroup
	)
	errc := make(chan error, len(hosts)*workers)
	var tables []*NATBlocks
	for _, h := range hosts {
		n, _ := f.natBlocks(h)
		tables = append(tables, n)
		for range workers {
			wg.Go(func() {
				for range per {
					b, err := leaseWait(n, natDev, natIP, 0, hi)
					if err != nil {
						errc <- fmt.Errorf("%s: %w", h, err)
						return
					}
					mu.Lock()
					if other, dup := got[b]; dup {
						errc <- fmt.Errorf("block %d handed to %s and %s", b, other, h)
					}
					got[b] = h
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if want := len(hosts) * workers * per; len(got) != want {
		t.Fatalf("%d blocks handed out, want %d", len(got), want)
	}
	for _, n := range tables { // a refill may be between its claim and its check
		waitSpares(t, n, natRange{natDev, natIP, 0, hi})
	}
	keys := f.natKeys(natDev, natIP) // fails on a block two hosts hold
	for b, h := range got {
		if keys[b] != h {
			t.Errorf("block %d handed to %s, etcd says %q", b, h, keys[b])
		}
	}
}

// A bounded range runs out: the two hosts share it exactly, and then
// Lease fails with ErrNoPorts instead of waiting.
func TestNATBlocksExhaustion(t *testing.T) {
	f := newFixture(t)
	const lo, hi = 100, 119
	a, _ := f.natBlocks("host-a")
	b, _ := f.natBlocks("host-b")
	got := map[uint16]string{}
	for _, step := range []struct {
		n    *NATBlocks
		host string
	}{{a, "host-a"}, {b, "host-b"}, {a, "host-a"}, {b, "host-b"}} {
		for range 6 {
			blk, err := leaseWait(step.n, natDev, natIP, lo, hi)
			if err != nil {
				break
			}
			if blk < lo || blk > hi {
				t.Fatalf("block %d outside %d-%d", blk, lo, hi)
			}
			if other, dup := got[blk]; dup {
				t.Fatalf("block %d handed to %s and %s", blk, other, step.host)
			}
			got[blk] = step.host
		}
	}
	// Spares count as leased: whatever was not handed out is a spare.
	ra := natRange{natDev, natIP, lo, hi}
	spares := waitSpares(t, a, ra) + waitSpares(t, b, ra)
	if len(got)+spares != hi-lo+1 {
		t.Fatalf("%d blocks handed out + %d spares, want %d", len(got), spares, hi-lo+1)
	}
	for _, n := range []*NATBlocks{a, b} {
		for {
			if _, err := leaseWait(n, natDev, natIP, lo, hi); err != nil {
				if !errors.Is(err, flowstate.ErrNoPorts) {
					t.Fatalf("exhausted: %v, want ErrNoPorts", err)
				}
				break
			}
		}
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != hi-lo+1 {
		t.Fatalf("%d keys in etcd, want %d", len(keys), hi-lo+1)
	}
}

// A dead host's blocks free themselves with its lease; a released block's
// key is deleted.
func TestNATBlocksLeaseRevokeAndRelease(t *testing.T) {
	f := newFixture(t)
	const lo, hi = 0, 9
	a, leaseA := f.natBlocks("host-a")
	var held []uint16
	for {
		blk, err := leaseWait(a, natDev, natIP, lo, hi)
		if err != nil {
			break
		}
		held = append(held, blk)
	}
	if len(held) != hi-lo+1 {
		t.Fatalf("host a got %d blocks, want all %d", len(held), hi-lo+1)
	}
	a.Release(natDev, natIP, held[0])
	deadline := time.Now().Add(10 * time.Second)
	for len(f.natKeys(natDev, natIP)) != hi-lo && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != hi-lo {
		t.Fatalf("after a release: %d keys, want %d", len(keys), hi-lo)
	}
	b, _ := f.natBlocks("host-b")
	if blk, err := leaseWait(b, natDev, natIP, lo, hi); err != nil || blk != held[0] {
		t.Fatalf("host b leased %d, %v; want the released block %d", blk, err, held[0])
	}
	waitSpares(t, b, natRange{natDev, natIP, lo, hi}) // its refill saw a's blocks: let it finish first
	if _, err := f.cli.Revoke(f.ctx, leaseA); err != nil {
		t.Fatal(err)
	}
	var gotB []uint16
	for {
		blk, err := leaseWait(b, natDev, natIP, lo, hi)
		if err != nil {
			break
		}
		gotB = append(gotB, blk)
	}
	slices.Sort(gotB)
	rest := slices.Clone(held[1:])
	slices.Sort(rest)
	if !slices.Equal(gotB, rest) {
		t.Fatalf("after host a died host b got %v, want its blocks %v", gotB, rest)
	}
	for blk, h := range f.natKeys(natDev, natIP) {
		if h != "host-b" {
			t.Fatalf("block %d held by %q after host a died", blk, h)
		}
	}
}

// When the table gives back the last block of an address, the spares go
// too; the next lease starts over.
func TestNATBlocksReleaseLastDropsSpares(t *testing.T) {
	f := newFixture(t)
	a, _ := f.natBlocks("host-a")
	r := natRange{natDev, natIP, 0, 99}
	blk, err := leaseWait(a, natDev, natIP, 0, 99)
	if err != nil {
		t.Fatal(err)
	}
	if k := waitSpares(t, a, r); k != natSpareBlocks {
		t.Fatalf("%d spares, want %d", k, natSpareBlocks)
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != 1+natSpareBlocks {
		t.Fatalf("etcd holds %d blocks, want 1 + %d spares", len(keys), natSpareBlocks)
	}
	a.Release(natDev, natIP, blk)
	deadline := time.Now().Add(10 * time.Second)
	for len(f.natKeys(natDev, natIP)) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != 0 {
		t.Fatalf("after the last release etcd still holds %v", keys)
	}
	if _, err := a.Lease(natDev, natIP, 0, 99); err != nil {
		t.Fatalf("a lease after the address went out of use: %v", err)
	}
}

// SetLease moves held blocks to a new lease: revoking the old one then
// frees nothing.
func TestNATBlocksSetLease(t *testing.T) {
	f := newFixture(t)
	a, old := f.natBlocks("host-a")
	blk, err := leaseWait(a, natDev, natIP, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	waitSpares(t, a, natRange{natDev, natIP, 0, 3})
	if _, err := f.cli.Revoke(f.ctx, old); err != nil { // the agent lost its lease
		t.Fatal(err)
	}
	conflicts, err := a.SetLease(f.ctx, f.grant())
	if err != nil || conflicts != 0 {
		t.Fatalf("SetLease: %d conflicts, %v", conflicts, err)
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != 1 || keys[blk] != "host-a" {
		t.Fatalf("after SetLease etcd has %v, want block %d of host-a", keys, blk)
	}
}

// A restarted host claims the blocks of its restored bindings: its own
// (under the old lease, which then ends harmlessly) and free ones, not
// another host's; Lease does not hand claimed blocks out.
func TestNATBlocksClaim(t *testing.T) {
	f := newFixture(t)
	old, oldLease := f.natBlocks("host-a")
	mine, err := leaseWait(old, natDev, natIP, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.natBlocks("host-b")
	theirs, err := leaseWait(b, natDev, natIP, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.natBlocks("host-a") // the restarted agent
	if err := a.Claim(f.ctx, natDev, natIP, mine); err != nil {
		t.Fatalf("claim its own block: %v", err)
	}
	if err := a.Claim(f.ctx, natDev, natIP, 2); err != nil {
		t.Fatalf("claim a free block: %v", err)
	}
	if err := a.Claim(f.ctx, natDev, natIP, theirs); err == nil || !strings.Contains(err.Error(), "host-b") {
		t.Fatalf("claim host b's block: %v, want an error naming host-b", err)
	}
	if _, err := f.cli.Revoke(f.ctx, oldLease); err != nil {
		t.Fatal(err)
	}
	keys := f.natKeys(natDev, natIP)
	if keys[mine] != "host-a" || keys[2] != "host-a" || keys[theirs] != "host-b" {
		t.Fatalf("after the old lease ended: %v", keys)
	}
	if _, err := leaseWait(a, natDev, natIP, 0, 2); err == nil {
		t.Fatal("Lease handed out a claimed or foreign block")
	}
	if err := a.Claim(f.ctx, "", natIP, 0); err == nil {
		t.Fatal("Claim accepted no device")
	}
}

func TestNATBlocksBadInput(t *testing.T) {
	f := newFixture(t)
	n, _ := f.natBlocks("host-a")
	for _, c := range []struct {
		name   string
		device string
		ip     netip.Addr
		lo, hi uint16
		want   string
	}{
		{"no device", "", natIP, 0, 10, "device"},
		{"slash in device", "a/b", natIP, 0, 10, "device"},
		{"reserved device", "translations", natIP, 0, 10, "device"},
		{"no address", natDev, netip.Addr{}, 0, 10, "ip"},
		{"empty range", natDev, natIP, 10, 9, "range"},
		{"range above the blocks", natDev, natIP, flowstate.BlocksPerIP, flowstate.BlocksPerIP + 5, "range"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.Lease(c.device, c.ip, c.lo, c.hi)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Lease: %v, want an error naming %q", err, c.want)
			}
			n.Release(c.device, c.ip, c.lo) // ignored, no panic
		})
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != 0 {
		t.Fatalf("bad input wrote %v", keys)
	}
	// Releasing a block never leased deletes nothing (another host's).
	b, _ := f.natBlocks("host-b")
	blk, err := leaseWait(b, natDev, natIP, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.Release(natDev, natIP, blk)
	n.Close()
	if keys := f.natKeys(natDev, natIP); keys[blk] != "host-b" {
		t.Fatalf("host a's release of host b's block: etcd has %v", keys)
	}
	if _, err := n.Lease(natDev, natIP, 0, 5); err == nil {
		t.Fatal("Lease after Close succeeded")
	}
}

// Two flow tables, one per host, each with its own NATBlocks on the same
// etcd, translate thousands of connections to the same address: no
// (address, protocol, port) is handed out twice.
func TestNATBlocksTwoTablesNoPortCollision(t *testing.T) {
	f := newFixture(t)
	target := netip.MustParseAddr("203.0.113.10")
	targets := []flowstate.Target{{From: target}}
	zone := uint64(0x5eed)
	type wire struct {
		ip    netip.Addr
		proto uint8
		port  uint16
	}
	var (
		mu   sync.Mutex
		used = map[wire]string{}
		wg   sync.WaitGroup
	)
	errc := make(chan error, 4)
	for hi, host := range []string{"host-a", "host-b"} {
		nb, _ := f.natBlocks(host)
		tbl := flowstate.New(flowstate.Config{Blocks: nb, MaxEntries: 1 << 16, MaxPerZone: 1 << 16})
		t.Cleanup(func() {
			st := tbl.Stats()
			t.Logf("%s: %d blocks, %d ports; %d allocations failed while the spares refilled (the test retries them)",
				host, st.BlocksLeased, st.PortsInUse, st.PortsExhausted)
		})
		for g := range 2 {
			wg.Go(func() {
				src := netip.AddrFrom4([4]byte{10, byte(hi), byte(g), 1})
				for i := range 2500 {
					proto := packet.IPProtoTCP
					if i%2 == 1 {
						proto = packet.IPProtoUDP
					}
					k := flowstate.Key{Src: src.As16(), Dst: netip.MustParseAddr("192.0.2.80").As16(), Zone: zone,
						SrcPort: uint16(1024 + i), DstPort: 80, Proto: proto, Type: flowstate.KeyFwdSNAT, Family: 4}
					var (
						e   flowstate.Entry
						err error
						tx  flowstate.Tx
					)
					for try := 0; ; try++ {
						tx.Reset()
						e, err = tbl.AllocSNAT(&tx, natDev, &k, targets, packet.TCPSyn, 0)
						if !errors.Is(err, flowstate.ErrNoPorts) || try > 20000 {
							break
						}
						time.Sleep(100 * time.Microsecond) // the packet is dropped; a retransmit finds a refilled spare
					}
					if err == nil {
						err = tbl.Commit(&tx, 0)
					}
					if err != nil {
						errc <- fmt.Errorf("%s conn %d: %w", host, i, err)
						return
					}
					ip, port := e.Translated()
					w := wire{ip, proto, port}
					mu.Lock()
					if other, dup := used[w]; dup {
						errc <- fmt.Errorf("%v handed out by %s and %s", w, other, host)
					}
					used[w] = host
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(used) != 2*2*2500 {
		t.Fatalf("%d bindings, want %d", len(used), 2*2*2500)
	}
	keys := f.natKeys(natDev, target)
	for w, host := range used {
		if h := keys[w.port/flowstate.BlockSize]; h != host {
			t.Fatalf("%v held by %s, etcd says its block is %q's", w, host, h)
		}
	}
}

// BenchmarkNATBlocksLease measures what the miss path waits: "first" is
// the synchronous lease of an address's first block (one etcd
// transaction, durable: etcd fsyncs as in production), "spare" a lease
// answered from the pre-leased spares.
func BenchmarkNATBlocksLease(b *testing.B) {
	cli := nsdbtest.StartWith(b, nsdbtest.Options{Fsync: true})
	f := &fixture{t: b, ctx: context.Background(), cli: cli, s: New(cli)}
	n, _ := f.natBlocks("host-a")
	next := 0 // every iteration of every run a new address
	b.Run("first", func(b *testing.B) {
		for range b.N {
			next++
			ip := netip.AddrFrom4([4]byte{100, byte(64 + next>>16), byte(next >> 8), byte(next)})
			if _, err := n.Lease(natDev, ip, 0, flowstate.BlocksPerIP-1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("spare", func(b *testing.B) {
		r := natRange{natDev, natIP, 0, flowstate.BlocksPerIP - 1}
		if _, err := n.Lease(natDev, natIP, 0, flowstate.BlocksPerIP-1); err != nil {
			b.Fatal(err)
		}
		// Timed per call: waiting for the refill between calls is not part
		// of it, and the benchmark timer's own stops and starts cost more
		// than the lease.
		var total time.Duration
		b.StopTimer()
		for range b.N {
			waitSpares(b, n, r)
			t0 := time.Now()
			blk, err := n.Lease(natDev, natIP, 0, flowstate.BlocksPerIP-1)
			total += time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			n.Release(natDev, natIP, blk)
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/lease")
	})
}

// Two hosts claim the same block: the older key wins, the later claimant
// sees it, loses and takes its key back; once the holder is dead the
// block is free again.
func TestNATBlockClaimArbitration(t *testing.T) {
	f := newFixture(t)
	a, leaseA := f.natBlocks("host-a")
	b, leaseB := f.natBlocks("host-b")
	if _, won, err := a.claim(f.ctx, natDev, natIP, 7, leaseA); err != nil || !won {
		t.Fatalf("a claims a free block: won %v, %v", won, err)
	}
	holder, won, err := b.claim(f.ctx, natDev, natIP, 7, leaseB)
	if err != nil || won || holder != "host-a" {
		t.Fatalf("b claims a's block: won %v holder %q, %v; want lost to host-a", won, holder, err)
	}
	if keys := f.natKeys(natDev, natIP); len(keys) != 1 || keys[7] != "host-a" {
		t.Fatalf("after b lost: %v, want only a's key", keys)
	}
	if _, err := f.cli.Revoke(f.ctx, leaseA); err != nil {
		t.Fatal(err)
	}
	if _, won, err := b.claim(f.ctx, natDev, natIP, 7, leaseB); err != nil || !won {
		t.Fatalf("b claims the dead holder's block: won %v, %v", won, err)
	}
}

// Leasing does not depend on the number of hosts: with more live hosts
// than etcd allows operations in one transaction (the embedded etcd's
// --max-txn-ops is 2048; an external cluster's default is 128), two hosts
// still lease blocks of one address and never share one.
func TestNATBlocksManyHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of hosts")
	}
	f := newFixture(t)
	lease := f.grant()
	const others = 2100
	for i := 0; i < others; i += opsPerRead {
		var ops []clientv3.Op
		for j := i; j < min(i+opsPerRead, others); j++ {
			ops = append(ops, clientv3.OpPut(hostAliveKey(fmt.Sprintf("idle-%04d", j)), "", clientv3.WithLease(lease)))
		}
		if _, err := f.cli.Txn(f.ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	f.leaseConcurrently([]string{"host-a", "host-b"}, 1, 8, 63)
}
