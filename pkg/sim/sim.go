package sim

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// MaxDevices is the loop guard: a path that enters more devices than this
// is dropped with DropLoop (MidoNet's limit; no sane topology is deeper).
const MaxDevices = 12

// maxVisits bounds the devices one walk enters over all flood branches
// together, so a walk's cost stays bounded even where each path is short.
const maxVisits = 64

// MACTable is a bridge's MAC-learning table, owned by the agent and
// replicated through the NSDB. Entries are per (bridge, VLAN). Port ids,
// not Topology indexes, so entries survive topology rebuilds.
//
// The simulation calls Learn only when a source MAC is new on the bridge or
// has moved to another port (move detection), never for a MAC already
// learned on the ingress port, so an implementation may do real work there
// (write to the NSDB, invalidate MACEntryTag flows). Lookup is on the
// per-packet path and must not allocate.
type MACTable interface {
	Lookup(bridgeID string, vlan uint16, mac packet.MAC) (portID string, ok bool)
	// Learn records that mac was seen on portID at time now (the Input's
	// Now: the table never reads the clock, which keeps tests exact).
	Learn(bridgeID string, vlan uint16, mac packet.MAC, portID string, now int64)
}

// ARPTable is a router's ARP (IPv4) and neighbor (IPv6) cache, owned by the
// agent. Lookup is on the per-packet path and must not allocate. Entries
// are added by the agent from Result.Learned.
type ARPTable interface {
	Lookup(routerID string, ip netip.Addr) (packet.MAC, bool)
}

// Config is what a Simulator needs besides the topology.
type Config struct {
	// HostID is the host this agent runs on: exterior ports bound here are
	// output locally, others are reached by encapsulation.
	HostID string
	// MACs and ARP are the agent's tables. Either may be nil: a nil MACs
	// floods every unknown unicast and learns nothing; a nil ARP resolves
	// only statically known next hops.
	MACs MACTable
	ARP  ARPTable
	// DefaultMTU is the MTU of a port without an entry in PortMTU; 1500 if 0.
	DefaultMTU int
	// UnderlayMTU is the MTU of the underlay network; 1500 if 0. A port on
	// another host is reached through a tunnel, so its MTU is at most
	// UnderlayMTU minus the encapsulation's overhead (50 bytes for VXLAN,
	// 42 for GRE, 20 more over an IPv6 underlay).
	UnderlayMTU int
	// PortMTU overrides DefaultMTU per port id. MTUs are IP MTUs: the
	// largest IP datagram the port carries.
	PortMTU map[string]int
	// FlowState is the connection-tracking and NAT state (conntrack.go).
	// Nil is stateless: NAT rules are not applied and every packet is a
	// forward flow.
	FlowState FlowState
	// Liveness says which uplinks (exterior router ports) are live
	// (routes.go); nil treats every uplink as live.
	Liveness Liveness
}

// Simulator runs walks over a Topology. It holds scratch state, so each
// worker goroutine needs its own; they may share one Topology.
type Simulator struct {
	t      *Topology
	cfg    Config
	mtu    []int
	remote []remoteHost
	w, gw  walk
	scr    packet.Parsed // decode target when Input.Pkt is nil
	genPkt packet.Parsed // the generated ARP/NS request being walked
	xpkt   packet.Parsed // the packet as NAT translated it (nat.go)
}

type remoteHost struct {
	ok      bool
	local   bool
	addr    netip.Addr
	tunnel  packet.Tunnel
	tag     uint64 // the remote host's tunnel-zone member
	zoneTag uint64
}

// NewSimulator returns a Simulator for t.
func NewSimulator(t *Topology, cfg Config) *Simulator {
	if cfg.DefaultMTU == 0 {
		cfg.DefaultMTU = 1500
	}
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	s := &Simulator{cfg: cfg}
	s.SetTopology(t)
	return s
}

// Topology returns the topology the Simulator walks.
func (s *Simulator) Topology() *Topology { return s.t }

// SetTopology switches to a rebuilt topology. It precomputes per-port MTUs
// and how each host is reached from this one, so that work is done once
// per rebuild and not per packet.
func (s *Simulator) SetTopology(t *Topology) {
	s.t = t
	s.remote = make([]remoteHost, len(t.hosts))
	local, haveLocal := t.hostByID[s.cfg.HostID]
	for h := range t.hosts {
		if haveLocal && int32(h) == local {
			s.remote[h] = remoteHost{ok: true, local: true}
			continue
		}
		if !haveLocal {
			continue
		}
		// The first zone (by id) both hosts are members of. VTEP zones
		// reach hardware switches, not agents.
	zones:
		for _, lz := range t.hosts[local].zones {
			for _, rz := range t.hosts[h].zones {
				if lz.zone != rz.zone || rz.typ == model.TunnelVTEP {
					continue
				}
				tun := packet.TunnelVXLAN
				if rz.typ == model.TunnelGRE {
					tun = packet.TunnelGRE
				}
				s.remote[h] = remoteHost{ok: true, addr: rz.addr, tunnel: tun, tag: rz.tag, zoneTag: rz.zoneTag}
				break zones
			}
		}
	}
	s.mtu = make([]int, t.ports.Len())
	for i := range t.ports.Len() {
		p := t.ports.At(i)
		m := s.cfg.DefaultMTU
		if v, ok := s.cfg.PortMTU[p.id]; ok && v > 0 {
			m = v
		}
		if p.exterior() && p.hostID != s.cfg.HostID && p.host != none && s.remote[p.host].ok {
			m = min(m, s.cfg.UnderlayMTU-encapOverhead(s.remote[p.host]))
		}
		s.mtu[i] = m
	}
}

// encapOverhead is what a tunnel adds around the inner IP datagram: outer
// IP, UDP+VXLAN or GRE with key, and the inner Ethernet header. An inner
// VLAN tag would add 4 more; tagged frames on trunk ports are rare enough
// that the MTU is not lowered for everybody on their account.
func encapOverhead(r remoteHost) int {
	o := 20 + 8 + 14 // IPv4 + GRE with key + inner Ethernet
	if r.tunnel == packet.TunnelVXLAN {
		o = 20 + 8 + 8 + 14 // IPv4 + UDP + VXLAN + inner Ethernet
	}
	if r.addr.Is6() && !r.addr.Is4In6() {
		o += 20
	}
	return o
}

// Input is one packet to simulate.
type Input struct {
	// InPort is the Topology index of the port the packet entered by,
	// used when InPortID is empty.
	InPort int32
	// InPortID, if set, names the in-port by id (one map lookup more).
	InPortID string
	// Pkt is the decoded packet. If nil, Frame is decoded into scratch
	// space.
	Pkt *packet.Parsed
	// Frame is the raw frame, used when Pkt is nil.
	Frame []byte
	// Now is the caller's clock (any monotonic unit), handed to
	// MACTable.Learn.
	Now int64
	// Trace, if not nil, receives the walk's steps.
	Trace *Tracer
}

// l2State is the frame's header as the walk has changed it so far, or as
// the emitted actions have left it.
type l2State struct {
	src, dst packet.MAC
	vlan     uint16 // outer tag's VID, valid iff tagged
	tagged   bool
	ttlDec   uint8
}

// walk is the per-walk state. Simulators keep two: the packet's, and one
// for a generated ARP/NS request that has to be walked to find its outputs.
type walk struct {
	s     *Simulator
	t     *Topology
	res   *Result
	tr    *Tracer
	pkt   *packet.Parsed
	now   int64
	isGen bool

	inPort  int32 // the exterior port the packet entered by: replies go there
	cur     l2State
	emitted l2State
	ipLen   int

	visits     int
	flooding   int
	outputs    int
	consumed   bool
	needARP    bool
	overflow   bool
	reason     DropReason
	lastRouter int32 // the last router that forwarded the packet, for ICMP errors found downstream
	lastRtrIn  int32

	st stateWalk // connection tracking and NAT (conntrack.go, nat.go)
}

func (w *walk) reset(s *Simulator, res *Result, tr *Tracer, pkt *packet.Parsed, now int64, isGen bool) {
	*w = walk{s: s, t: s.t, res: res, tr: tr, pkt: pkt, now: now, isGen: isGen, inPort: none, lastRouter: none, lastRtrIn: none}
	w.cur = l2State{src: pkt.EthSrc, dst: pkt.EthDst}
	if pkt.VLANs > 0 {
		w.cur.tagged, w.cur.vlan = true, pkt.VLAN[0].VID
	}
	w.emitted = w.cur
	if pkt.L3 == packet.L3IPv4 || pkt.L3 == packet.L3IPv6 {
		w.ipLen = pkt.L3End - pkt.L3Off
	}
}

// Simulate walks the topology for one packet and fills out, which it
// resets first. It never panics and always sets a verdict.
func (s *Simulator) Simulate(in *Input, out *Result) {
	out.Reset()
	pkt := in.Pkt
	if pkt == nil {
		s.scr.Decode(in.Frame)
		pkt = &s.scr
	}
	w := &s.w
	w.reset(s, out, in.Trace, pkt, in.Now, false)
	pi := in.InPort
	if in.InPortID != "" {
		var ok bool
		if pi, ok = s.t.portByID.Get(in.InPortID); !ok {
			pi = none
		}
	}
	if pi < 0 || int(pi) >= int(s.t.ports.Len()) {
		w.drop(DropUnknownPort, "ingress", "unknown in-port")
		w.finish()
		return
	}
	w.inPort = pi
	if pkt.Drop != packet.DropNone {
		out.addTag(s.t.ports.At(pi).tag)
		w.drop(DropMalformed, s.t.portName(pi), "malformed frame: "+pkt.Drop.String())
		w.finish()
		return
	}
	if in := w.ingress(pi); in != none {
		w.inPort = in
		w.enterPort(in, none, 0)
	}
	w.finish()
}

func (w *walk) finish() {
	r := w.res
	switch {
	case w.overflow:
		r.Verdict, r.Reason = Drop, DropTooManyOutputs
		r.nActions = 0
	case w.needARP:
		r.Verdict = NeedARP
	case w.outputs > 0:
		r.Verdict = Forward
	case w.consumed:
		r.Verdict = Consumed
	default:
		r.Verdict, r.Reason = Drop, w.reason
		if r.Reason == DropNone {
			r.Reason = DropNoOutputs
		}
	}
	w.finishState()
	if r.Verdict != Forward {
		r.MTU = 0
	}
}

// drop ends the current path. In a flood it ends one branch only; the
// verdict is a drop if no branch produced an output.
func (w *walk) drop(r DropReason, object, why string) {
	w.reason = r
	if w.tr != nil {
		w.tr.add(StepDrop, object, why+" ("+r.String()+")")
	}
}

// enterPort takes the packet into port pi of a device, coming from the
// port from (none at the walk's start). depth is the number of devices
// already on the path.
func (w *walk) enterPort(pi, from int32, depth int) {
	t := w.t
	p := t.ports.At(pi)
	w.res.addTag(p.tag)
	if w.tr != nil {
		msg := "ingress port " + t.portName(pi)
		if p.ifName != "" {
			msg += " (" + p.ifName + ")"
		}
		w.tr.add(StepIngress, t.portName(pi), msg)
	}
	if !p.up {
		w.drop(DropPortDown, t.portName(pi), "port is down")
		return
	}
	if depth >= MaxDevices || w.visits >= maxVisits {
		w.drop(DropLoop, t.portName(pi), fmt.Sprintf("path longer than %d devices: loop", MaxDevices))
		return
	}
	if p.sec != nil && !w.portChainPasses(w.runChain(&p.sec.in, pi, none), pi) {
		return
	}
	if p.inChain != none && !w.portChainPasses(w.runChain(&t.chains[p.inChain], pi, none), pi) {
		return
	}
	w.visits++
	if p.kind == devBridge {
		w.bridgeIngress(p.dev, pi, depth+1)
	} else {
		w.routerIngress(p.dev, pi, depth+1)
	}
}

// egressPort sends the packet out of port q of the device it entered by
// port in: the port's out-chain, then its peer or its interface.
func (w *walk) egressPort(q, in int32, depth int) {
	t := w.t
	p := t.ports.At(q)
	w.res.addTag(p.tag)
	if w.tr != nil {
		w.tr.add(StepEgress, t.portName(q), "egress port "+t.portName(q))
	}
	if !p.up {
		w.drop(DropPortDown, t.portName(q), "port is down")
		return
	}
	if p.sec != nil && !w.portChainPasses(w.runChain(&p.sec.out, in, q), q) {
		return
	}
	if p.outChain != none && !w.portChainPasses(w.runChain(&t.chains[p.outChain], in, q), q) {
		return
	}
	switch {
	case p.peer != none:
		w.enterPort(p.peer, q, depth)
	case p.exterior():
		w.output(q)
	default:
		w.drop(DropUnplugged, t.portName(q), "port is neither linked nor bound")
	}
}

// chainPasses turns a chain's verdict into the walk's: on drop or reject
// it ends the path (a reject also answers the sender) and returns false.
func (w *walk) chainPasses(v chainVerdict, object string) bool {
	switch v {
	case chainAccept:
		return true
	case chainDrop:
		w.drop(DropRuleDrop, object, "dropped by rule")
	case chainReject:
		w.reject()
		w.drop(DropRuleReject, object, "rejected by rule")
	case chainLoop:
		w.drop(DropChainLoop, object, fmt.Sprintf("jumps nested deeper than %d", maxJumpDepth))
	}
	return false
}

// portChainPasses is chainPasses for a port's chain. It names the port
// only when the chain did not accept: a name is built by concatenation,
// and a port chain (a security group) runs on most walks.
func (w *walk) portChainPasses(v chainVerdict, pi int32) bool {
	if v == chainAccept {
		return true
	}
	return w.chainPasses(v, w.t.portName(pi))
}

// reject answers a rejected packet: a TCP reset for TCP, ICMP
// administratively prohibited otherwise. The answer comes from the
// packet's destination, as if it had refused, because a rule on a bridge
// port has no address of its own to send from.
func (w *walk) reject() { w.refuse(packet.ICMPv4AdminProhibited, packet.ICMPv6AdminProhibited) }

// refuse answers the walked packet from its destination: a TCP reset for
// TCP, otherwise an ICMP destination unreachable with code4 (IPv4) or
// code6 (IPv6).
func (w *walk) refuse(code4, code6 uint8) {
	if !w.canGenerate() {
		return
	}
	p := w.origPkt()
	buf := w.genSpace()
	var n int
	var err error
	why := GenICMPError
	switch {
	case p.L4 == packet.L4TCP:
		n, err = packet.BuildTCPReset(buf, p)
		why = GenTCPReset
	case p.L3 == packet.L3IPv4:
		n, err = packet.BuildICMPv4Unreachable(buf, p, p.DstIP, code4)
	case p.L3 == packet.L3IPv6:
		n, err = packet.BuildICMPv6Unreachable(buf, p, p.DstIP, code6)
	default:
		return
	}
	w.commitReply(n, err, why)
}

// output emits the packet on exterior port q: locally, or encapsulated to
// the port's host with the port's tunnel key.
func (w *walk) output(q int32) {
	t, s := w.t, w.s
	p := t.ports.At(q)
	if w.ipLen > 0 {
		if mtu := s.mtu[q]; w.ipLen > mtu {
			if w.lastRouter != none && w.flooding == 0 {
				w.tooBig(w.lastRouter, w.lastRtrIn, mtu)
			} else {
				w.drop(DropMTUExceeded, t.portName(q), fmt.Sprintf("%d-byte packet exceeds MTU %d on a bridged path", w.ipLen, mtu))
			}
			return
		}
	}
	a, ok := w.deliver(q)
	if !ok {
		w.drop(DropNoTunnel, t.portName(q), "host "+p.hostID+" shares no tunnel zone with this host (or is not alive)")
		return
	}
	if a.Port != q {
		// A subport's frames leave by its parent's interface, tagged.
		saved := w.cur
		w.cur.tagged, w.cur.vlan = true, p.parentVLAN
		ok := w.emitHeader() && w.addAction(a)
		w.cur = saved
		if !ok {
			return
		}
	} else if !w.emitHeader() || !w.addAction(a) {
		return
	}
	w.mirrorCopies(q, mirrorIn)
	if w.ipLen > 0 && (w.res.MTU == 0 || s.mtu[q] < w.res.MTU) {
		w.res.MTU = s.mtu[q]
	}
	w.outputs++
	if w.tr != nil {
		if a.Type == flow.ActOutput {
			w.tr.add(StepOutput, t.portName(q), "output to interface "+p.ifName)
		} else {
			w.tr.add(StepOutput, t.portName(q), fmt.Sprintf("encapsulate (%s key %d) to host %s at %s", a.Tunnel, a.TunnelKey, a.HostID, a.Underlay))
		}
	}
}

// emitHeader appends the actions that turn the frame as the actions so far
// left it into the frame the current path wants. Floods call it once per
// branch, so each branch's changes are relative to the previous output.
func (w *walk) emitHeader() bool {
	if w.st.xlated && !w.emitNAT() {
		return false
	}
	d, e := &w.cur, &w.emitted
	if d.src != e.src && !w.addAction(flow.Action{Type: flow.ActSetEthSrc, MAC: d.src}) {
		return false
	}
	if d.dst != e.dst && !w.addAction(flow.Action{Type: flow.ActSetEthDst, MAC: d.dst}) {
		return false
	}
	if d.ttlDec > e.ttlDec && !w.addAction(flow.Action{Type: flow.ActDecTTL, Count: d.ttlDec - e.ttlDec}) {
		return false
	}
	// d.ttlDec < e.ttlDec would need an increment. It cannot happen:
	// routers do not forward what a flood brings them (broadcasts and
	// frames for other MACs), so branches after a flood never route.
	if e.tagged && (!d.tagged || d.vlan != e.vlan) && !w.addAction(flow.Action{Type: flow.ActPopVLAN}) {
		return false
	}
	if d.tagged && (!e.tagged || d.vlan != e.vlan) && !w.addAction(flow.Action{Type: flow.ActPushVLAN, VLAN: d.vlan}) {
		return false
	}
	*e = *d
	return true
}

func (w *walk) addAction(a flow.Action) bool {
	r := w.res
	if w.isGen {
		if r.nGenActs == MaxGeneratedActions {
			w.overflow = true
			return false
		}
		r.genActs[r.nGenActs] = a
		r.nGenActs++
		return true
	}
	if r.nActions == MaxActions {
		w.overflow = true
		return false
	}
	r.actions[r.nActions] = a
	r.nActions++
	return true
}

// canGenerate reports whether this path may answer the sender. Not from a
// flood branch (one request would draw one answer per branch) and not
// while walking a generated packet (answers to answers).
func (w *walk) canGenerate() bool {
	return !w.isGen && w.flooding == 0 && w.inPort != none && w.res.nGen < MaxGenerated
}

func (w *walk) genSpace() []byte {
	if w.res.bufUsed >= len(w.res.Buf) {
		return nil
	}
	return w.res.Buf[w.res.bufUsed:]
}

// commitReply records a generated reply of n bytes (the result of a
// packet.Build* call) and sends it out of the port the packet came in by.
// Replies copy the request's VLAN tags, so they need no header actions.
// A builder refusing because the RFCs forbid an answer (ErrSuppressed) is
// not a failure.
func (w *walk) commitReply(n int, err error, why GenReason) {
	r := w.res
	if err != nil {
		if !errors.Is(err, packet.ErrSuppressed) && !errors.Is(err, packet.ErrNotAnswerable) {
			r.GenFailed++
		}
		if w.tr != nil {
			w.tr.add(StepGenerate, w.t.portName(w.inPort), "no "+why.String()+": "+err.Error())
		}
		return
	}
	// A walk started on an interior port (a trace, a test) has nowhere
	// to send the answer.
	a, ok := w.deliver(w.inPort)
	if !ok || !w.t.ports.At(w.inPort).exterior() {
		r.GenFailed++
		return
	}
	if r.nGenActs == MaxGeneratedActions {
		r.GenFailed++
		return
	}
	g := w.commitGenerated(n, why)
	if g == nil {
		return
	}
	r.genActs[r.nGenActs] = a
	r.nGenActs++
	g.actHi = r.nGenActs
	if w.tr != nil {
		w.tr.add(StepGenerate, w.t.portName(w.inPort), why.String()+" sent back out of the ingress port")
	}
}

// commitGenerated records n bytes at the start of genSpace as a generated
// packet whose actions start at the current end of the generated actions.
func (w *walk) commitGenerated(n int, why GenReason) *Generated {
	r := w.res
	if r.nGen == MaxGenerated {
		r.GenFailed++
		return nil
	}
	g := &r.gen[r.nGen]
	*g = Generated{off: r.bufUsed, n: n, actLo: r.nGenActs, actHi: r.nGenActs, Reason: why}
	r.nGen++
	r.bufUsed += n
	return g
}
