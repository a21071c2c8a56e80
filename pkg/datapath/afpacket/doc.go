// Package afpacket is the lowest layer of Nagare's userspace datapath:
// batched, allocation-free frame I/O on one Linux interface (a VM's tap or
// veth) through an AF_PACKET socket. The flow table sits on top of it and
// sees only complete Ethernet frames, with their offload state.
//
// A Port receives through a TPACKET_V2 memory-mapped ring: the kernel puts
// each frame in a slot and hands the slot over at once, so reading costs no
// system call and a lone frame is not held back (see "Latency"). ReadBatch
// copies frames into caller buffers; Receive does too, and also reports
// each frame's offload state and takes a frame too long for a slot — a GSO
// super-frame of up to 64 KiB — into a jumbo buffer. Ports transmit with
// sendmmsg(2), up to 64 frames per system call. Neither direction
// allocates per packet or per batch in steady state (TestZeroAllocs).
//
// Behaviour the layer above relies on:
//   - Frames the host sends out of the interface — our own writes and
//     anything else towards the VM — are never received
//     (PACKET_IGNORE_OUTGOING, plus a pkttype check for old kernels).
//   - VLAN tags: the kernel strips the outer 802.1Q/802.1ad tag of received
//     frames into tp_vlan_tci; the port puts it back, so frames read exactly
//     as on the wire and VLAN-aware bridges need no side channel.
//   - The interface is put in promiscuous mode (reference counted by the
//     kernel, undone when the socket closes), since a VM's frames are
//     addressed to its peers' MACs.
//   - Frames that fit no buffer are dropped and counted (Stats), never
//     returned as errors that would stall the loop.
//   - Waiting parks the goroutine in Go's netpoller (the socket is an
//     os.File's), never an OS thread in poll(2), so a reader per port
//     holds no scheduler slot while idle; Close wakes waiters at once.
//   - Offloads (Options.VnetHdr): a stack with checksum offload and
//     TSO/GSO (a VM's virtio-net behind a tap, a namespace behind a veth,
//     both the defaults) hands over partial checksums and super-frames.
//     With PACKET_VNET_HDR the kernel says so in a virtio_net_hdr in front
//     of each frame, which Receive decodes (package offload), and Write
//     passes such a header on, so the kernel (or the receiving stack, or
//     the device) finishes the job. Without VnetHdr the frames arrive as
//     they are, as on any packet tap.
//   - Frames longer than a ring slot arrive whole: PACKET_COPY_THRESH has
//     the kernel queue them on the socket too, and Receive reads them with
//     recvmsg(2) in their turn.
//
// # Why x/sys/unix rather than gopacket/afpacket
//
// gopacket's pure-Go afpacket reads one frame per call
// (ZeroCopyReadPacketData), transmits one write(2) per frame, has no
// sendmmsg or TX batching, and reports VLAN tags only through a per-packet
// AncillaryVLAN value (allocated). What we need — batches in both
// directions, tag re-insertion in place, offload headers, zero
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
// # Latency: TPACKET_V2, not V3
//
// The first version used TPACKET_V3, which packs frames into blocks and
// hands a block over when it is full or when its retire timer fires, at
// least 1 ms later. A lone frame — a ping, the first packet of a flow, a
// TCP ACK at low rates — waited for that timer at every hop: 1.0 ms per hop
// (BenchmarkVethLatency), 1.2–1.5 ms for a ping across two hosts. V2 hands
// over every slot as soon as it is filled and wakes a poller for it: 5 µs
// per hop on the same benchmark.
//
// The price is a wakeup per frame when the reader keeps up, where V3 had one
// per block, and a ring that holds fewer small frames for the same memory.
// After a batch of at least 8 frames the receiver sleeps
// Options.Moderation before it looks again (interrupt moderation, as NICs
// do), so under load it takes frames in batches without a wakeup each,
// while a lone frame still wakes it at once. It does not busy-poll: an
// idle port waits in the netpoller and costs nothing, and a spin after
// traffic (tried: 25 µs per batch) starved the other ports and processes
// sharing the cores enough to lose packets in the end-to-end suite.
//
// What is left of a ping's round trip over the kernel's is wakeups, not
// work: every hop through an agent wakes a thread, where the kernel's path
// runs in the sender's own softirq. On the 2-vCPU development VM (guest
// halt polling off) a thread blocked in read(2) runs 22–33 µs (p50) after
// a write from the other CPU, 6–13 µs from its own; a ping across two
// hosts crosses four receivers (VM port and tunnel socket on each host),
// and the first two are cold at any rate below one frame per idle period.
// Neither Go's scheduler nor the netpoller is the cost: agents with
// GOMAXPROCS=1 (no handoff to a second thread) measured the same, so a
// locked OS thread in its own epoll_wait would pay the same kernel wakeup.
// SO_BUSY_POLL does nothing here: the kernel busy-polls only sockets fed
// by a NAPI device, and veth (without GRO) and tap deliver through the
// backlog. Polling after traffic removes the later wakeups of a round trip
// but not the first (a host-wide poller caught 87% of replies within
// 10 µs and left the ping's median within the noise). Never waiting at all
// (every receiver polling, an experiment at load 3–7) took one host's
// median to 81 µs but its p99 to 14 ms, and across hosts to 6.7 ms: four
// spinners on two shared vCPUs starve each other and the guests.
package afpacket
