package gateway

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Static uplinks have no BGP session to tell whether their upstream is
// there: the gateway asks their routes' next hops with ARP, every
// interval, from the router port, out of the uplink's interface. An
// uplink whose next hops all stay silent for the detection time is
// unhealthy, like one whose sessions are down.
//
// The answers arrive on the uplink as any ARP reply to the router would.
// The slow path shows them here first (Punt): one that repeats what the
// router already knows is taken, so that probing ten times a second does
// not also mean learning (and publishing to the NSDB) ten times a second;
// a new or changed answer, and one every refresh period, still go on to
// the simulation, which keeps the router's ARP cache.
type nextHops struct {
	g *Gateways
	// active is set while some local uplink has static next hops, so the
	// slow path's hook costs one atomic load otherwise.
	active atomic.Bool
	// dp maps ports to datapath indexes and back (the bindings).
	dp atomic.Pointer[bindings]

	mu   sync.Mutex
	hops map[hopKey]*hop
}

type bindings struct {
	portToDP map[string]int32
	dpToPort map[int32]string
}

type hopKey struct {
	port string
	ip   netip.Addr
}

type hop struct {
	seen   time.Time  // last answer
	mac    packet.MAC // what it answered
	passed time.Time  // last answer let through to the router
}

// refreshPass is how often a repeated answer still reaches the router,
// well within its ARP cache's lifetime.
const refreshPass = 10 * time.Second

func newNextHops(g *Gateways) *nextHops {
	h := &nextHops{g: g, hops: map[hopKey]*hop{}}
	h.dp.Store(&bindings{portToDP: map[string]int32{}, dpToPort: map[int32]string{}})
	return h
}

// SetBindings takes the ports attached to the datapath (ports.Bindings).
func (g *Gateways) SetBindings(portToDP map[string]int32, dpToPort map[int32]string) {
	g.hops.dp.Store(&bindings{portToDP: portToDP, dpToPort: dpToPort})
}

// reachable reports whether one of u's next hops answered within the
// detection time. g.mu is held (not h.mu).
func (h *nextHops) reachable(u uplink, now time.Time) bool {
	limit := h.g.cfg.Interval * time.Duration(h.g.cfg.Multiplier+1)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ip := range u.nextHops {
		if x := h.hops[hopKey{u.port, ip}]; x != nil && now.Sub(x.seen) <= limit {
			return true
		}
	}
	return false
}

// send asks every static next hop of the uplinks bound here. It runs on
// the heartbeat, after the uplinks were judged.
func (h *nextHops) send(local map[string]uplink) {
	b := h.dp.Load()
	// Active before the first request leaves: its answer must be seen.
	h.active.Store(slices.ContainsFunc(slices.Collect(maps.Values(local)), func(u uplink) bool { return len(u.nextHops) > 0 }))
	var frame [64]byte
	for _, u := range local {
		if len(u.nextHops) == 0 {
			continue
		}
		dp, ok := b.portToDP[u.port]
		if !ok || !u.addr.Is4() {
			continue // not attached yet; IPv6 next hops are not probed
		}
		acts := []flow.Action{{Type: flow.ActOutput, Port: dp}}
		for _, ip := range u.nextHops {
			if !ip.Is4() {
				continue
			}
			n, err := packet.BuildARPRequest(frame[:], u.mac, u.addr, ip)
			if err != nil {
				continue
			}
			if h.g.cfg.Datapath.Execute(-1, frame[:n], acts) == nil {
				h.g.met.arpProbes.Inc()
			}
		}
	}
}

// Punt implements the slow path's hook for the probes' answers: it
// records an ARP reply from a static next hop of an uplink bound here,
// and takes it (true) when the router needs no news from it.
func (g *Gateways) Punt(u *datapath.Upcall) bool {
	h := g.hops
	if !h.active.Load() || !u.Pkt.IsARPReply() {
		return false
	}
	port, ok := h.dp.Load().dpToPort[u.InPort]
	if !ok {
		return false
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	k := hopKey{port, u.Pkt.ARPSenderIP}
	x := h.hops[k]
	if x == nil {
		// Not (yet) known as a next hop here: remember it anyway, the
		// next topology may make it one. The map stays small: only ARP
		// replies to this host's uplinks get here.
		if len(h.hops) > 4096 {
			return false
		}
		x = &hop{}
		h.hops[k] = x
	}
	x.seen = now
	if x.mac == u.Pkt.ARPSenderMAC && now.Sub(x.passed) < refreshPass {
		return true
	}
	x.mac, x.passed = u.Pkt.ARPSenderMAC, now
	return false
}
