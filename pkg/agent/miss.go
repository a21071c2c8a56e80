package agent

import (
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// worker is the scratch state of one miss: a Simulator (which holds walk
// state), its Result, and buffers. Workers are pooled: misses run on the
// datapath's port goroutines, concurrently.
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

func (a *Agent) getWorker(v *view) *worker {
	w, _ := a.workers.Get().(*worker)
	if w == nil {
		w = &worker{res: sim.NewResult(), acts: make([]flow.Action, 0, sim.MaxActions),
			gacts: make([]flow.Action, 0, sim.MaxGeneratedActions), dhcpOut: make([]byte, 1024),
			stateBuf:  make([]byte, 0, flowstate.WireHeaderLen+flowstate.MaxTxEntries*flowstate.MaxEntryWireLen),
			stateTags: make([]uint64, 0, 2*flowstate.MaxTxEntries)}
	}
	if w.sim == nil {
		w.sim = sim.NewSimulator(v.topo, a.simConfig())
		w.version = v.version
	} else if w.version != v.version {
		w.sim.SetTopology(v.topo)
		w.version = v.version
	}
	return w
}

func (a *Agent) simConfig() sim.Config {
	c := sim.Config{HostID: a.hostID, MACs: a.macs, ARP: a.arp, UnderlayMTU: a.cfg.UnderlayMTU}
	if a.fs != nil {
		c.FlowState = a.fs
	}
	return c
}

// miss handles a packet that missed the flow table: DHCP is answered here;
// everything else is simulated and, when the result is cacheable, installed
// as a flow before the packet itself is sent.
func (a *Agent) miss(u *datapath.Upcall) {
	v := a.view.Load()
	w := a.getWorker(v)
	defer a.workers.Put(w)
	a.met.upcalls.Inc()
	if a.answerDHCP(v, w, u) {
		return
	}
	a.simulate(v, w, u.InPort, u.PortID, u.Pkt, u.Frame, &u.Key, true)
}

// simulate runs one walk and carries out its result. key is nil for a
// re-simulated parked packet, which is sent but gets no flow (its later
// packets will miss and install one).
func (a *Agent) simulate(v *view, w *worker, inPort int32, portID string, pkt *packet.Parsed, frame []byte, key *flow.Key, install bool) {
	start := time.Now()
	w.res.Reset()
	w.sim.Simulate(&sim.Input{InPortID: portID, Pkt: pkt, Frame: frame, Now: start.UnixNano()}, w.res)
	a.met.simSeconds.Observe(time.Since(start).Seconds())
	res := w.res
	if l := res.Learned; l.RouterID != "" {
		a.arp.learn(l.RouterID, l.IP, l.MAC, start)
		a.met.flowsInvalidated.Add(float64(a.dp.Invalidate(sim.ARPEntryTag(l.RouterID, l.IP))))
		a.nbrs.publish(l, start) // the host that asked is usually another one
		defer a.releaseParked(l.RouterID, l.IP)
	}
	acts, ok := translate(v, res.Actions(), w.acts[:0])
	switch res.Verdict {
	case sim.Forward:
		if !ok {
			a.met.drop("output-not-attached")
			break
		}
		if len(res.StateEntries()) > 0 {
			a.pushState(v, w, portID, res, acts)
		}
		if install && key != nil && !res.TagsOverflowed && !res.SlowPath {
			err := a.dp.Install(&datapath.FlowSpec{Key: *key, Actions: acts, Tags: res.Tags(), Class: datapath.ClassNormal, MTU: res.MTU,
				State: res.StateKeys()})
			if err != nil {
				a.met.drop("install-failed")
			}
		}
		_ = a.dp.Execute(inPort, frame, acts)
	case sim.Drop:
		a.met.simDrop(res.Reason)
		// A drop that answered with an ICMP error or reset is not cached:
		// every packet of the flow deserves its own answer. Nor is one
		// that depends on the packet's length, which the key does not
		// hold: the flow's small packets must still pass.
		if install && key != nil && len(res.Generated()) == 0 && !res.TagsOverflowed && !res.SlowPath && !lengthDependent(res.Reason) {
			_ = a.dp.Install(&datapath.FlowSpec{Key: *key, Tags: res.Tags(), Class: datapath.ClassDrop})
		}
	case sim.NeedARP:
		a.park.add(res.NextHopRouter, res.NextHop, inPort, portID, frame, start)
	}
	for _, g := range res.Generated() {
		gacts, ok := translate(v, res.GeneratedActions(g), w.gacts[:0])
		if ok {
			_ = a.dp.Execute(-1, res.Frame(g), gacts)
			a.met.generated.Inc()
		}
	}
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
func (a *Agent) answerDHCP(v *view, w *worker, u *datapath.Upcall) bool {
	p := u.Pkt
	if p.L4 != packet.L4UDP || p.DstPort != 67 || p.SrcPort != 68 {
		return false
	}
	srv := v.dhcp[v.portBridge[u.PortID]]
	if srv == nil {
		return false
	}
	n, ok := srv.Handle(p, time.Now(), w.dhcpOut)
	if ok {
		out := [1]flow.Action{{Type: flow.ActOutput, Port: u.InPort, PortID: u.PortID}}
		_ = a.dp.Execute(-1, w.dhcpOut[:n], out[:])
		a.met.dhcpReplies.Inc()
	}
	return true
}

// parking holds packets waiting for a next hop's ARP/ND answer, bounded in
// count and time (MidoNet's waiting room: 3 s).
type parking struct {
	mu    sync.Mutex
	items map[parkKey][]parked
	total int
}

type parkKey struct {
	router string
	ip     string
}

type parked struct {
	inPort int32
	portID string
	frame  []byte
	at     time.Time
}

const (
	parkTimeout  = 3 * time.Second
	parkPerKey   = 16
	parkTotalMax = 4096
)

func newParking() *parking { return &parking{items: map[parkKey][]parked{}} }

func (p *parking) add(router string, ip interface{ String() string }, inPort int32, portID string, frame []byte, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := parkKey{router, ip.String()}
	list := p.items[k]
	// Drop expired ones first, so a dead next hop cannot fill the lot.
	for len(list) > 0 && now.Sub(list[0].at) > parkTimeout {
		list = list[1:]
		p.total--
	}
	if len(list) >= parkPerKey || p.total >= parkTotalMax {
		p.items[k] = list
		return false
	}
	p.items[k] = append(list, parked{inPort, portID, append([]byte(nil), frame...), now})
	p.total++
	return true
}

func (p *parking) take(router, ip string, now time.Time) []parked {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := parkKey{router, ip}
	list := p.items[k]
	delete(p.items, k)
	p.total -= len(list)
	out := list[:0]
	for _, it := range list {
		if now.Sub(it.at) <= parkTimeout {
			out = append(out, it)
		}
	}
	return out
}

// releaseParked re-simulates the packets that waited for (router, ip).
func (a *Agent) releaseParked(router string, ip interface{ String() string }) {
	list := a.park.take(router, ip.String(), time.Now())
	if len(list) == 0 {
		return
	}
	v := a.view.Load()
	w := a.getWorker(v)
	defer a.workers.Put(w)
	for _, it := range list {
		w.pkt.Decode(it.frame)
		if w.pkt.Drop != packet.DropNone {
			continue
		}
		a.simulate(v, w, it.inPort, it.portID, &w.pkt, it.frame, nil, false)
	}
}
