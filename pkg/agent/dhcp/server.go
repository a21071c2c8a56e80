package dhcp

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

// Defaults for the zero Config.
const (
	DefaultLeaseTime = 24 * time.Hour
	// DefaultOfferHold is how long an offered pool address stays reserved
	// for the client that was offered it: long enough for a client to pick
	// among offers and REQUEST, short enough that a client which never
	// comes back does not hold the address for a lease time.
	DefaultOfferHold = time.Minute
	// DefaultDeclineHold keeps an address a client found in use (DHCPDECLINE:
	// something answered ARP for it) out of the pool for a while, so the
	// next client is not handed the same conflict.
	DefaultDeclineHold = 10 * time.Minute
)

// DefaultServerMAC is the source MAC of replies when Config sets none:
// locally administered, "nag" in the middle. No VM sees it as a neighbour:
// the agent intercepts the client's unicast renewals whatever their
// destination MAC.
var DefaultServerMAC = packet.MAC{0x02, 0x6e, 0x61, 0x67, 0x00, 0x01}

// Config tunes a Server. The zero value uses the defaults above.
type Config struct {
	LeaseTime   time.Duration // lease handed to clients (option 51); T1 is half, T2 seven eighths
	OfferHold   time.Duration // how long an offered pool address is held
	DeclineHold time.Duration // how long a declined address stays out of the pool
	ServerMAC   packet.MAC    // Ethernet source of replies
}

// Server answers DHCP for the subnets of one bridge and keeps the leases of
// its pool addresses. It is safe for concurrent use; Handle holds one lock
// for the whole packet (a few hundred nanoseconds), and the counters can be
// read at any time without it.
type Server struct {
	cfg                    Config
	leaseSec, t1Sec, t2Sec uint32

	mu      sync.Mutex
	subnets []*Subnet             // sorted by prefix: every agent probes them in the same order
	leases  map[uint32]lease      // pool address → holder
	byMAC   map[packet.MAC]uint32 // client → its pool address
	scratch [maxOptLen]byte       // options of the reply being built

	c counters
}

// lease is one pool address held by a client, or by nobody (zero MAC) after
// a DECLINE. It frees itself when it expires; until somebody else takes
// the address it still names its last holder, so that holder gets it back.
type lease struct {
	mac     packet.MAC
	expires time.Time
	bound   bool // ACKed; false while only offered
}

func (l lease) live(now time.Time) bool { return now.Before(l.expires) }

// NewServer returns a Server for the given subnets of one bridge.
func NewServer(cfg Config, subnets ...*Subnet) *Server {
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = DefaultOfferHold
	}
	if cfg.DeclineHold <= 0 {
		cfg.DeclineHold = DefaultDeclineHold
	}
	if cfg.ServerMAC.IsZero() {
		cfg.ServerMAC = DefaultServerMAC
	}
	sec := min(uint64(cfg.LeaseTime/time.Second), 0xfffffffe) // 0xffffffff would mean "infinite"
	s := &Server{
		cfg:      cfg,
		leaseSec: uint32(max(sec, 1)),
		leases:   make(map[uint32]lease),
		byMAC:    make(map[packet.MAC]uint32),
	}
	s.t1Sec, s.t2Sec = s.leaseSec/2, uint32(uint64(s.leaseSec)*7/8)
	s.SetSubnets(subnets...)
	return s
}

// SetSubnets replaces the bridge's subnets, as the NSDB changed them. Leases
// on addresses that are no longer in any pool (the subnet went away, or the
// address became a fixed host's) are forgotten; the others are kept.
func (s *Server) SetSubnets(subnets ...*Subnet) {
	sorted := slices.Clone(subnets)
	slices.SortFunc(sorted, func(a, b *Subnet) int {
		if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
			return c
		}
		return a.prefix.Bits() - b.prefix.Bits()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subnets = sorted
	for a, l := range s.leases {
		if sub := s.subnetOf(a); sub == nil || !sub.leasable(a) {
			s.forget(a, l)
		}
	}
}

// Sweep forgets the leases that expired before now and returns how many.
// Handle reclaims expired leases lazily, so Sweep only bounds memory: call it
// now and then (say hourly) where clients come and go.
func (s *Server) Sweep(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for a, l := range s.leases {
		if !l.live(now) {
			s.forget(a, l)
			n++
		}
	}
	return n
}

// Lease reports the pool address held for mac and when its lease ends.
// Fixed hosts have no lease. For diagnostics (trace, CLI).
func (s *Server) Lease(mac packet.MAC) (addr netip.Addr, expires time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byMAC[mac]
	if !ok {
		return netip.Addr{}, time.Time{}, false
	}
	return addr4(a), s.leases[a].expires, true
}

// Stats returns the counters since NewServer.
func (s *Server) Stats() Stats { return s.c.snapshot() }

// noReply is handle's verdict for a message that needs no answer (RELEASE,
// DECLINE) and is not a drop.
const noReply = DropReason(255)

// Handle answers one frame a VM sent — Ethernet, IPv4, UDP to port 67,
// DHCP — as pkg/packet decoded it. It writes the reply frame (Ethernet,
// IPv4, UDP 67→68, DHCP) into out and returns its length and true, or
// returns false when there is nothing to send: the frame was dropped (see
// Stats) or was a RELEASE or DECLINE. now is the current time, for leases.
// out must not overlap the frame; MaxReplyLen bytes always suffice.
func (s *Server) Handle(p *packet.Parsed, now time.Time, out []byte) (n int, ok bool) {
	s.mu.Lock()
	n, r := s.handle(p, now, out)
	s.mu.Unlock()
	if n > 0 {
		return n, true
	}
	if r < NumDropReasons {
		s.c.drops[r].Add(1)
	}
	return 0, false
}

// answer is what a reply says; reply turns it into a frame.
type answer struct {
	sub    *Subnet
	msg    uint8
	yiaddr uint32
	name   string // option 12, fixed hosts only
	text   string // option 56, NAKs only
	opts   []byte // a fixed host's own option set, replacing the subnet's (nil: the subnet's)
}

func (s *Server) handle(p *packet.Parsed, now time.Time, out []byte) (int, DropReason) {
	var q request
	if r, ok := parse(p, &q); !ok {
		return 0, r
	}
	switch q.msgType {
	case msgDiscover:
		return s.discover(&q, now, out)
	case msgRequest:
		return s.request(&q, now, out)
	case msgInform:
		return s.inform(&q, out)
	case msgRelease:
		return s.release(&q)
	case msgDecline:
		return s.decline(&q, now)
	}
	return 0, DropBadMessageType
}

func (s *Server) discover(q *request, now time.Time, out []byte) (int, DropReason) {
	if sub, h, r := s.host(q.mac); sub != nil {
		return s.reply(out, q, answer{sub: sub, msg: msgOffer, yiaddr: h.addr, name: h.name, opts: h.opts})
	} else if r != noReply {
		return 0, r
	}
	sub, a, r := s.pick(q, now)
	if sub == nil {
		return 0, r
	}
	exp := now.Add(s.cfg.OfferHold)
	bound := false
	if l, ok := s.leases[a]; ok && l.mac == q.mac {
		// Re-offering a bound address must not shorten the lease, nor turn
		// it back into a mere offer.
		if l.expires.After(exp) {
			exp = l.expires
		}
		bound = l.bound && l.live(now)
	}
	s.bind(q.mac, a, exp, bound)
	return s.reply(out, q, answer{sub: sub, msg: msgOffer, yiaddr: a})
}

// pick chooses a pool address for a client without a fixed one, in the
// order of RFC 2131 §4.3.1: its current or last binding, the address it
// asks for, a new one.
func (s *Server) pick(q *request, now time.Time) (*Subnet, uint32, DropReason) {
	if a, ok := s.byMAC[q.mac]; ok {
		if sub := s.subnetOf(a); sub != nil && !sub.disabled && s.free(sub, a, q.mac, now) {
			return sub, a, 0
		}
	}
	if q.hasRequested {
		if sub := s.subnetOf(q.requested); sub != nil && !sub.disabled && s.free(sub, q.requested, q.mac, now) {
			return sub, q.requested, 0
		}
	}
	enabled := false
	for _, sub := range s.subnets {
		if sub.disabled {
			continue
		}
		enabled = true
		if a, ok := s.allocate(sub, q.mac, now); ok {
			return sub, a, 0
		}
	}
	switch {
	case len(s.subnets) == 0:
		return nil, 0, DropNoSubnet
	case !enabled:
		return nil, 0, DropDisabled
	}
	return nil, 0, DropPoolExhausted
}

// allocate probes sub's pool from the MAC's hash slot (see the package
// comment for why the order must be the same on every agent).
func (s *Server) allocate(sub *Subnet, mac packet.MAC, now time.Time) (uint32, bool) {
	if sub.size == 0 {
		return 0, false
	}
	// Each address the probe skips is reserved or leased, so after one more
	// step than there are such addresses the probe has met a free one, or
	// the pool is full: a DISCOVER costs O(occupied), not O(pool size).
	steps := min(uint64(sub.size), uint64(len(sub.reserved)+len(s.leases)+1))
	start := macSlot(mac, sub.size)
	for i := uint64(0); i < steps; i++ {
		a := sub.first + uint32((uint64(start)+i)%uint64(sub.size))
		if s.free(sub, a, mac, now) {
			return a, true
		}
	}
	return 0, false
}

// macSlot is FNV-1a of the MAC, reduced to the pool. Agents of different
// versions must agree on it.
func macSlot(mac packet.MAC, size uint32) uint32 {
	h := uint32(2166136261)
	for _, b := range mac {
		h ^= uint32(b)
		h *= 16777619
	}
	return h % size
}

// free reports whether mac may hold a in sub: a is in the pool and nobody
// else holds a live lease on it.
func (s *Server) free(sub *Subnet, a uint32, mac packet.MAC, now time.Time) bool {
	if !sub.leasable(a) {
		return false
	}
	l, ok := s.leases[a]
	return !ok || l.mac == mac || !l.live(now)
}

// bind records that mac holds a until exp, dropping what either held before.
func (s *Server) bind(mac packet.MAC, a uint32, exp time.Time, bound bool) {
	if old, ok := s.byMAC[mac]; ok && old != a {
		s.forget(old, s.leases[old])
	}
	if l, ok := s.leases[a]; ok && l.mac != mac {
		s.forget(a, l)
	}
	s.leases[a] = lease{mac: mac, expires: exp, bound: bound}
	s.byMAC[mac] = a
}

func (s *Server) forget(a uint32, l lease) {
	delete(s.leases, a)
	if b, ok := s.byMAC[l.mac]; ok && b == a {
		delete(s.byMAC, l.mac)
	}
}

func (s *Server) request(q *request, now time.Time, out []byte) (int, DropReason) {
	var a uint32
	switch {
	case q.hasServerID: // SELECTING: answers one of the offers
		if !s.ours(q.serverID) {
			// The client took another server's offer: free ours now
			// rather than when the hold runs out.
			if b, ok := s.byMAC[q.mac]; ok && !s.leases[b].bound {
				s.forget(b, s.leases[b])
			}
			return 0, DropNotForUs
		}
		if !q.hasRequested {
			return 0, DropBadRequest
		}
		a = q.requested
	case q.hasRequested: // INIT-REBOOT: checks a remembered address
		a = q.requested
	case q.ciaddr != 0: // RENEWING or REBINDING
		a = q.ciaddr
	default:
		return 0, DropBadRequest
	}

	if sub, h, r := s.host(q.mac); sub != nil {
		if a != h.addr {
			return s.nak(out, q, sub, "address not assigned to this client")
		}
		return s.reply(out, q, answer{sub: sub, msg: msgAck, yiaddr: a, name: h.name, opts: h.opts})
	} else if r != noReply {
		return 0, r
	}
	sub := s.subnetOf(a)
	if sub == nil {
		// Wrong network (RFC 2131 §4.3.2): the client moved, or remembers
		// a network this bridge does not serve.
		return s.nak(out, q, s.firstEnabled(), "wrong network")
	}
	if sub.disabled {
		return 0, DropDisabled
	}
	if !s.free(sub, a, q.mac, now) {
		return s.nak(out, q, sub, "address not available")
	}
	s.bind(q.mac, a, now.Add(s.cfg.LeaseTime), true)
	return s.reply(out, q, answer{sub: sub, msg: msgAck, yiaddr: a})
}

func (s *Server) nak(out []byte, q *request, sub *Subnet, text string) (int, DropReason) {
	if sub == nil {
		if len(s.subnets) == 0 {
			return 0, DropNoSubnet
		}
		return 0, DropDisabled
	}
	return s.reply(out, q, answer{sub: sub, msg: msgNak, text: text})
}

func (s *Server) inform(q *request, out []byte) (int, DropReason) {
	if q.ciaddr == 0 {
		return 0, DropBadRequest
	}
	sub := s.subnetOf(q.ciaddr)
	switch {
	case sub == nil:
		return 0, DropNoSubnet
	case sub.disabled:
		return 0, DropDisabled
	}
	a := answer{sub: sub, msg: msgAck}
	if h, ok := sub.hosts[q.mac]; ok && h.addr == q.ciaddr {
		a.name, a.opts = h.name, h.opts
	}
	return s.reply(out, q, a)
}

func (s *Server) release(q *request) (int, DropReason) {
	if q.hasServerID && !s.ours(q.serverID) {
		return 0, DropNotForUs
	}
	if l, ok := s.leases[q.ciaddr]; ok && l.mac == q.mac {
		s.forget(q.ciaddr, l)
	}
	s.c.releases.Add(1)
	return 0, noReply
}

func (s *Server) decline(q *request, now time.Time) (int, DropReason) {
	if q.hasServerID && !s.ours(q.serverID) {
		return 0, DropNotForUs
	}
	if !q.hasRequested {
		return 0, DropBadRequest
	}
	// Only the holder may decline, or a VM could empty the pool by
	// declining addresses it was never given.
	if l, ok := s.leases[q.requested]; ok && l.mac == q.mac {
		s.forget(q.requested, l)
		s.leases[q.requested] = lease{expires: now.Add(s.cfg.DeclineHold)}
	}
	s.c.declines.Add(1)
	return 0, noReply
}

// host finds the fixed address of mac in an enabled subnet. With none, r is
// DropDisabled when mac has one only in disabled subnets (it must not fall
// back to the pool: its address is reserved elsewhere), else noReply.
func (s *Server) host(mac packet.MAC) (sub *Subnet, h fixedHost, r DropReason) {
	r = noReply
	for _, c := range s.subnets {
		if fh, ok := c.hosts[mac]; ok {
			if !c.disabled {
				return c, fh, 0
			}
			r = DropDisabled
		}
	}
	return nil, fixedHost{}, r
}

func (s *Server) subnetOf(a uint32) *Subnet {
	for _, sub := range s.subnets {
		if sub.contains(a) {
			return sub
		}
	}
	return nil
}

func (s *Server) firstEnabled() *Subnet {
	for _, sub := range s.subnets {
		if !sub.disabled {
			return sub
		}
	}
	return nil
}

func (s *Server) ours(id uint32) bool {
	for _, sub := range s.subnets {
		if sub.server == id && !sub.disabled {
			return true
		}
	}
	return false
}

// reply writes the answer as a whole frame into out, addressed per RFC 2131
// §4.1 (giaddr is always zero here), and counts it.
func (s *Server) reply(out []byte, q *request, a answer) (int, DropReason) {
	w := optWriter{b: s.scratch[:0]}
	w.byte1(optMsgType, a.msg)
	w.u32(optServerID, a.sub.server)
	if a.msg == msgNak {
		w.str(optMessage, a.text)
	} else {
		if q.msgType != msgInform { // RFC 2131 table 3: no lease times in an INFORM's ACK
			w.u32(optLeaseTime, s.leaseSec)
			w.u32(optRenewal, s.t1Sec)
			w.u32(optRebinding, s.t2Sec)
		}
		if a.opts != nil {
			w.b = append(w.b, a.opts...)
		} else {
			w.b = append(w.b, a.sub.opts...)
		}
		if a.name != "" {
			w.str(optHostName, a.name)
		}
	}
	w.b = append(w.b, optEnd)

	const hdr = packet.UDP4HeaderLen
	dlen := max(dhcpHdrLen+len(w.b), bootpMin)
	if len(out) < hdr+dlen {
		return 0, DropOutTooSmall
	}
	d := out[hdr : hdr+dlen]
	clear(d)
	d[0], d[1], d[2] = 2, 1, 6 // BOOTREPLY, Ethernet
	copy(d[4:8], q.xid[:])
	binary.BigEndian.PutUint16(d[10:], q.flags)
	if a.msg == msgAck {
		put4(d[12:], q.ciaddr) // zero in OFFER and NAK
	}
	put4(d[16:], a.yiaddr)
	copy(d[28:44], q.chaddr[:])
	copy(d[236:240], magicCookie[:])
	copy(d[240:], w.b)

	dstMAC, dstIP := packet.BroadcastMAC, uint32(0xffffffff)
	switch {
	case a.msg == msgNak:
		// A NAK goes to everyone: the client's address is the one in doubt.
	case q.ciaddr != 0:
		dstMAC, dstIP = q.mac, q.ciaddr
	case q.flags&flagBroadcast != 0:
		// The client cannot receive unicast before it has an address.
	default:
		dstMAC, dstIP = q.mac, a.yiaddr
	}
	n, err := packet.BuildUDP4(out, packet.UDP4{
		EthSrc: s.cfg.ServerMAC, EthDst: dstMAC, Src: addr4(a.sub.server), Dst: addr4(dstIP),
		SrcPort: portServer, DstPort: portClient,
	}, dlen)
	if err != nil {
		return 0, DropOutTooSmall // cannot happen: out holds hdr+dlen and both addresses are IPv4
	}

	switch a.msg {
	case msgOffer:
		s.c.offers.Add(1)
	case msgAck:
		s.c.acks.Add(1)
		if q.msgType == msgInform {
			s.c.informs.Add(1)
		}
	case msgNak:
		s.c.naks.Add(1)
	}
	return n, 0
}
