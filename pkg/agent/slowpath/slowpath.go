// Package slowpath is the agent's miss handler: a packet that missed the
// datapath's flow table is answered here if it is DHCP, and otherwise
// simulated through the virtual topology (pkg/sim); the result is
// installed as a flow, so that the flow's later packets stay in the
// datapath, and the packet itself executed. Packets waiting for a next
// hop's ARP/ND answer are parked and simulated again when it comes.
//
// Misses run on the datapath's port goroutines, concurrently. Each takes
// a pooled worker (a Simulator and its buffers) and reads an immutable
// view of the topology and the bindings, swapped whenever either changes:
// the miss path takes no lock of the agent's.
package slowpath

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// Datapath is how the slow path installs and executes flows.
type Datapath interface {
	Install(spec *datapath.FlowSpec) error
	Invalidate(tags ...uint64) int
	Execute(inPort int32, frame []byte, actions []flow.Action) error
}

// Generational is a Datapath whose invalidations are numbered. A flow
// simulated before an invalidation may have read what it changed (a
// connection's state imported from a peer, a topology object) and must
// not be installed after it: the invalidation would not see it and it
// would outlive the change. InstallAt installs only if no invalidation
// after generation gen but skip (the walk's own state push; 0: none) may
// have removed a flow with one of spec's tags (Generations); the packet
// is executed either way, and the next one misses and is simulated
// again, as OVS's handlers do against revalidation.
type Generational interface {
	Generation() uint64
	InstallAt(gen, skip uint64, spec *datapath.FlowSpec) (installed bool, err error)
}

// Neighbors is the routers' neighbor table: read by the simulation, told
// what this host's simulations learn.
type Neighbors interface {
	sim.ARPTable
	LearnNeighbor(n sim.Neighbor, at time.Time)
}

// StateSync pushes a new connection's entries to the hosts that may see
// its replies (statesync.Sync); buf and tags are scratch, returned grown,
// and own is the generation of the push's own invalidation (0: none).
// Offload hands the entries of the keys a forwarded walk read to a
// datapath that tracks connections itself, before the flow that names
// them is installed.
type StateSync interface {
	Push(entries []flowstate.Entry, peers []netip.Addr, buf []byte, tags []uint64) (b []byte, t []uint64, own uint64)
	Offload(keys []flowstate.Key)
}

// Punter takes the agent's own control traffic before it is simulated
// (a BGP speaker's sessions on an uplink, next-hop probes' answers). Punt
// reports whether it took the packet; it runs on the miss path, must not
// block and should not allocate.
type Punter interface {
	Punt(u *datapath.Upcall) bool
}

// Config wires the slow path.
type Config struct {
	HostID      string
	UnderlayMTU int
	Datapath    Datapath
	MACs        sim.MACTable
	Neighbors   Neighbors
	// FlowState is the connection-tracking and NAT table; nil is
	// stateless.
	FlowState sim.FlowState
	State     StateSync
	// Liveness says which uplinks carry traffic (pkg/agent/gateway);
	// nil: all of them.
	Liveness sim.Liveness
	// Punt sees every miss first; nil takes nothing.
	Punt       Punter
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Handler handles misses: it implements datapath.MissHandler.
type Handler struct {
	cfg     Config
	met     *metrics
	view    atomic.Pointer[view]
	workers sync.Pool // *worker
	park    *parking
	views   viewBuilder
}

// New returns a handler with an empty view (no topology, no bindings)
// and registers its metrics.
func New(cfg Config) (*Handler, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Handler{cfg: cfg, park: newParking()}
	var err error
	if h.met, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	h.views.init(cfg)
	h.view.Store(h.views.build())
	return h, nil
}

// worker is the scratch state of one miss: a Simulator (which holds walk
// state), its Result, and buffers.
type worker struct {
	version uint64
	sim     *sim.Simulator
	res     *sim.Result
	acts    []flow.Action
	gacts   []flow.Action
	dhcpOut []byte
	pkt     packet.Parsed
	// stateBuf holds the flow-state packet a new connection pushes,
	// stateTags the tags of its entries.
	stateBuf  []byte
	stateTags []uint64
}

func (h *Handler) getWorker(v *view) *worker {
	w, _ := h.workers.Get().(*worker)
	if w == nil {
		w = &worker{res: sim.NewResult(), acts: make([]flow.Action, 0, sim.MaxActions),
			gacts: make([]flow.Action, 0, sim.MaxGeneratedActions), dhcpOut: make([]byte, 1024),
			stateBuf:  make([]byte, 0, flowstate.WireHeaderLen+flowstate.MaxTxEntries*flowstate.MaxEntryWireLen),
			stateTags: make([]uint64, 0, 2*flowstate.MaxTxEntries)}
	}
	if w.sim == nil {
		c := sim.Config{HostID: h.cfg.HostID, MACs: h.cfg.MACs, ARP: h.cfg.Neighbors, UnderlayMTU: h.cfg.UnderlayMTU,
			Liveness: h.cfg.Liveness}
		if h.cfg.FlowState != nil {
			c.FlowState = h.cfg.FlowState
		}
		w.sim = sim.NewSimulator(v.topo, c)
		w.version = v.version
	} else if w.version != v.version {
		w.sim.SetTopology(v.topo)
		w.version = v.version
	}
	return w
}

// Miss implements datapath.MissHandler.
func (h *Handler) Miss(u *datapath.Upcall) {
	h.met.upcalls.Inc()
	if h.cfg.Punt != nil && h.cfg.Punt.Punt(u) {
		return
	}
	v := h.view.Load()
	w := h.getWorker(v)
	defer h.workers.Put(w)
	if h.answerDHCP(v, w, u) {
		return
	}
	h.simulate(v, w, u.InPort, u.PortID, u.Pkt, u.Frame, &u.Key, true)
}

// install installs spec unless the datapath is Generational and an
// invalidation since generation gen, read before the simulation, other
// than the walk's own state push (skip), may have changed what it read.
func (h *Handler) install(gen, skip uint64, spec *datapath.FlowSpec) error {
	g, ok := h.cfg.Datapath.(Generational)
	if !ok {
		return h.cfg.Datapath.Install(spec)
	}
	installed, err := g.InstallAt(gen, skip, spec)
	if err == nil && !installed {
		h.met.installStale.Inc()
	}
	return err
}

// simulate runs one walk and carries out its result. key is nil for a
// re-simulated parked packet, which is sent but gets no flow (its later
// packets will miss and install one).
func (h *Handler) simulate(v *view, w *worker, inPort int32, portID string, pkt *packet.Parsed, frame []byte, key *flow.Key, install bool) {
	dp := h.cfg.Datapath
	var gen uint64
	if g, ok := dp.(Generational); ok {
		gen = g.Generation()
	}
	start := time.Now()
	w.res.Reset()
	w.sim.Simulate(&sim.Input{InPortID: portID, Pkt: pkt, Frame: frame, Now: start.UnixNano()}, w.res)
	h.met.simSeconds.Observe(time.Since(start).Seconds())
	res := w.res
	if l := res.Learned; l.RouterID != "" {
		h.cfg.Neighbors.LearnNeighbor(l, start)
		defer h.ReleaseParked(l.RouterID, l.IP)
	}
	acts, ok := translate(v, res.Actions(), w.acts[:0])
	switch res.Verdict {
	case sim.Forward:
		if !ok {
			h.met.drop("output-not-attached")
			break
		}
		var own uint64
		if len(res.StateEntries()) > 0 {
			own = h.pushState(v, w, portID, res, acts)
		}
		if keys := res.StateKeys(); len(keys) > 0 && h.cfg.State != nil {
			h.cfg.State.Offload(keys)
		}
		if install && key != nil && !res.TagsOverflowed && !res.SlowPath {
			err := h.install(gen, own, &datapath.FlowSpec{Key: *key, Actions: acts, Tags: res.Tags(), Class: datapath.ClassNormal, MTU: res.MTU,
				State: res.StateKeys()})
			if err != nil {
				h.met.drop("install-failed")
			}
		}
		_ = dp.Execute(inPort, frame, acts)
	case sim.Drop:
		h.met.simDrop(res.Reason)
		// A drop that answered with an ICMP error or reset is not cached:
		// every packet of the flow deserves its own answer. Nor is one
		// that depends on the packet's length, which the key does not
		// hold: the flow's small packets must still pass.
		if install && key != nil && len(res.Generated()) == 0 && !res.TagsOverflowed && !res.SlowPath && !lengthDependent(res.Reason) {
			_ = h.install(gen, 0, &datapath.FlowSpec{Key: *key, Tags: res.Tags(), Class: datapath.ClassDrop})
		}
	case sim.NeedARP:
		h.park.add(res.NextHopRouter, res.NextHop, inPort, portID, frame, start)
	}
	for _, g := range res.Generated() {
		gacts, ok := translate(v, res.GeneratedActions(g), w.gacts[:0])
		if ok {
			_ = dp.Execute(-1, res.Frame(g), gacts)
			h.met.generated.Inc()
		}
	}
}

// maxStatePeers bounds the hosts one connection's state is pushed to.
const maxStatePeers = 32

// pushState sends the entries a walk created to every other host that may
// see the connection's replies: the hosts the packet is tunnelled to, and
// the hosts of the ports of stateful port groups that hold the ingress or
// an egress port (several uplinks on several gateways: a reply may come
// back through any of them). It returns the generation of the push's own
// invalidation, which the walk's flow does not have to fear.
func (h *Handler) pushState(v *view, w *worker, ingress string, res *sim.Result, acts []flow.Action) uint64 {
	var peers [maxStatePeers]netip.Addr
	n := 0
	add := func(p netip.Addr) {
		if !p.IsValid() || n == len(peers) {
			return
		}
		for _, q := range peers[:n] {
			if q == p {
				return
			}
		}
		peers[n] = p
		n++
	}
	for _, p := range v.statefulPeers[ingress] {
		add(p)
	}
	for i := range acts {
		switch acts[i].Type {
		case flow.ActEncap:
			add(acts[i].Underlay)
			fallthrough
		case flow.ActOutput:
			for _, p := range v.statefulPeers[acts[i].PortID] {
				add(p)
			}
		}
	}
	var own uint64
	w.stateBuf, w.stateTags, own = h.cfg.State.Push(res.StateEntries(), peers[:n], w.stateBuf, w.stateTags)
	return own
}

// lengthDependent reports drops decided by the packet's length (too big for
// the path), which a flow, keyed on headers only, cannot repeat.
func lengthDependent(r sim.DropReason) bool {
	return r == sim.DropMTUExceeded || r == sim.DropFragmentationUnsupported || r == sim.DropFragNeeded
}

// translate rewrites the simulation's port references (topology indexes)
// to this agent's datapath indexes. ok is false when an output names a port
// that is bound here but not attached (its interface is gone).
func translate(v *view, in []flow.Action, out []flow.Action) ([]flow.Action, bool) {
	ok := true
	for _, act := range in {
		if act.Type == flow.ActOutput {
			idx, found := v.portToDP[act.PortID]
			if !found {
				ok = false
				continue
			}
			act.Port = idx
		}
		out = append(out, act)
	}
	return out, ok
}

// answerDHCP answers a DHCP request from a VM port of a bridge with DHCP
// subnets. DHCP never enters the simulation and never leaves the host.
func (h *Handler) answerDHCP(v *view, w *worker, u *datapath.Upcall) bool {
	p := u.Pkt
	if p.L4 != packet.L4UDP || p.DstPort != 67 || p.SrcPort != 68 {
		return false
	}
	bridge, _ := v.topo.PortBridge(u.PortID)
	srv := v.dhcp[bridge]
	if srv == nil {
		return false
	}
	n, ok := srv.Handle(p, time.Now(), w.dhcpOut)
	if ok {
		out := [1]flow.Action{{Type: flow.ActOutput, Port: u.InPort, PortID: u.PortID}}
		_ = h.cfg.Datapath.Execute(-1, w.dhcpOut[:n], out[:])
		h.met.dhcpReplies.Inc()
	}
	return true
}
