package flowstate

import (
	"math/bits"
	"net/netip"
	"slices"
	"sync"

	"github.com/nagare/nagare/internal/splitmix"
	"github.com/nagare/nagare/pkg/packet"
)

// Port blocks (MidoNet's NAT leasing): the ports of one translated address
// on one device are cut into BlocksPerIP blocks of BlockSize; a host leases
// whole blocks and hands out ports only from blocks it holds, so two hosts
// never hand out the same (address, port), with no coordination per
// connection. A block covers the same numbers in every port space (TCP,
// UDP, ICMP echo identifiers): the space of a port is part of what makes a
// translated tuple unique on the wire, so within a block each space has
// its own 64-bit in-use mask.
const (
	BlockSize   = 64
	BlocksPerIP = 65536 / BlockSize
)

// Default port range of an SNAT target that gives none: the unprivileged
// ports, as Linux masquerading does for sources above 1023.
const (
	DefaultPortFrom = 1024
	DefaultPortTo   = 65535
)

// Blocks leases port blocks. The NSDB-backed implementation (ephemeral
// keys /nat/{device}/{ip}/{block} held on the host's lease) comes with the
// agent; MemBlocks serves tests and single-host use.
//
// Lease is called with the Table's lock held, on the per-packet path of a
// new connection: an implementation that does I/O must answer from blocks
// it leased ahead of time and refill asynchronously, failing (ErrNoPorts)
// rather than blocking when it has none.
type Blocks interface {
	// Lease takes a free block of ip on device among blocks lo..hi
	// (block b holds ports b*BlockSize .. b*BlockSize+BlockSize-1).
	Lease(device string, ip netip.Addr, lo, hi uint16) (block uint16, err error)
	// Release returns a block leased earlier.
	Release(device string, ip netip.Addr, block uint16)
}

// MemBlocks is an in-memory Blocks. Several Tables sharing one MemBlocks
// behave like several hosts sharing the NSDB.
type MemBlocks struct {
	mu sync.Mutex
	m  map[memBlockKey]*memIP
}

type memBlockKey struct {
	device string
	ip     netip.Addr
}

type memIP struct {
	taken [BlocksPerIP / 64]uint64
	next  uint16 // where the next search starts: a block just released is the last to be reused
}

// NewMemBlocks returns an empty MemBlocks.
func NewMemBlocks() *MemBlocks { return &MemBlocks{m: map[memBlockKey]*memIP{}} }

// Lease implements Blocks.
func (m *MemBlocks) Lease(device string, ip netip.Addr, lo, hi uint16) (uint16, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memBlockKey{device, ip}
	s := m.m[k]
	if s == nil {
		s = &memIP{}
		m.m[k] = s
	}
	hi = min(hi, BlocksPerIP-1)
	if lo > hi {
		return 0, ErrNoPorts
	}
	n := int(hi-lo) + 1
	start := int(s.next)
	if start < int(lo) || start > int(hi) {
		start = int(lo)
	}
	for j := range n {
		b := int(lo) + (start-int(lo)+j)%n
		if s.taken[b/64]&(1<<(b%64)) == 0 {
			s.taken[b/64] |= 1 << (b % 64)
			s.next = uint16(b + 1)
			return uint16(b), nil
		}
	}
	return 0, ErrNoPorts
}

// Release implements Blocks.
func (m *MemBlocks) Release(device string, ip netip.Addr, block uint16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.m[memBlockKey{device, ip}]; s != nil && block < BlocksPerIP {
		s.taken[block/64] &^= 1 << (block % 64)
	}
}

// Leased returns how many blocks of ip on device are leased.
func (m *MemBlocks) Leased(device string, ip netip.Addr) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	if s := m.m[memBlockKey{device, ip}]; s != nil {
		for _, w := range s.taken {
			n += bits.OnesCount64(w)
		}
	}
	return n
}

// Target is where an SNAT may translate to: an address range of one
// family and a port range (zero: DefaultPortFrom-DefaultPortTo).
type Target struct {
	From, To         netip.Addr
	PortFrom, PortTo uint16
}

// poolKey is a translated address of one zone (the router's tag).
type poolKey struct {
	zone uint64
	ip   [16]byte
}

type pool struct {
	device string
	ip     netip.Addr
	blocks []block
}

type block struct {
	num       uint16
	used      [numSpaces]uint64
	idleSince int64 // when the last port was returned; valid while all masks are 0
}

const (
	spaceTCP = iota
	spaceUDP
	spaceEcho
	numSpaces
)

func spaceOf(proto uint8) int {
	switch proto {
	case packet.IPProtoTCP:
		return spaceTCP
	case packet.IPProtoUDP:
		return spaceUDP
	case packet.IPProtoICMPv4, packet.IPProtoICMPv6:
		return spaceEcho
	}
	return -1
}

func (b *block) idle() bool { return b.used == [numSpaces]uint64{} }

// rangeMask is the set of ports of block num inside [lo, hi].
func rangeMask(num uint16, lo, hi uint16) uint64 {
	first, last := int(num)*BlockSize, int(num)*BlockSize+BlockSize-1
	a, z := max(first, int(lo)), min(last, int(hi))
	if a > z {
		return 0
	}
	m := ^uint64(0) >> (63 - (z - first))
	return m &^ (1<<(a-first) - 1)
}

// AllocSNAT picks the translated source for the connection whose forward
// key (zone = the router's tag) is fwd, among targets, reserves the port
// and adds the binding to tx. device is the router's id, what blocks are
// leased under. The port (ICMP: echo identifier) is one no local binding
// or open transaction holds, from a block this table leased: unique on the
// wire across hosts. flags are the packet's TCP flags.
//
// The address is chosen by a hash of the tuple, so a connection's retries
// keep their address; within a block the port is the first free one after
// a hash-chosen offset, so ports are not trivially predictable.
func (t *Table) AllocSNAT(tx *Tx, device string, fwd *Key, targets []Target, flags uint8, now int64) (Entry, error) {
	sp := spaceOf(fwd.Proto)
	if sp < 0 || sp == spaceEcho && fwd.Echo == 0 {
		return Entry{}, ErrNotTranslatable
	}
	if tx.n == MaxTxEntries {
		return Entry{}, ErrTxFull
	}
	h := splitmix.Mix64(fwd.Tag())
	t.mu.Lock()
	defer t.mu.Unlock()
	total := uint64(0)
	for i := range targets {
		total += targetSize(&targets[i], fwd.Family)
	}
	if total == 0 {
		t.stats.PortsExhausted++
		return Entry{}, ErrNoPorts
	}
	// Try a few addresses: a full one means the others are probably full
	// too, and the per-packet path must stay bounded.
	start := h % total
	for try := range min(total, 8) {
		ti, off := nth(targets, fwd.Family, (start+try)%total)
		tg := &targets[ti]
		addr := addAddr(tg.From, off)
		lo, hi := tg.PortFrom, tg.PortTo
		if lo == 0 {
			lo, hi = DefaultPortFrom, DefaultPortTo
		}
		for range 4 {
			port, ok := t.allocPort(device, fwd.Zone, addr, sp, lo, hi, h)
			if !ok {
				break
			}
			e := newSNAT(*fwd, addr, port, flags)
			if t.adopt(&e.Rev, now) {
				continue // the port was held by a restored binding, which now owns it
			}
			tx.add(e, true)
			return e, nil
		}
	}
	t.stats.PortsExhausted++
	return Entry{}, ErrNoPorts
}

// targetSize is the number of addresses of t of the given family.
func targetSize(t *Target, family uint8) uint64 {
	if !t.From.IsValid() || (family == 4) != t.From.Is4() {
		return 0
	}
	to := t.To
	if !to.IsValid() || to.Less(t.From) {
		to = t.From
	}
	a, b := t.From.As16(), to.As16()
	// Ranges wider than 2^32 addresses (IPv6) are used by their first
	// 2^32: more than any table can hold connections for.
	for i := 0; i < 12; i++ {
		if a[i] != b[i] {
			return 1 << 32
		}
	}
	lo := uint64(a[12])<<24 | uint64(a[13])<<16 | uint64(a[14])<<8 | uint64(a[15])
	hi := uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	return hi - lo + 1
}

// nth returns the target and offset of the i-th address over all targets.
func nth(targets []Target, family uint8, i uint64) (int, uint64) {
	for ti := range targets {
		n := targetSize(&targets[ti], family)
		if i < n {
			return ti, i
		}
		i -= n
	}
	return 0, 0
}

// addAddr returns a + off, within the range the target checked.
func addAddr(a netip.Addr, off uint64) netip.Addr {
	b := a.As16()
	for i := 15; i >= 0 && off != 0; i-- {
		s := uint64(b[i]) + off&0xff
		b[i] = byte(s)
		off = off>>8 + s>>8
	}
	r := netip.AddrFrom16(b)
	if a.Is4() {
		return r.Unmap()
	}
	return r
}

// allocPort reserves a port of space sp in [lo, hi] on addr: from a block
// the pool holds, else from a newly leased one.
func (t *Table) allocPort(device string, zone uint64, addr netip.Addr, sp int, lo, hi uint16, h uint64) (uint16, bool) {
	pk := poolKey{zone, addr.As16()}
	p := t.pools[pk]
	if p == nil {
		p = &pool{device: device, ip: addr}
		t.pools[pk] = p
	}
	n := len(p.blocks)
	for j := range n {
		b := &p.blocks[(int(h>>32)+j)%n]
		if port, ok := b.take(sp, rangeMask(b.num, lo, hi), h); ok {
			return port, true
		}
	}
	num, err := t.cfg.Blocks.Lease(p.device, addr, lo/BlockSize, hi/BlockSize)
	if err != nil {
		t.stats.LeaseFailures++
		return 0, false
	}
	// Keep blocks sorted by number so releasePort finds them by search.
	i, _ := slices.BinarySearchFunc(p.blocks, num, func(b block, n uint16) int { return int(b.num) - int(n) })
	p.blocks = slices.Insert(p.blocks, i, block{num: num})
	return p.blocks[i].take(sp, rangeMask(num, lo, hi), h)
}

// take marks a free port of space sp within allowed as used.
func (b *block) take(sp int, allowed uint64, h uint64) (uint16, bool) {
	free := ^b.used[sp] & allowed
	if free == 0 {
		return 0, false
	}
	r := uint(h & 63)
	if f := free &^ (1<<r - 1); f != 0 {
		free = f
	}
	bit := bits.TrailingZeros64(free)
	b.used[sp] |= 1 << bit
	return uint16(int(b.num)*BlockSize + bit), true
}

// releasePort returns a reserved or bound port to its block.
func (t *Table) releasePort(zone uint64, ip [16]byte, proto uint8, port uint16, now int64) {
	sp := spaceOf(proto)
	p := t.pools[poolKey{zone, ip}]
	if p == nil || sp < 0 {
		return
	}
	num := port / BlockSize
	i, ok := slices.BinarySearchFunc(p.blocks, num, func(b block, n uint16) int { return int(b.num) - int(n) })
	if !ok {
		return
	}
	b := &p.blocks[i]
	b.used[sp] &^= 1 << (port % BlockSize)
	if b.idle() {
		b.idleSince = now
	}
}

// releaseIdleBlocks returns blocks unused for longer than BlockIdle.
func (t *Table) releaseIdleBlocks(now int64) {
	for k, p := range t.pools {
		p.blocks = slices.DeleteFunc(p.blocks, func(b block) bool {
			if b.idle() && now-b.idleSince > int64(t.cfg.BlockIdle) {
				t.cfg.Blocks.Release(p.device, p.ip, b.num)
				return true
			}
			return false
		})
		if len(p.blocks) == 0 {
			delete(t.pools, k)
		}
	}
}

func (t *Table) portsInUse() (ports, blocks int) {
	for _, p := range t.pools {
		blocks += len(p.blocks)
		for i := range p.blocks {
			for _, m := range p.blocks[i].used {
				ports += bits.OnesCount64(m)
			}
		}
	}
	return ports, blocks
}

// Pick chooses, by h, one address of targets of the given family (4 or 6)
// and a port of that target's range, 0 when it has none (keep the
// original port). DNAT uses it: destinations need no port allocation,
// since the untranslated source keeps each connection's tuple unique.
func Pick(targets []Target, family uint8, h uint64) (netip.Addr, uint16, bool) {
	total := uint64(0)
	for i := range targets {
		total += targetSize(&targets[i], family)
	}
	if total == 0 {
		return netip.Addr{}, 0, false
	}
	ti, off := nth(targets, family, h%total)
	t := &targets[ti]
	var port uint16
	if t.PortFrom != 0 {
		span := uint64(t.PortTo) - uint64(t.PortFrom) + 1
		if t.PortTo < t.PortFrom {
			span = 1
		}
		port = t.PortFrom + uint16((h>>32)%span)
	}
	return addAddr(t.From, off), port, true
}

// adopt reports whether rev, the reverse key of a binding just given a
// port from this table's blocks, belongs to a live entry already: one this
// host made before a restart and restored (Restore cannot re-reserve the
// port, since the pool started empty). The entry then owns the port, so
// that its removal returns it, and the caller picks another one.
func (t *Table) adopt(rev *Key, now int64) bool {
	i, _, ok := t.locate(rev, t.hash(rev))
	if !ok || t.expired(i, now) {
		return false
	}
	x := t.ent(i)
	if x.fwd.Type == KeyFwdSNAT {
		x.flags |= fOwnsPort
	}
	return true
}
