package sim

import (
	"errors"
	"fmt"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// Connection tracking in the walk, MidoNet's way: a connection is tracked
// per device, not per rule. The first time a rule on the path reads the
// packet's state (a "flow" or "ct-state" condition), the walk looks up the
// packet as it entered, keyed in the zone of the device it entered by. If
// that finds nothing and the walk forwards the packet, it creates the
// connection: its reverse key is the tuple a reply will have (after
// whatever NAT the walk applied) in the zone of the device the packet
// leaves by, which is where the reply will enter and look itself up. So a
// security group on a VM's port sees replies from anywhere as replies, and
// a reply entering another host finds the state the agent pushed there.
//
// A connection is tracked only if some rule on its forward path reads its
// state: the chains Neutron security groups compile to always do.

// FlowState is the connection-tracking and NAT state a Simulator consults,
// implemented by *flowstate.Table and shared by all the agent's
// Simulators (it is safe for concurrent use). Nil in Config means
// stateless: "flow" conditions see every packet as a forward flow,
// "ct-state" conditions match nothing (their negation everything) and NAT
// rules are not applied.
type FlowState interface {
	// Lookup finds the entry k is a key of, advancing its state with the
	// packet's TCP flags; it must not allocate.
	Lookup(k *flowstate.Key, tcpFlags uint8, now int64) flowstate.Match
	// Peek is Lookup without changing anything: for ICMP errors, which
	// must not advance or refresh the connection they quote.
	Peek(k *flowstate.Key, now int64) flowstate.Match
	// AllocSNAT picks and reserves a translated source for a new SNAT
	// binding and adds the binding to tx.
	AllocSNAT(tx *flowstate.Tx, device string, fwd *flowstate.Key, targets []flowstate.Target, tcpFlags uint8, now int64) (flowstate.Entry, error)
	// Commit makes tx's entries visible, all or none, and releases its
	// reservations on failure.
	Commit(tx *flowstate.Tx, now int64) error
	// Abort releases tx's reservations.
	Abort(tx *flowstate.Tx, now int64)
}

var _ FlowState = (*flowstate.Table)(nil)

// MaxStateKeys is how many state keys one walk records for the agent
// (Result.StateKeys); the tags of all of them are recorded regardless.
const MaxStateKeys = 8

// stateResult is the flow-state part of a Result.
type stateResult struct {
	tx    flowstate.Tx
	keys  [MaxStateKeys]flowstate.Key
	nKeys int
}

func (s *stateResult) reset() {
	s.tx.Reset()
	s.nKeys = 0
}

// StateEntries returns the connections and NAT bindings this walk
// created. They are in the FlowState already when the Verdict is Forward
// (and the list is empty otherwise). Before forwarding, the agent pushes
// them to the hosts that will see the replies (MidoNet's model: the state
// travels ahead of the data), and invalidates the flows tagged with their
// reverse keys (Entry.Rev.Tag()): flows decided while the state was
// missing, a reply that beat it for example.
func (r *Result) StateEntries() []flowstate.Entry { return r.st.tx.Entries() }

// StateKeys returns the flow-state keys the walk looked up, found or not
// (their tags are among Tags). While the flow forwards, the agent keeps
// the entries alive with Table.Touch: the datapath does not show the
// flow's packets to the simulation, which would otherwise refresh them.
func (r *Result) StateKeys() []flowstate.Key { return r.st.keys[:r.st.nKeys] }

// readKey records that the walk's decision read key k.
func (w *walk) readKey(k *flowstate.Key) {
	r := w.res
	r.addTag(k.Tag())
	if r.st.nKeys < MaxStateKeys {
		r.st.keys[r.st.nKeys] = *k
		r.st.nKeys++
	}
}

// ctState is the walk's connection-tracking verdict, computed once.
type ctState struct {
	done   bool
	state  flowstate.ConnState
	reply  bool
	commit bool          // a new connection: create it if the walk forwards
	key    flowstate.Key // its forward key
}

// stateWalk is the flow-state part of a walk. Its zero value is a walk
// that has neither looked anything up nor translated anything.
type stateWalk struct {
	ct ctState
	// orig is the packet as received once w.pkt points to the translated
	// copy (Simulator.xpkt); nil before the first translation.
	orig    *packet.Parsed
	xlated  bool
	emitted l4Header // the header the actions emitted so far produce
	inner   innerRewrite
	key     flowstate.Key // a NAT lookup's key; here so that it does not escape
}

// origPkt is the packet as it entered: what conntrack keys on and what
// locally generated answers (ICMP errors, resets, echo replies) are built
// from, so that the sender recognises its own packet in them.
func (w *walk) origPkt() *packet.Parsed {
	if w.st.orig != nil {
		return w.st.orig
	}
	return w.pkt
}

// devZone is the conntrack zone of port pi's device: its tag, the same on
// every host and across rebuilds.
func (t *Topology) devZone(pi int32) uint64 {
	p := t.ports.At(pi)
	if p.kind == devBridge {
		return t.bridges[p.dev].tag
	}
	return t.routers[p.dev].tag
}

// conn returns the packet's connection-tracking state and whether it goes
// in the reply direction, looking it up the first time it is asked.
func (w *walk) conn() (flowstate.ConnState, bool) {
	ct := &w.st.ct
	if ct.done {
		return ct.state, ct.reply
	}
	ct.done = true
	fs := w.s.cfg.FlowState
	if fs == nil || w.isGen || w.inPort == none {
		return flowstate.CTUntracked, false
	}
	p := w.origPkt()
	zone := w.t.devZone(w.inPort)
	if p.IsICMPError() {
		// Which connection an error belongs to is in its quote, which the
		// flow key does not hold: this decision is per packet.
		w.res.SlowPath = true
		ik, ok := flowstate.InnerKeyOf(p)
		if !ok {
			ct.state = flowstate.CTInvalid
			w.traceCT("ICMP error quoting nothing trackable: invalid")
			return ct.state, false
		}
		k := &ct.key // in the walk, so that passing it to the interface does not allocate
		*k = ik.Reverse()
		k.Zone, k.Type = zone, flowstate.KeyConn
		m := fs.Peek(k, w.now)
		w.readKey(k)
		if m.Found {
			ct.state, ct.reply = flowstate.CTRelated, m.Reply
		} else {
			ct.state = flowstate.CTInvalid
		}
		if w.tr != nil {
			w.traceCT(fmt.Sprintf("ICMP error about %v: %s", *k, ct.state))
		}
		return ct.state, ct.reply
	}
	k := &ct.key
	var ok bool
	if *k, ok = flowstate.KeyOf(p); !ok {
		w.traceCT("not trackable: untracked")
		return flowstate.CTUntracked, false
	}
	k.Zone, k.Type = zone, flowstate.KeyConn
	m := fs.Lookup(k, p.TCPFlags, w.now)
	w.readKey(k)
	switch {
	case m.Found:
		ct.state, ct.reply = m.Conn(), m.Reply
	case p.L4 == packet.L4TCP && !p.IsTCPSyn():
		// Only a SYN opens a connection. The flags are not in the flow
		// key, so neither is this verdict: a later SYN of the same tuple
		// must not meet a cached drop.
		ct.state = flowstate.CTInvalid
		w.res.SlowPath = true
	case k.Echo == flowstate.EchoReply:
		ct.state = flowstate.CTInvalid // a reply nobody asked for
	default:
		ct.state, ct.commit = flowstate.CTNew, true // ct.key is its forward key
	}
	if w.tr != nil {
		dir := "forward"
		if ct.reply {
			dir = "reply"
		}
		found := "no entry"
		if m.Found {
			found = "entry " + m.State.Phase().String()
		}
		w.traceCT(fmt.Sprintf("%v: %s, %s (%s)", *k, ct.state, dir, found))
	}
	return ct.state, ct.reply
}

func (w *walk) traceCT(msg string) {
	if w.tr != nil {
		w.tr.add(StepTrack, w.t.portName(w.inPort), msg)
	}
}

// flowDir values of a rule's "flow" condition.
const (
	flowAny uint8 = iota
	flowForward
	flowReturn
)

// ctMatches applies a rule's "flow" and "ct-state" conditions. A packet
// is a return flow if it is a reply of a tracked connection or an ICMP
// error travelling the reply way; anything else, untracked included, is a
// forward flow (which is what every packet was before tracking existed).
func (w *walk) ctMatches(r *rule) bool {
	st, reply := w.conn()
	if r.flowDir != flowAny {
		ret := reply && (st == flowstate.CTEstablished || st == flowstate.CTRelated)
		if ret != (r.flowDir == flowReturn) {
			return false
		}
	}
	if r.ctState != flowstate.CTUntracked && (st == r.ctState) == r.invCT {
		return false
	}
	return true
}

// finishState closes the walk's flow-state transaction: a forwarded new
// connection is created, with its reverse key in the zone of the device
// the packet leaves by; then everything the walk created is committed if
// the packet is forwarded, and released otherwise. A commit that fails
// (a bound reached) turns the verdict into a drop: forwarding a connection
// whose replies would find no state only wastes the bandwidth of both
// ends.
func (w *walk) finishState() {
	fs := w.s.cfg.FlowState
	if fs == nil {
		return
	}
	r := w.res
	tx := &r.st.tx
	if r.Verdict == Forward && w.st.ct.commit {
		if out := w.lastOutput(); out != none {
			k, ok := flowstate.KeyOf(w.pkt) // the packet as it leaves: after NAT
			if ok {
				rev := k.Reverse()
				rev.Zone = w.t.devZone(out)
				if !tx.Add(flowstate.NewConn(w.st.ct.key, rev, w.origPkt().TCPFlags)) {
					w.traceCT("too many state entries in one walk: connection not tracked")
				}
			}
		}
	}
	if tx.Len() == 0 {
		return
	}
	if r.Verdict != Forward {
		fs.Abort(tx, w.now)
		tx.Reset()
		return
	}
	if err := fs.Commit(tx, w.now); err != nil {
		tx.Reset()
		r.Verdict, r.nActions, r.MTU = Drop, 0, 0
		r.Reason = DropFlowStateFull
		if errors.Is(err, flowstate.ErrExists) {
			r.Reason = DropFlowStateConflict
		}
		w.drop(r.Reason, w.t.portName(w.inPort), "flow state not created: "+err.Error())
		return
	}
	if w.tr != nil {
		for _, e := range tx.Entries() {
			kind := StepNAT
			if e.Fwd.Type == flowstate.KeyConn {
				kind = StepTrack
			}
			w.tr.add(kind, w.t.portName(w.inPort), fmt.Sprintf("created %v / %v", e.Fwd, e.Rev))
		}
	}
}

// lastOutput returns the egress port of the walk's last output action.
func (w *walk) lastOutput() int32 {
	acts := w.res.Actions()
	for i := len(acts) - 1; i >= 0; i-- {
		if acts[i].Type == flow.ActOutput || acts[i].Type == flow.ActEncap {
			return acts[i].Port
		}
	}
	return none
}
