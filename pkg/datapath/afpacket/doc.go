// Package afpacket is the lowest layer of Nagare's userspace datapath:
// batched, allocation-free frame I/O on one Linux interface (a VM's tap or
// veth) through an AF_PACKET socket. The flow table sits on top of it and
// sees only complete Ethernet frames.
//
// A Port receives through a TPACKET_V3 memory-mapped ring: the kernel packs
// frames into blocks and hands over a whole block per wakeup, so one poll(2)
// yields many frames and reading them costs no system call. ReadBatch copies
// frames into caller buffers; Recv passes them to a callback straight from
// the ring. Ports transmit with sendmmsg(2), up to 64 frames per system call.
// Neither direction allocates per packet or per batch in steady state
// (TestZeroAllocs).
//
// Behaviour the layer above relies on:
//   - Frames the host sends out of the interface — our own WriteBatch and
//     anything else towards the VM — are never received
//     (PACKET_IGNORE_OUTGOING, plus a pkttype check for old kernels).
//   - VLAN tags: the kernel strips the outer 802.1Q/802.1ad tag of received
//     frames into tp_vlan_tci; the port puts it back, so frames read exactly
//     as on the wire and VLAN-aware bridges need no side channel.
//   - The interface is put in promiscuous mode (reference counted by the
//     kernel, undone when the socket closes), since a VM's frames are
//     addressed to its peers' MACs.
//   - Oversized or malformed frames are dropped and counted (Stats), never
//     returned as errors that would stall the loop.
//   - Close unblocks a receiver stuck in poll(2) at once, through an eventfd.
//   - Checksums are not completed: frames sent by a local stack with
//     checksum offload (a veth whose peer is a network namespace) may carry
//     a partial checksum, as on any packet tap.
//
// # Why x/sys/unix rather than gopacket/afpacket
//
// gopacket's pure-Go afpacket reads one frame per call
// (ZeroCopyReadPacketData), transmits one write(2) per frame, has no
// sendmmsg or TX batching, and reports VLAN tags only through a per-packet
// AncillaryVLAN value (allocated). What we need — batches in both
// directions, tag re-insertion in place, eventfd wakeup on Close, zero
// allocations — is a few hundred lines on top of golang.org/x/sys/unix, with no
// cgo and no dependency beyond x/sys.
//
// # Why sendmmsg rather than a TX ring
//
// Both were implemented (the TX ring is in this package's first commit) and
// measured on the 2-vCPU development VM (Linux 6.18), veth across two
// namespaces, batches of 64, medians of five runs (BenchmarkWriteBatch:
// transmit only; BenchmarkVethRoundTrip: port to port, lossless):
//
//	                         transmit only      port to port
//	                         64 B     1514 B    64 B     1514 B
//	sendmmsg, qdisc bypass   606k     465k      501k     400k
//	sendmmsg, through qdisc  586k     481k      486k     357k
//	TX ring,  qdisc bypass   549k     489k      486k     383k
//	TX ring,  through qdisc  505k     266k      440k     378k   (frames/s)
//
// The VM is shared and runs differ by ±15%, so only the TX ring's lack of
// a win is significant. The cost is the kernel's per-skb work, not the copy:
// a TX ring saves a copy only while the skb points into the ring, and on
// veth and tap the kernel copies the ring pages out before orphaning the skb
// (Linux "packet: copy user buffers before orphan or clone", 2018). It
// would cost more code: slot ownership, a fixed maximum frame size, and
// per-frame errors reported later in slot status, where sendmmsg rejects a
// frame synchronously and TxErrors stays exact.
//
// Frames go through the qdisc by default. Bypass (Options.QdiscBypass) was
// ahead in the run above and behind in a rerun (round trip 1514 B: 304k vs
// 377k), so it buys nothing measurable on veth, while it hides the
// datapath's frames from tcpdump and tc egress programs on the interface.
//
// # Latency
//
// A TPACKET_V3 block reaches us when it is full or after BlockTimeout
// (default 1 ms, the smallest the kernel accepts). Under load blocks fill
// fast; a lone frame waits up to BlockTimeout — about 1 ms per hop measured
// (BenchmarkVethLatency). That is the price of batching without busy
// polling; a first-packet path that cannot afford it needs a TPACKET_V2
// ring or AF_XDP.
package afpacket
