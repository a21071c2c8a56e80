// Package datapath defines the boundary between the agent and the fast path
// that forwards packets: the Datapath interface, documented method by method,
// and the plain types it speaks. Implementations live in subpackages
// (userspace: AF_PACKET, UDP and raw sockets, a Go flow table; later a kernel
// eBPF one), and every one of them must pass the conformance suite in
// datapath/dptest.
//
// # The contract in one paragraph
//
// A frame entering a bound port is parsed into a [flow.Key] and looked
// up in an exact-match flow table. A hit applies the flow's [flow.Action]s
// (header rewrites, TTL, VLAN push/pop, output to a local port, or
// encapsulation to a remote host with the egress port's tunnel key) without
// the agent seeing the packet. A miss is handed to the agent's [MissHandler],
// which simulates the packet, calls Install so that later packets hit, and
// Execute so that this one is forwarded too. Frames arriving over a tunnel
// are never simulated and never looked up: the tunnel key names the local
// port they leave by (MidoNet's "tunnel key = egress port"). Flows disappear
// when a tag they carry is invalidated, when they stay idle longer than their
// class's timeout, or when the table is full and they are the least recently
// used of the oldest.
//
// # Offloads
//
// Guests keep checksum offload and TSO/GSO on (virtio-net and veth
// defaults), so ports hand over frames with partial checksums and TCP
// super-frames of up to 64 KiB. A datapath must carry them — never ask for
// the offloads off: it passes their state on to local ports, completes or
// segments them before a tunnel, keys one flow lookup per super-frame,
// applies a flow's MTU to the segments rather than to the super-frame, and
// drops (counting by reason, OffloadDrop) offload metadata that lies
// (package offload holds the pure logic).
//
// # Why the miss is a synchronous call
//
// Simulation takes about a microsecond, less than copying the packet into a
// queue, waking a worker and waking the reader back. So the reader that took
// the miss calls the handler itself, with the frame still in the reader's
// buffer. Each port has its own reader, so a slow miss on one port delays
// only that port (its receive ring absorbs the backlog, and what does not fit
// is counted in [Stats].Lost); tunnel receivers never call the handler.
//
// # Why Install takes a FlowSpec
//
// The first sketch was Install(key, actions, tags, class). The simulator
// taught otherwise: a flow also has a largest IP datagram it may carry
// (sim.Result.MTU), because the exact-match key does not include the length
// and a longer packet must go to the slow path for a frag-needed answer. A
// struct lets that and later per-flow facts (flow-state references) be added
// without changing every implementation's signature.
package datapath
