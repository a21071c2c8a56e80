package flowstate

import (
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

// Phase is how far a connection has got. TCP is followed coarsely, the way
// a middlebox that sees only some packets can: the simulation sees a
// connection's packets only when they miss the flow table (the first one
// each way, and whatever comes after a flow expired or was invalidated),
// so the machine must make sense of any subset of SYN, SYN-ACK, FIN and
// RST and never wedge a connection on a segment it did not see.
type Phase uint8

const (
	// PhaseNew: packets in the forward direction only (TCP: SYN sent).
	PhaseNew Phase = iota
	// PhaseEstablished: a reply was seen (TCP: SYN-ACK or any reply).
	PhaseEstablished
	// PhaseFinWait: TCP, a FIN was seen in one direction.
	PhaseFinWait
	// PhaseTimeWait: TCP, FINs were seen in both directions.
	PhaseTimeWait
	// PhaseClosed: TCP, a RST was seen.
	PhaseClosed
	numPhases
)

var phaseNames = [numPhases]string{"new", "established", "fin-wait", "time-wait", "closed"}

func (p Phase) String() string {
	if p < numPhases {
		return phaseNames[p]
	}
	return "invalid"
}

// State is an entry's progress: its Phase in the low bits, and for TCP
// which directions have sent a FIN.
type State uint8

const (
	phaseMask State = 0x07
	finFwd    State = 0x10
	finRev    State = 0x20
	replied   State = 0x40 // a reply was seen; survives FIN and RST
)

// Phase returns the connection's phase.
func (s State) Phase() Phase { return Phase(s & phaseMask) }

// Replied reports whether a packet in the reply direction was seen.
func (s State) Replied() bool { return s&replied != 0 }

func (s State) withPhase(p Phase) State { return s&^phaseMask | State(p) }

// Advance returns the state after a packet of protocol proto with TCP
// flags flags (0 for other protocols) went in direction reply: what a
// lookup does to an entry, and what a fast path that tracks connections
// itself (datapath.ConntrackOffloader) must do too.
func (s State) Advance(proto uint8, flags uint8, reply bool) State {
	return s.advance(proto, flags, reply)
}

func (s State) advance(proto uint8, flags uint8, reply bool) State {
	if reply {
		s |= replied
	}
	if proto != packet.IPProtoTCP {
		if reply && s.Phase() == PhaseNew {
			s = s.withPhase(PhaseEstablished)
		}
		return s
	}
	switch {
	case flags&packet.TCPRst != 0:
		return s.withPhase(PhaseClosed)
	case flags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn && !reply && s.Phase() >= PhaseFinWait:
		// A new SYN on a closing or closed tuple: the client reuses the
		// port (RFC 9293 §3.10.7.4 lets TIME-WAIT accept it). Start over.
		return State(PhaseNew)
	case flags&packet.TCPFin != 0:
		if reply {
			s |= finRev
		} else {
			s |= finFwd
		}
		if s&(finFwd|finRev) == finFwd|finRev {
			return s.withPhase(PhaseTimeWait)
		}
		if s.Phase() < PhaseFinWait {
			return s.withPhase(PhaseFinWait)
		}
		return s
	}
	if reply && s.Phase() == PhaseNew {
		return s.withPhase(PhaseEstablished)
	}
	return s
}

// initialState is the state of an entry created by a packet going forward.
func initialState(proto, flags uint8) State {
	return State(0).advance(proto, flags, false)
}

// ConnState is what a rule's ct_state condition sees (Linux conntrack's
// ct_state, OVN's ct.new/ct.est/ct.rel/ct.inv).
type ConnState uint8

const (
	// CTUntracked: the packet cannot be tracked (not IP, a later fragment,
	// neighbor discovery) or no flow state is configured. It matches no
	// ct_state value.
	CTUntracked ConnState = iota
	// CTNew: the first packet of a connection, or a forward packet of one
	// that has not seen a reply yet.
	CTNew
	// CTEstablished: a connection that has seen packets both ways.
	CTEstablished
	// CTRelated: an ICMP error about a tracked connection.
	CTRelated
	// CTInvalid: a packet that cannot belong to a connection: a TCP segment
	// other than a SYN with no entry, an echo reply nobody asked for, an
	// ICMP error quoting an untracked packet.
	CTInvalid
	numConnStates
)

var connStateNames = [numConnStates]string{"untracked", "new", "established", "related", "invalid"}

func (c ConnState) String() string {
	if c < numConnStates {
		return connStateNames[c]
	}
	return "unknown"
}

// ParseConnState reads the model's ct_state words.
func ParseConnState(s string) (ConnState, bool) {
	for i, n := range connStateNames {
		if n == s && i != int(CTUntracked) {
			return ConnState(i), true
		}
	}
	return CTUntracked, false
}

// Timeouts are how long an entry lives without being refreshed, by
// protocol and phase. A refresh is a lookup by a simulation, a Touch by the
// agent for a flow that is still forwarding, or an Import from a peer.
// Zero fields take the defaults, which follow Open vSwitch's userspace
// conntrack (itself close to Linux), except that TCP closing states are
// shorter: the datapath only shows us FINs that miss, so a FIN seen is
// weak evidence that the connection is done, and a short timeout costs
// little when the agent keeps live flows' entries fresh.
type Timeouts struct {
	TCPSynSent     time.Duration // default 30 s
	TCPEstablished time.Duration // default 24 h
	TCPFinWait     time.Duration // default 120 s
	TCPTimeWait    time.Duration // default 30 s
	TCPClosed      time.Duration // default 10 s
	UDPNew         time.Duration // default 30 s
	UDPEstablished time.Duration // default 120 s
	ICMPNew        time.Duration // default 30 s
	ICMPReplied    time.Duration // default 30 s
	OtherNew       time.Duration // default 60 s
	OtherReplied   time.Duration // default 120 s
}

// DefaultTimeouts returns the default timeouts.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynSent: 30 * time.Second, TCPEstablished: 24 * time.Hour, TCPFinWait: 120 * time.Second,
		TCPTimeWait: 30 * time.Second, TCPClosed: 10 * time.Second,
		UDPNew: 30 * time.Second, UDPEstablished: 120 * time.Second,
		ICMPNew: 30 * time.Second, ICMPReplied: 30 * time.Second,
		OtherNew: 60 * time.Second, OtherReplied: 120 * time.Second,
	}
}

// class is an expiry class: entries of one class share a timeout, so each
// class's expiry list stays ordered by expiry time without sorting.
type class uint8

const (
	clsTCPSynSent class = iota
	clsTCPEstablished
	clsTCPFinWait
	clsTCPTimeWait
	clsTCPClosed
	clsUDPNew
	clsUDPEstablished
	clsICMPNew
	clsICMPReplied
	clsOtherNew
	clsOtherReplied
	numClasses
)

func (t Timeouts) table() [numClasses]int64 {
	d := DefaultTimeouts()
	pick := func(v, def time.Duration) int64 {
		if v <= 0 {
			v = def
		}
		return int64(v)
	}
	return [numClasses]int64{
		clsTCPSynSent:     pick(t.TCPSynSent, d.TCPSynSent),
		clsTCPEstablished: pick(t.TCPEstablished, d.TCPEstablished),
		clsTCPFinWait:     pick(t.TCPFinWait, d.TCPFinWait),
		clsTCPTimeWait:    pick(t.TCPTimeWait, d.TCPTimeWait),
		clsTCPClosed:      pick(t.TCPClosed, d.TCPClosed),
		clsUDPNew:         pick(t.UDPNew, d.UDPNew),
		clsUDPEstablished: pick(t.UDPEstablished, d.UDPEstablished),
		clsICMPNew:        pick(t.ICMPNew, d.ICMPNew),
		clsICMPReplied:    pick(t.ICMPReplied, d.ICMPReplied),
		clsOtherNew:       pick(t.OtherNew, d.OtherNew),
		clsOtherReplied:   pick(t.OtherReplied, d.OtherReplied),
	}
}

// NumTimeoutClasses is the number of expiry classes: the timeouts of
// Timeouts, one per protocol family and phase that has its own.
const NumTimeoutClasses = int(numClasses)

// TimeoutClass returns the expiry class of an entry of protocol proto in
// state s: the index of its lifetime in Timeouts.ByClass.
func TimeoutClass(proto uint8, s State) int { return int(classOf(proto, s)) }

// ByClass returns the timeouts by expiry class, defaults filled in: what
// a fast path that refreshes entries itself needs.
func (t Timeouts) ByClass() [NumTimeoutClasses]time.Duration {
	var out [NumTimeoutClasses]time.Duration
	for i, ns := range t.table() {
		out[i] = time.Duration(ns)
	}
	return out
}

func classOf(proto uint8, s State) class {
	switch proto {
	case packet.IPProtoTCP:
		return clsTCPSynSent + class(s.Phase())
	case packet.IPProtoUDP:
		if s.Phase() == PhaseNew {
			return clsUDPNew
		}
		return clsUDPEstablished
	case packet.IPProtoICMPv4, packet.IPProtoICMPv6:
		if s.Phase() == PhaseNew {
			return clsICMPNew
		}
		return clsICMPReplied
	}
	if s.Phase() == PhaseNew {
		return clsOtherNew
	}
	return clsOtherReplied
}
