/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared definitions of Nagare's kernel datapath: the layouts of every map
 * key and value, which the Go loader mirrors field for field (types.go; a
 * test compares both through the object's BTF), and the constants both
 * sides agree on.
 */
#ifndef NAGARE_H
#define NAGARE_H

#include <linux/types.h>

/* Bumped whenever a pinned map's key or value layout changes, so that an
 * agent adopting pinned maps knows whether it can reuse them. */
#define LAYOUT_VERSION 2

#define MAX_ACTS 16     /* actions a kernel flow holds; longer lists are executed by the agent */
#define MAX_PORTS 1024  /* port slots */
#define EXEC_SLOTS 1024 /* in-flight Execute outputs */
#define STATE_KEY 0xffffff /* packet.StateTunnelKey */
#define PROBE_KEY 0xfffffe /* packet.ProbeTunnelKey */

/* The flow key: byte for byte flow.Key (pkg/flow/key.go). Multi-byte
 * integers are in host byte order, as Go stores them. */
struct flow_key {
	__u8 src_ip[16];
	__u8 dst_ip[16];
	__u32 in_port;
	__u32 tunnel_id;
	__u8 eth_src[6];
	__u8 eth_dst[6];
	__u16 ether_type;
	__u16 vlan[2];
	__u16 src_port;
	__u16 dst_port;
	__u8 proto;
	__u8 tos;
	__u8 ttl_class;
	__u8 frag;
	__u8 pad[2];
};

/* Action types: flow.ActionType. */
enum {
	ACT_SET_ETH_SRC = 1,
	ACT_SET_ETH_DST,
	ACT_PUSH_VLAN,
	ACT_POP_VLAN,
	ACT_DEC_TTL,
	ACT_OUTPUT,
	ACT_ENCAP,
	ACT_SET_IP_SRC,
	ACT_SET_IP_DST,
	ACT_SET_L4_SRC,
	ACT_SET_L4_DST,
	ACT_SET_ICMP_ID,
};

/* struct action.b for ACT_OUTPUT */
#define OUT_PEER 1 /* the port is a veth whose peer is in another namespace: bpf_redirect_peer */

/* Tunnel kinds: packet.Tunnel. */
#define TUN_VXLAN 1
#define TUN_GRE 2

/*
 * One compiled action.
 *   SET_ETH_*:  data[0:6] MAC
 *   PUSH_VLAN:  h VID
 *   DEC_TTL:    b count
 *   OUTPUT:     w ifindex, h port slot, b OUT_* flags
 *   ENCAP:      w tunnel key, b TUN_* kind, data[0:4] remote IPv4 (network order)
 *   SET_IP_*:   b family (4 or 6), data address (IPv4 in data[0:4], network order)
 *   SET_L4_*, SET_ICMP_ID: h port or identifier
 */
struct action {
	__u8 type;
	__u8 b;
	__u16 h;
	__u32 w;
	__u8 data[16];
};

#define FLOW_STATEFUL 1 /* carries flow state: TCP FIN/RST go to the agent */
#define FLOW_SLOW 2     /* actions too long for the kernel: the agent executes every packet */

#define NO_OUTPUT 0xff

/*
 * A flow: its counters and the id of its action list. Action lists live in
 * their own map, shared by every flow with the same actions (all flows to
 * one VM through one router have one list), so a flow costs ~200 bytes of
 * kernel memory and the expiry scan copies 48 bytes per flow.
 */
struct flow_val {
	__u64 packets;   /* hits, updated by the program */
	__u64 bytes;     /* bytes of the hits as received */
	__u64 used;      /* bpf_ktime_get_ns() of the last hit, or the install */
	__u64 installed; /* bpf_ktime_get_ns() clock at install, set by the agent */
	__u32 mtu;       /* largest IP datagram that hits; 0: no limit */
	__u32 acts;      /* the action list's id; 0 with FLOW_SLOW */
	__u8 flags;      /* FLOW_* */
	__u8 class;      /* datapath.FlowClass, for the agent */
	__u8 pad[6];
};

struct action_list {
	__u8 n;        /* actions; 0: drop */
	__u8 last_out; /* index of the last output or encap; NO_OUTPUT */
	__u8 pad[6];
	struct action acts[MAX_ACTS];
};

#define PORT_PEER 1 /* struct port_info.flags: see OUT_PEER */

/* port_tbl value, indexed by slot. */
struct port_info {
	__u32 ifindex; /* 0: slot free */
	__s32 index;   /* the topology index: flow_key.in_port */
	__u32 tunnel_key;
	__u32 flags;
	__u32 max_len; /* longest frame taken (MTU, Ethernet header, two tags); GSO frames are exempt */
	__u32 pad;
};

/* port_stats value, per CPU, indexed by slot. */
struct port_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
};

/* config[0]: what the agent set with SetTunnels. */
struct config {
	__u32 local_ip;      /* network order; 0: tunnels off */
	__u32 vxlan_ifindex; /* 0: VXLAN off */
	__u32 gre_ifindex;   /* the underlay interface GRE packets leave by; 0: GRE off */
	__u16 vxlan_port;    /* host order */
	__u16 pad;
};

/* exec_slots value: one output of an Execute, named by the skb mark. */
struct exec_slot {
	__u32 seq;
	__u32 pad;
	struct action act;
};

/* Upcall reasons. */
enum {
	UPCALL_MISS = 1, /* no flow: simulate */
	UPCALL_SLOW,     /* a FLOW_SLOW flow hit: the agent applies its actions */
	UPCALL_PUNT,     /* the program cannot judge the frame: the agent parses it */
	UPCALL_STATE,    /* a flow-state packet from a peer */
	UPCALL_RECHECK,  /* a flow matched, but this packet needs the agent (MTU, TCP close) */
	UPCALL_PROBE,    /* a liveness probe (or its answer) from a peer */
};

/* The header of every upcall record; the packet bytes follow. */
struct upcall {
	__u32 reason;
	__u32 ifindex;
	__u32 slot;
	__u32 len;      /* packet bytes that follow */
	__u32 data_off; /* UPCALL_STATE, _PROBE: offset of the payload in the bytes */
	__u32 data_len; /* UPCALL_STATE, _PROBE: payload length */
	__u32 peer;     /* UPCALL_STATE, _PROBE: the sender's underlay IPv4, network order */
	__u32 gso_size;
	__u16 vlan_tci;   /* the tag the kernel took out of the frame, if vlan_present */
	__u16 vlan_proto; /* network order */
	__u8 vlan_present;
	__u8 pad[3];
	struct flow_key key; /* the key the program computed (MISS, SLOW) */
};

/* Counters (per-CPU array "counters"). */
enum {
	C_HITS,
	C_MISSES,
	C_LOST, /* upcalls the perf buffer had no room for */
	C_VXLAN_RX_PACKETS,
	C_VXLAN_RX_BYTES,
	C_VXLAN_TX_PACKETS,
	C_VXLAN_TX_BYTES,
	C_GRE_RX_PACKETS,
	C_GRE_RX_BYTES,
	C_GRE_TX_PACKETS,
	C_GRE_TX_BYTES,
	C_VXLAN_TX_ERRORS,
	C_GRE_TX_ERRORS,
	C_EXEC,
	NUM_COUNTERS,
};

/*
 * Drop reasons (per-CPU array "drops"). 0..15 are packet.Drop, the
 * malformed frames; the rest are the datapath.Drop* reasons.
 */
enum {
	DROP_NONE,
	DROP_TRUNCATED,
	DROP_TOO_MANY_VLANS,
	DROP_BAD_ARP,
	DROP_BAD_IP_VERSION,
	DROP_BAD_IHL,
	DROP_BAD_IP_LENGTH,
	DROP_BAD_EXT_HEADER,
	DROP_TOO_MANY_EXT_HEADERS,
	DROP_SHORT_FRAGMENT,
	DROP_OVERLAP_FRAGMENT,
	DROP_BAD_L4_HEADER,
	DROP_BAD_ICMP,
	DROP_BAD_ND,
	DROP_BAD_VXLAN,
	DROP_BAD_GRE,
	DROP_FLOW = 32,
	DROP_TTL_EXPIRED,
	DROP_POP_UNTAGGED,
	DROP_VLAN_HEADROOM,
	DROP_REWRITE_REFUSED,
	DROP_PORT_GONE,
	DROP_TUNNEL_UNKNOWN_PEER,
	DROP_TUNNEL_UNKNOWN_KEY,
	DROP_TUNNEL_MALFORMED,
	DROP_TUNNEL_DISABLED,
	DROP_TUNNEL_TX_ERROR,
	DROP_TUNNEL_STATE_UNHANDLED,
	DROP_EXEC_STALE, /* an injected frame whose exec slot was reused */
	DROP_UPCALL_LOST,
	DROP_RX_OVERSIZE, /* longer than the port's MTU allows */
	DROP_TUNNEL_PROBE_UNHANDLED,
	NUM_DROPS,
};

/* Parse results beyond the drop reasons. */
#define PARSE_PUNT 0x100

#endif
