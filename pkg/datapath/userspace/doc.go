// Package userspace is the portable datapath: every packet is handled by
// Go code in the agent's process. Frames come and go through AF_PACKET
// sockets on the bound interfaces (package afpacket: TPACKET_V3 receive
// rings, sendmmsg transmit), VXLAN through a UDP socket, GRE through a raw
// IP socket, and flows live in an exact-match table in Go maps.
//
// # The packet path
//
// Each bound port has one reader goroutine that owns a worker: 64 receive
// slots, copy slots, output queues and a reused packet.Parsed. Per batch:
//
//  1. Receive copies up to 64 frames into the slots, each after 64 bytes
//     of headroom so that VLAN pushes need no second copy, with their
//     offload state; a GSO super-frame goes into the worker's jumbo slot.
//  2. Each frame is decoded, its offload state checked against it
//     (offload.Check; a lie is dropped and counted), keyed (flow.Key with
//     the port's topology index) and looked up in the port's own flow map
//     under a read lock: one lookup per super-frame, not per segment.
//  3. A hit bumps the flow's atomic counters, refreshes its last-used time
//     (at most once per batch: one clock read per batch, not per packet),
//     and applies the actions in place. Outputs are queued, not sent.
//     Offloaded frames keep their state to local ports and are completed
//     or segmented before a tunnel (offload.go).
//  4. A miss first flushes what is queued (the handler's Execute sends at
//     once and must not overtake earlier packets), then calls the
//     MissHandler inline with the frame still in its slot — its checksum
//     completed; a super-frame is cut into its segments first, and each
//     looked up (and if need be upcalled) on its own.
//  5. At the end of the batch the queue is flushed: one Write (sendmmsg)
//     per egress port, one sendmmsg per tunnel socket.
//
// Nothing on that path allocates (TestHitPathAllocs, BenchmarkHitPath).
//
// # Flow table
//
// The lookup structure is sharded by in-port: each port has a
// map[flow.Key]*flowEntry behind an RWMutex, read only by that port's
// reader, so hit-path lookups never share a lock's cache line with another
// core. FlowKey is a padding-free, pointer-free 68-byte struct, so the map
// hashes and compares it as one block of memory. Writers (Install,
// Invalidate, expiry, eviction) serialise on the datapath mutex, which also
// guards an install-ordered list (expiry sweep, eviction candidates) and a
// tag index (tag → flows, with lazy removal; see table). Expiry is by idle
// time per class, swept at a quarter of the shortest timeout; at the flow
// cap, Install evicts the least recently used of the eight oldest flows.
//
// # Tunnels
//
// Encapsulation sends the tunnel header and the frame as two iovecs of one
// sendmmsg message, so it copies nothing; the kernel adds the outer IP (and
// UDP) header and routes it. A run of equal packets to one peer (the
// segments of a super-frame) goes as one UDP_SEGMENT message. The VXLAN
// header's VNI, or the GRE key, is the egress port's tunnel key, taken from
// the action. One goroutine per tunnel socket receives with recvmmsg
// (parked in Go's netpoller in between; VXLAN with UDP_GRO, so such a run
// arrives whole), drops packets from addresses outside the tunnel zone,
// and delivers the inner frame out of the port whose TunnelKey the header
// names, without a flow lookup or a simulation — consecutive segments of a
// TCP connection merged back into one super-frame (offload.Coalescer).
//
// # Not done here
//
// IPv6 underlays; outer UDP source port entropy (all VXLAN packets leave
// from the socket's port, so the underlay's ECMP does not spread them);
// UDP GSO for GRE (a raw socket cannot: GRE segments go one per packet).
package userspace
