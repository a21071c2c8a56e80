// Package flowstate holds the stateful part of the packet path:
// connection tracking and NAT bindings, as plain data structures with an
// explicit clock (callers pass now, in nanoseconds). It does no I/O.
//
// The model is MidoNet's (see /work/shared/reference/midonet.md §6, §7):
// the host where a connection's first packet enters simulates it, creates
// the state, and pushes it to the hosts that will see the replies before
// forwarding; replies find it locally. Port blocks leased per host keep
// the SNAT ports of different hosts apart without per-connection
// coordination.
//
// # Keys and entries
//
// A [Key] is a zone and a 5-tuple. The zone is the tag of the device that
// owns the key: for connection tracking the device a packet entered by,
// for NAT the router that translates. An [Entry] has two keys:
//
//   - a tracked connection (KeyConn): the forward key is the first
//     packet's tuple at its ingress device; the reverse key is the tuple a
//     reply has when it enters the device the first packet left by, after
//     whatever NAT happened in between. A lookup tells forward from reply
//     by which key matched.
//   - a NAT binding (KeyFwdSNAT/KeyRevSNAT, KeyFwdDNAT/KeyRevDNAT): the
//     forward key is the tuple before translation, the reverse key the
//     replies' tuple before reverse translation; the translated address is
//     in the reverse key, the original in the forward one, so an entry
//     needs no third field.
//
// ICMP echo uses the identifier as both ports, with the orientation
// (request, reply) in the key; ICMP errors are looked up by the reverse of
// the tuple they quote ([InnerKeyOf]).
//
// # State and timeouts
//
// Entries follow their connection coarsely ([Phase]): new until a reply is
// seen, then established; TCP FIN and RST move to shorter timeouts, and a
// SYN on a closed tuple starts over. The simulation sees only packets that
// miss the flow table, so the agent must keep the entries of flows that
// are still forwarding alive with [Table.Touch] (the keys are in the
// simulation's Result); idle timeouts per protocol and phase are in
// [Timeouts].
//
// # Bounds
//
// A table holds at most Config.MaxEntries entries, and at most
// Config.MaxPerZone per zone, so a VM opening connections as fast as it
// can (a SYN flood) fills its own zone and nothing else. When a bound is
// reached, expired entries are removed first; if there are none, the new
// entry is refused (ErrTableFull, ErrZoneFull) and counted in [Stats].
// Nothing grows without bound: the tags of removed entries wait for
// [Table.Sweep] in a bounded queue.
//
// # Memory and speed
//
// An entry is 120 bytes in chunks of 2048 that hold no pointer (the
// garbage collector never scans them); the index is an open-addressing
// table of 8-byte slots, two per entry, at most 3/4 full. Measured with
// BenchmarkBytesPerConnection, one million tracked connections take 154
// bytes each (a Go map of the two keys alone would take 190-270).
// Lookups do not allocate: about 60 ns on a cache-resident table, 210 ns
// on a 128k-connection table where the index slot and the entry are two
// cache misses; a miss is 80 ns. Committing a connection and later
// sweeping it costs about 400 ns, an SNAT allocation plus commit 650 ns.
//
// # Concurrency
//
// A [Table] is safe for concurrent use behind one mutex. The simulation
// consults it only on flow misses, which the datapath serializes per port,
// so contention is low; a sharded table is the next step if profiles say
// otherwise.
//
// # What the agent adds (not here)
//
// Pushing [Tx] entries to the interested hosts before forwarding and
// importing theirs ([Table.Import]); an NSDB-backed [Blocks] that leases
// ahead so that [Table.AllocSNAT] never waits on etcd; periodic
// [Table.Sweep] with flow invalidation of the tags it returns; keeping
// live flows' entries fresh with Touch; and saving and loading the table
// across restarts ([Table.Range], [Table.Import]).
package flowstate
