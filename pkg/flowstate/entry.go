package flowstate

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// Entry is a tracked connection or a NAT binding: what a simulation
// creates, what the agent pushes to the hosts that will see the replies,
// and what those hosts Import. It is plain data.
//
// For a NAT binding the translation is in the keys themselves, as in
// MidoNet: the forward key holds the original tuple, the reverse key the
// tuple of the replies, which names the translated side. Translated returns
// it.
type Entry struct {
	// Fwd is the forward key (KeyConn, KeyFwdSNAT or KeyFwdDNAT).
	Fwd Key
	// Rev is the reverse key (KeyConn, KeyRevSNAT or KeyRevDNAT).
	Rev Key
	// State is the connection's progress when the entry was made.
	State State
}

// Translated returns, for a NAT binding, the address and port the
// forward direction is translated to: the new source of an SNAT, the new
// destination of a DNAT. For an ICMP echo the port is the identifier.
func (e *Entry) Translated() (netip.Addr, uint16) {
	switch e.Fwd.Type {
	case KeyFwdSNAT:
		return e.Rev.DstAddr(), e.Rev.DstPort
	case KeyFwdDNAT:
		return e.Rev.SrcAddr(), e.Rev.SrcPort
	}
	return netip.Addr{}, 0
}

// Original returns, for a NAT binding, the address and port the reverse
// direction is translated back to: the original source of an SNAT, the
// original destination of a DNAT.
func (e *Entry) Original() (netip.Addr, uint16) {
	switch e.Fwd.Type {
	case KeyFwdSNAT:
		return e.Fwd.SrcAddr(), e.Fwd.SrcPort
	case KeyFwdDNAT:
		return e.Fwd.DstAddr(), e.Fwd.DstPort
	}
	return netip.Addr{}, 0
}

// Match is the result of a lookup.
type Match struct {
	// Entry is the entry found; valid iff Found. Its State is the state
	// after the packet looked up.
	Entry
	// Found reports that the key belongs to an entry.
	Found bool
	// Reply reports that the key was the entry's reverse key: the packet
	// goes in the reply direction.
	Reply bool
}

// Conn is the ct_state of the packet that was looked up with this Match,
// for a packet that is not an ICMP error: established once the connection
// has seen both directions, new before that.
func (m *Match) Conn() ConnState {
	switch {
	case !m.Found:
		return CTUntracked
	case m.Reply || m.State.Replied():
		return CTEstablished
	}
	return CTNew
}

// NewConn returns the entry of a connection that a packet with tuple fwd
// (as it entered zone fwd.Zone) starts, whose replies will have tuple rev
// (as they enter the zone in rev). flags are its TCP flags.
func NewConn(fwd, rev Key, flags uint8) Entry {
	fwd.Type, rev.Type = KeyConn, KeyConn
	return Entry{Fwd: fwd, Rev: rev, State: initialState(fwd.Proto, flags)}
}

// NewDNAT returns the binding that translates the destination of the
// connection with forward key fwd (type KeyFwdDNAT) to to:port. For ICMP
// echo, port is ignored: the identifier is kept.
func NewDNAT(fwd Key, to netip.Addr, port uint16, flags uint8) Entry {
	fwd.Type = KeyFwdDNAT
	if fwd.Echo != 0 || !hasPorts(fwd.Proto) {
		port = fwd.DstPort
	}
	rev := fwd.Reverse()
	rev.Type = KeyRevDNAT
	rev.Src, rev.SrcPort = to.As16(), port
	return Entry{Fwd: fwd, Rev: rev, State: initialState(fwd.Proto, flags)}
}

// newSNAT is the binding that translates the source of fwd to to:port.
func newSNAT(fwd Key, to netip.Addr, port uint16, flags uint8) Entry {
	fwd.Type = KeyFwdSNAT
	rev := fwd.Reverse()
	rev.Type = KeyRevSNAT
	rev.Dst, rev.DstPort = to.As16(), port
	if fwd.Echo != 0 {
		rev.SrcPort = port // the identifier is both "ports"
	}
	return Entry{Fwd: fwd, Rev: rev, State: initialState(fwd.Proto, flags)}
}

func hasPorts(proto uint8) bool { return proto == packet.IPProtoTCP || proto == packet.IPProtoUDP }

// MaxTxEntries is how many entries one simulation may create: a
// connection, and a DNAT and an SNAT binding on each of a few routers.
const MaxTxEntries = 8

// Tx is the set of entries one simulation creates. They become visible
// only when the walk succeeds (Table.Commit); if it does not, Table.Abort
// returns the NAT ports reserved for them. A Tx is plain data with fixed
// capacity: it lives in the simulation's reused Result and never allocates.
type Tx struct {
	n       int
	entries [MaxTxEntries]Entry
	owns    [MaxTxEntries]bool // a PAT port was reserved for the entry
}

// Add appends an entry that reserved nothing. It reports false when the
// Tx is full.
func (tx *Tx) Add(e Entry) bool { return tx.add(e, false) }

func (tx *Tx) add(e Entry, owns bool) bool {
	if tx.n == MaxTxEntries {
		return false
	}
	tx.entries[tx.n], tx.owns[tx.n] = e, owns
	tx.n++
	return true
}

// selfClash reports two entries of tx sharing a key: committing both
// would index one key twice.
func (tx *Tx) selfClash() bool {
	for i := range tx.n {
		a := &tx.entries[i]
		if a.Fwd == a.Rev {
			return true
		}
		for j := i + 1; j < tx.n; j++ {
			b := &tx.entries[j]
			if a.Fwd == b.Fwd || a.Fwd == b.Rev || a.Rev == b.Fwd || a.Rev == b.Rev {
				return true
			}
		}
	}
	return false
}

// Entries returns the entries, valid until the Tx is reset.
func (tx *Tx) Entries() []Entry { return tx.entries[:tx.n] }

// Len is the number of entries.
func (tx *Tx) Len() int { return tx.n }

// Reset empties the Tx. Reserved ports are forgotten, not released: call
// it only after Commit or Abort.
func (tx *Tx) Reset() { tx.n = 0 }
