// Package dhcp is the agent's DHCPv4 responder for the VMs on its ports.
//
// Nagare answers DHCP at the edge, as MidoNet did: a DHCP frame a VM sends is
// handed to the agent of the VM's own hypervisor, which writes the reply
// straight back into the VM's port. DHCP never crosses the overlay and there
// is no DHCP server process, agent or namespace per network to keep alive.
//
// The package is pure logic. [Server.Handle] takes the frame the VM sent,
// as pkg/packet decoded it (the datapath decodes every frame anyway), and
// the current time, and writes the whole reply frame (Ethernet, IPv4, UDP,
// DHCP) into a buffer the caller owns. This package owns the DHCP message
// — BOOTP fields and options — and leaves the layers below to pkg/packet. It opens no
// socket, starts no goroutine and never reads the clock, so tests drive
// leases through days in microseconds and the datapath decides how frames
// reach it (AF_PACKET, an eBPF upcall, the simulator). The per-packet path
// does not allocate in the steady state; see BenchmarkHandle.
//
// One [Server] serves one bridge: all its DHCP subnets ([Subnet], built from
// a model.DHCPSubnet and its model.DHCPHosts) plus a lease table for pool
// addresses.
//
// # Choosing an address
//
// A DHCPHost entry for the client's MAC always wins: Neutron ports have fixed
// addresses, so on OpenStack networks every VM is answered this way and the
// lease table stays empty.
//
// Otherwise the address comes from the subnet's pool: every usable address of
// the subnet except the network and broadcast addresses, the gateway, the
// server address and every fixed host address. The pool is handed out
// deterministically from the MAC: the search starts at FNV-1a(MAC) modulo the
// pool size and probes linearly, skipping reserved addresses and addresses
// leased locally to another MAC. Two consequences:
//
//   - Two agents serving the same bridge on different hypervisors agree
//     without talking to each other: a MAC gets the same address whichever
//     host its VM runs on (it survives migration and agent restarts), and
//     distinct MACs whose probes start at distinct free addresses never
//     collide. The hash and the probe order are therefore part of the
//     contract between agents of different versions: changing them moves
//     addresses during a rolling upgrade.
//   - What remains: two MACs whose probes reach the same address on two
//     different hosts (same start slot, or one probed past a lease only its
//     own host knows) get the same address. With n pool clients in a pool of
//     N addresses that is the birthday problem, about n²/2N. TODO(nsdb-leases):
//     record pool leases in the NSDB with a create-if-absent transaction so
//     agents see each other's leases; until then pool addresses suit small
//     native bridges, not large shared ones.
//
// A lease is sticky: while it lives (and after it expires, until someone else
// takes the address) the same MAC gets the same address back. An offer holds
// its address for [Config.OfferHold]; a REQUEST binds it for
// [Config.LeaseTime]. A REQUEST for a pool address that is free here is
// acknowledged even without a local record: after an agent restart or a
// migration the client's memory is the best record there is, and refusing it
// would renumber a running VM.
//
// # Replies
//
// Every reply carries the full option set of its subnet (mask, router, DNS,
// host name, interface MTU, broadcast, lease times, server identifier,
// classless routes) whatever the parameter request list says: the set is
// small, clients ignore options they did not ask for, and NewSubnet checks
// that it fits the 576-byte datagram every client must accept. Addressing
// follows RFC 2131 §4.1; relayed requests (giaddr set) are not served since
// DHCP never leaves the host.
//
// Malformed input is dropped and counted by reason ([DropReason]); it never
// panics (FuzzHandle).
package dhcp
