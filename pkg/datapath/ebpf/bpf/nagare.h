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
#include <linux/bpf.h> /* struct bpf_spin_lock */

/* Bumped whenever a pinned map's key or value layout changes, so that an
 * agent adopting pinned maps knows whether it can reuse them. */
#define LAYOUT_VERSION 6 /* 4: the policers map; the drops map grew. 5: echo counters. 6: config.underlay_ifindex */

#define MAX_ACTS 16     /* actions a kernel flow holds; longer lists are executed by the agent */
#define MAX_PORTS 1024  /* port slots */
#define EXEC_SLOTS 4096 /* in-flight Execute outputs */
#define STATE_KEY 0xffffff /* packet.StateTunnelKey */
#define PROBE_KEY 0xfffffe /* packet.ProbeTunnelKey */
#define CT_REFS 8       /* connection-tracking entries one flow keeps alive: sim.MaxStateKeys */
#define CT_CLASSES 11   /* flowstate's expiry classes */

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

#define FLOW_STATEFUL 1 /* read flow state the kernel does not hold: TCP FIN/RST go to the agent */
#define FLOW_SLOW 2     /* actions too long for the kernel: the agent executes every packet */
#define FLOW_CT 4       /* read connections the kernel tracks (flow_val.ct): it advances them itself */

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
	__u8 ct_dir;     /* bit i: the flow's packets are replies of connection ct[i] */
	__u8 pad[5];
	__u32 ct[CT_REFS]; /* ids of the connections the flow read (FLOW_CT); 0 ends the list */
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
	__u32 mtu;     /* the port's IP MTU, which a GSO frame's segments must fit (0: unchecked) */
};

/* port_stats value, per CPU, indexed by slot. */
struct port_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
};

/*
 * policers value, indexed by slot * 2 + POLICE_*: a port's token bucket
 * (datapath.Policer's, in time rather than bytes: a bucket of burst ns at
 * rate bytes per second holds burst * rate / 1e9 bytes, and a frame of len
 * bytes costs len * 1e9 / rate ns). Integer arithmetic, which the program
 * needs, then loses under a nanosecond a frame. rate 0: no limit.
 */
#define POLICE_EGRESS 0  /* what the port's VM sends: entering by port_in */
#define POLICE_INGRESS 1 /* what it receives: outputs and tunnel deliveries to the port */

struct policer {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 rate;   /* bytes per second; 0: no limit */
	__u64 burst;  /* ns: the bucket's size */
	__u64 tokens; /* ns */
	__u64 last;   /* bpf_ktime_get_ns() of the last frame; 0: none yet */
};

/* config[0]: what the agent set with SetTunnels and SetConntrackTimeouts. */
struct config {
	__u32 local_ip;      /* network order; 0: tunnels off */
	__u32 vxlan_ifindex; /* 0: VXLAN off */
	__u32 gre_ifindex;   /* the underlay interface GRE packets leave by; 0: GRE off */
	__u16 vxlan_port;    /* host order */
	__u16 pad;
	__u32 underlay_ifindex; /* the interface holding local_ip, which the program's own VXLAN packets leave by; 0: tunnels off */
	__u32 pad2;
	__u64 ct_timeout[CT_CLASSES]; /* ns, by expiry class (flowstate's classOf) */
};

/*
 * Connection tracking. A connection or NAT binding of the agent's table
 * (pkg/flowstate) is offloaded as one entry of the "ct" map, named by an id
 * the agent picks; flows that read it (FLOW_CT) name it in flow_val.ct.
 * The program keeps the entry's state and lifetime as packets pass, as
 * flowstate.State.Advance does, so that a connection's FIN and RST need no
 * upcall and the agent reads lifetimes from the map instead of walking the
 * flows. The keys are the agent's, byte for byte: they are what it adopts
 * after a restart; the program never looks entries up by them.
 */
struct ct_key {
	__u8 src[16];
	__u8 dst[16];
	__u64 zone;
	__u16 src_port;
	__u16 dst_port;
	__u8 proto;
	__u8 type;
	__u8 echo;
	__u8 family;
};

struct ct_entry {
	struct ct_key fwd;
	struct ct_key rev;
	__u64 used;    /* bpf_ktime_get_ns() of the last packet, or of the agent's write */
	__u64 expires; /* used + the timeout of the state's class */
	__u8 state;    /* flowstate.State */
	__u8 pad[7];
};

/* flowstate.State bits */
#define CT_PHASE 0x07
#define CT_FIN_FWD 0x10
#define CT_FIN_REV 0x20
#define CT_REPLIED 0x40
enum { CT_NEW, CT_ESTABLISHED, CT_FIN_WAIT, CT_TIME_WAIT, CT_CLOSED };

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
	/* A GSO packet's type as virtio_net_hdr says it (GSO_TCPV4, GSO_TCPV6,
	 * GSO_UDP_L4, GSO_ECN or'ed in; GSO_OTHER for any other), GSO_UNKNOWN
	 * where the kernel cannot tell the program (no bpf_cast_to_kern_ctx):
	 * the agent checks it against the headers as the userspace datapath
	 * checks a guest's virtio_net_hdr (offload.Check). */
	__u8 gso_type;
	__u8 pad[2];
	struct flow_key key; /* the key the program computed (MISS, SLOW) */
};

/* struct upcall.gso_type (offload.GSO*, virtio_net.h's values). */
enum {
	GSO_NONE = 0,
	GSO_TCPV4 = 1,
	GSO_TCPV6 = 4,
	GSO_UDP_L4 = 5,
	GSO_OTHER = 0x7f,
	GSO_ECN = 0x80,
	GSO_UNKNOWN = 0xff,
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
	C_CT_MISSING, /* a flow's connection was evicted from the ct map: the agent wrote it again */
	C_CT_EXPIRED, /* a flow's connection had timed out: the agent judged the packet */
	C_VXLAN_ECHOES, /* echo requests answered (datapath.c, echo) */
	C_GRE_ECHOES,
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
	DROP_QOS_POLICED, /* a port's token bucket (struct policer) had too few tokens */
	NUM_DROPS,
};

/* Parse results beyond the drop reasons. */
#define PARSE_PUNT 0x100

#endif
