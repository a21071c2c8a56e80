// Package offload is the pure logic behind the offloads that guests hand a
// datapath: the virtio_net_hdr that describes a frame's partial checksum
// and GSO (segmentation) state, checking it against the frame, completing
// checksums, cutting a GSO super-frame into the segments it stands for, and
// merging consecutive TCP segments back into one super-frame.
//
// # Why a datapath needs it
//
// A VM's virtio-net NIC (through its tap) and a container's veth both have
// checksum offload and TSO/GSO on by default. Their stacks then hand the
// host frames whose TCP/UDP checksum holds only the pseudo-header sum
// ("partial") and TCP super-frames of up to 64 KiB that are to be cut into
// MSS-sized segments later. The kernel carries that state with the frame
// (CHECKSUM_PARTIAL, skb_shinfo gso_size) and finishes the work at the last
// moment: in the NIC, or in software just before a device that cannot. An
// AF_PACKET socket with PACKET_VNET_HDR receives the same state as a
// virtio_net_hdr in front of every frame and accepts one in front of every
// frame it sends, which is how a userspace datapath joins in.
//
// # What follows the kernel and OVS
//
// The rules are Linux's (include/linux/virtio_net.h, net/core/dev.c
// skb_checksum_help, net/ipv4/tcp_offload.c, net/ipv4/udp_offload.c) and OVS
// userspace's (lib/dp-packet-gso.c): a checksum is completed by summing from
// csum_start to the end of the packet and storing the folded complement at
// csum_start+csum_offset; a segment of a TCP super-frame gets the headers of
// the super-frame with the IP length, IPv4 ID (incremented per segment) and
// checksums fixed, the sequence number advanced, FIN and PSH only on the
// last segment and CWR only on the first. Headers the kernel would refuse
// to segment (a GSO type that contradicts the headers, a segment count no
// honest stack produces) are refused here, with a reason for the counters.
//
// Everything here is pure, allocation-free and fuzzed: the input comes from
// guests.
package offload
