package datapath

import "github.com/nagare/nagare/pkg/flowstate"

// ConntrackOffloader is implemented by a datapath that tracks connections
// in its fast path, as Cilium's CT and NAT maps do in the kernel: the
// kernel (eBPF) one. The agent's flowstate.Table stays the source of
// truth — it allocates NAT ports, decides what a new connection is, and is
// what the simulation reads — and the datapath holds a copy of the
// entries flows depend on, which it keeps current as their packets pass.
//
// The contract:
//
//   - The agent offloads every entry a simulation committed or read and
//     every entry a peer pushed (PutConns), before it installs a flow
//     that depends on it.
//   - A flow installed with FlowSpec.State naming offloaded entries is a
//     connection's flow: its packets refresh those entries and advance
//     their state (TCP FIN and RST move a connection to its closing
//     timeout) in the fast path, without reaching the agent, and the flow
//     lives as long as its connections rather than its own idle timeout.
//     A packet whose connection the fast path no longer holds, or whose
//     lifetime has run out, goes to the MissHandler as a miss: the agent
//     judges it from its table and offloads the entry again.
//   - The agent reads what the fast path saw (SyncConns) to refresh its
//     table, instead of walking the flows, and says which entries its
//     table no longer holds, which the fast path then removes.
//   - Offloaded entries survive the agent where the datapath survives it
//     (pinned kernel maps): a new agent reads them back with SyncConns.
//
// The fast path may drop entries under memory pressure (the kernel's
// connection map is an LRU): that costs a miss, never a wrong verdict.
type ConntrackOffloader interface {
	// SetConntrackTimeouts sets the lifetimes the fast path gives an
	// entry after each packet, by protocol and state (zero fields: the
	// defaults), as the agent's table has them.
	SetConntrackTimeouts(t flowstate.Timeouts) error

	// PutConns offloads entries or updates offloaded ones (an entry is
	// named by its two keys). An entry already offloaded keeps what the
	// fast path saw: the two copies' states are merged
	// (flowstate.State.Merge) and its lifetime runs from the later of the
	// two last uses. An offloaded entry that shares a key with a put one
	// is replaced (the agent's table holds one entry per key).
	PutConns(entries []ConnEntry) error

	// SyncConns calls fn for every offloaded entry, with its state, last
	// use and expiry as the fast path has them, reading in batches
	// without stalling forwarding; the entries for which fn returns false
	// are removed, and the flows that depend on them with them. fn must
	// not retain c or call the datapath.
	SyncConns(fn func(c *ConnEntry) (keep bool)) error

	// ConntrackStats reports the offloaded entries and what they cost.
	ConntrackStats() ConntrackStats
}

// ConnEntry is a connection-tracking entry or NAT binding as the fast path
// holds it. Times are wall-clock nanoseconds (time.Time.UnixNano), the
// agent table's clock.
type ConnEntry struct {
	flowstate.Entry
	// LastUsed is when a packet of the connection was last seen (or the
	// agent last refreshed the entry).
	LastUsed int64
	// Expires is when the entry ends unless a packet refreshes it.
	Expires int64
}

// ConntrackStats counts a fast path's offloaded connections.
type ConntrackStats struct {
	// Entries is the number of offloaded entries, Max the most the fast
	// path holds before it drops the least recently used.
	Entries, Max int
	// BytesPerEntry is the kernel memory one entry takes (its map's
	// preallocated memory divided by its capacity); 0 if unknown.
	BytesPerEntry int
	// Missing counts packets of connection flows whose entry the fast
	// path had dropped, Expired those whose entry's lifetime had run out:
	// both went to the agent.
	Missing, Expired uint64
}
