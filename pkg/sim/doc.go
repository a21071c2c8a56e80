// Package sim is the simulation engine of the agent: given the first packet
// of a flow and the port it entered on, it walks the virtual topology the
// way the devices would (port security and in-chain, bridge or router,
// port security and out-chain, peer port, next device ...) and returns what the datapath must do with
// every packet of that flow, plus the tags of every object the decision
// read so that a topology change invalidates exactly the flows it affects.
//
// The package is pure: no I/O, no goroutines, no clock (the caller passes
// the time), no logging. State that lives elsewhere (the replicated bridge
// MAC tables, the router ARP/ND caches) is reached through the small
// [MACTable] and [ARPTable] interfaces the agent implements.
//
// # Pieces
//
//   - [Build] turns a snapshot of the native model into an immutable,
//     indexed [Topology]: dense integer indexes so the per-packet path uses
//     slices, pre-compiled rules, per-router route tables with
//     longest-prefix match. Many [Simulator]s (one per worker goroutine)
//     share one Topology.
//   - [Simulator.Simulate] runs one walk and fills a caller-owned, reused
//     [Result]: a [Verdict], the datapath [Action]s, locally generated
//     packets (ARP and ND replies, ICMP errors and echo replies, TCP
//     resets, ARP/NS requests for unresolved next hops) and the tags.
//   - A [Tracer], when the caller sets one, records each step in operator
//     words for `nagare trace`; nil costs one pointer test per step.
//
// # The flow match
//
// The datapath is exact-match. The flow a Result describes matches the
// packet's [flow.Key] computed with the datapath in-port
// (flow.KeyOf(pkt, dpPort)): every field the walk may read is in it (L2
// addresses and VLANs, L3 addresses, protocol, TOS, TTL class, fragment
// class, L4 ports or ICMP type/code/echo id), and nothing else decides.
// Two things the key cannot express are reported instead: the largest IP
// datagram the actions may carry ([Result.MTU]: a longer packet must go to
// the slow path, which answers frag-needed) and verdicts that depend on the
// packet's contents (Consumed, and Drop with a generated packet), whose
// flows the agent should not install (see [Verdict]).
//
// # Keeping the topology current
//
// A Topology is never modified. When the NSDB watch reports a change the
// agent applies it to its object cache, calls Build on the new snapshot,
// publishes the new *Topology (an atomic pointer swap) and invalidates the
// flows carrying the tags [Topology.ChangeTags] returns for every object
// that changed, computed against both the old and the new topology, and
// calls SetTopology on each worker's Simulator. Build of 10,000 ports takes
// about 11 ms and 6.5 MB (BenchmarkBuild10kPorts), cheap next to an etcd
// round trip; changes arriving in a burst are coalesced into one rebuild.
// An incremental update would save those milliseconds at the price of
// mutable shared state on the per-packet path; not worth it at this size.
//
// # Connection tracking and NAT
//
// With a [FlowState] in the Config (a *flowstate.Table, shared by the
// agent's Simulators), rules can read a packet's connection state (the
// "flow" and "ct-state" conditions) and NAT rules translate: snat and
// dnat create bindings, rev_snat and rev_dnat translate replies back,
// single-address targets are stateless 1:1 NAT (floating IPs), and ICMP
// errors are translated through the connection they quote. Connections
// are tracked per device, MidoNet's way (conntrack.go); translations
// emit set-ip/set-port actions and are seen by routing and later rules
// (nat.go). What a walk created is in [Result.StateEntries], committed
// only if the packet is forwarded, for the agent to push to the hosts
// that will see the replies; the keys it read are in [Result.StateKeys]
// and their tags among the Result's. Decisions that depend on more than
// the flow key (an ICMP error's quote, the TCP flags of a segment without
// a connection) set [Result.SlowPath]: execute, do not install. Walks
// whose state exists allocate nothing: about 0.9 µs through two
// security groups and a NAT router, 2.2 µs for a new masqueraded
// connection (BenchmarkSimulateSNAT*).
//
// # Load balancing
//
// A router with a load balancer balances the TCP and UDP packets sent to
// its VIPs before its pre-routing chain: a connection's first packet picks
// a usable member by weighted rendezvous hashing (of the 5-tuple, or of
// the client address with source-IP persistence) and records a DNAT
// binding in the router's zone, which every later packet reuses; replies
// from members are translated back in post-routing. See lb.go for the
// choices (existing connections are never moved; no usable member is a
// TCP reset or ICMP port unreachable and DropNoLBMember).
//
// # Uplinks
//
// Routes through an exterior router port (an uplink bound to a gateway's
// interface, with routes learned from its BGP peers or static ones) are
// used only while the [Liveness] in the Config says the port is live: a
// dead uplink's routes are skipped as if withdrawn, so ECMP spreads over
// the live ones and a less specific or heavier route takes over when
// none is left. Liveness is an input the agent keeps (probes of the
// gateways over the tunnels, their reports, the NSDB's leases); walks
// carry the [PortLiveTag] of exactly the uplinks their choice depended
// on, so a death moves only the dead uplink's flows and a return only
// the flows that would choose it (routes.go).
//
// # Not yet implemented
//
// IPv4 fragmentation is not done (an oversize packet without DF is
// dropped and counted as DropFragmentationUnsupported, never silently);
// later fragments are not tracked or translated dynamically (they carry no
// ports); destination translations belong in pre-routing (a post-routing
// one does not re-route); mirroring is a later issue.
package sim
