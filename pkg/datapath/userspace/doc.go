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
//  1. ReadBatch copies up to 64 frames into the slots, each after 64 bytes
//     of headroom so that VLAN pushes need no second copy.
//  2. Each frame is decoded, keyed (flow.Key with the port's topology
//     index) and looked up in the port's own flow map under a read lock.
//  3. A hit bumps the flow's atomic counters, refreshes its last-used time
//     (at most once per batch: one clock read per batch, not per packet),
//     and applies the actions in place. Outputs are queued, not sent.
//  4. A miss first flushes what is queued (the handler's Execute sends at
//     once and must not overtake earlier packets), then calls the
//     MissHandler inline with the frame still in its slot.
//  5. At the end of the batch the queue is flushed: one WriteBatch
//     (sendmmsg) per egress port, one sendmmsg per tunnel socket.
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
// UDP) header and routes it. The VXLAN header's VNI, or the GRE key, is the
// egress port's tunnel key, taken from the action. One goroutine per tunnel
// socket receives with recvmmsg (parked in Go's netpoller in between),
// drops packets from addresses outside the tunnel zone, and delivers the
// inner frame out of the port whose TunnelKey the header names, without a
// flow lookup or a simulation.
//
// # Not done here
//
// IPv6 underlays; checksum completion and segmentation of frames a local
// stack sent with offloads (an AF_PACKET tap sees them partial/unsegmented:
// turn tx checksum offload and TSO/GSO off on bound veths); outer UDP source
// port entropy (all VXLAN packets leave from the socket's port, so the
// underlay's ECMP does not spread them).
package userspace
