// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * Nagare's kernel datapath: TC programs on every bound port, on the
 * injection device that carries the agent's Execute, on the collect_md
 * VXLAN and GRE devices, and on the underlay interface.
 *
 *   port_in      parse, look up the exact-match flow, apply its actions;
 *                a miss goes to the agent with the packet (perf upcall)
 *   exec_in      the agent's packets: one output each, named by the mark
 *   tunnel_in    decapsulated frames: the tunnel key names the egress port
 *   underlay_in  tunnel packets before the kernel decapsulates them: peer
 *                check, malformed headers counted, flow-state packets to
 *                the agent, peers' echo requests answered
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "nagare.h"
#include "maps.h"
#include "parse.h"
#include "actions.h"
#include "ct.h"

/* Largest packet copied into an upcall: a perf record, header included,
 * is at most 64 KiB (its size is a __u16). TCP's super-packets stay under
 * it (sk_gso_max_size less MAX_TCP_HEADER); a longer one is cut
 * (struct upcall.len < skb->len) and dropped by the agent. */
#define UPCALL_MAX (65535 - 16 - sizeof(struct upcall))

/* The kernel's skb and its shared info, as far as gso_type_of reads them
 * (CO-RE: offsets come from the running kernel's BTF). */
struct sk_buff___nagare {
	unsigned char *head;
	unsigned int end; /* sk_buff_data_t: an offset from head on 64-bit */
} __attribute__((preserve_access_index));

struct skb_shared_info___nagare {
	unsigned int gso_type;
} __attribute__((preserve_access_index));

/* include/linux/skbuff.h's GSO type bits. Its enum is anonymous, which
 * CO-RE cannot relocate; these have kept their values since Linux 4.18
 * (UDP_L4), long before bpf_cast_to_kern_ctx (6.3), which reading them
 * needs. */
#define SKB_GSO_TCPV4 (1 << 0)
#define SKB_GSO_TCP_ECN (1 << 2)
#define SKB_GSO_TCPV6 (1 << 4)
#define SKB_GSO_UDP_L4 (1 << 17)

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* gso_type_of returns the GSO type of a GSO packet in virtio_net_hdr's
 * terms. __sk_buff has gso_size but not gso_type, which only the
 * kernel's skb_shared_info holds; a guest's tap can set a type that
 * contradicts the headers, and the agent must see it to refuse it. Only
 * upcalls pay for this. */
static __always_inline __u8 gso_type_of(struct __sk_buff *skb)
{
	struct sk_buff___nagare *k;
	__u32 t = 0;
	__u8 v;

	if (!skb->gso_size)
		return GSO_NONE;
	if (!bpf_cast_to_kern_ctx)
		return GSO_UNKNOWN;
	k = bpf_cast_to_kern_ctx(skb);
	if (bpf_probe_read_kernel(&t, sizeof(t), k->head + k->end +
				  bpf_core_field_offset(struct skb_shared_info___nagare, gso_type)))
		return GSO_UNKNOWN;
	if (t & SKB_GSO_TCPV4)
		v = GSO_TCPV4;
	else if (t & SKB_GSO_TCPV6)
		v = GSO_TCPV6;
	else if (t & SKB_GSO_UDP_L4)
		v = GSO_UDP_L4;
	else
		return GSO_OTHER;
	if (t & SKB_GSO_TCP_ECN)
		v |= GSO_ECN;
	return v;
}

static __noinline int send_upcall(struct __sk_buff *skb, const struct pkt *p, __u32 reason, __u32 slot)
{
	struct upcall u = {};
	__u32 len = skb->len;

	if (len > UPCALL_MAX)
		len = UPCALL_MAX;
	u.reason = reason;
	u.ifindex = skb->ingress_ifindex;
	u.slot = slot;
	u.len = len;
	u.data_len = skb->len; /* the whole packet's length */
	u.gso_size = skb->gso_size;
	u.gso_type = gso_type_of(skb);
	u.vlan_present = skb->vlan_present;
	u.vlan_tci = skb->vlan_tci;
	u.vlan_proto = skb->vlan_proto;
	if (p)
		__builtin_memcpy(&u.key, &p->key, sizeof(u.key));
	if (reason != UPCALL_SLOW)
		count(C_MISSES, 1);
	if (upcall_output(skb, BPF_F_CURRENT_CPU | ((__u64)len << 32), &u, sizeof(u))) {
		count(C_LOST, 1);
		count_drop(DROP_UPCALL_LOST);
	}
	return TC_ACT_SHOT;
}

SEC("tc")
int port_in(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ingress_ifindex, slot;
	__u32 *slotp = bpf_map_lookup_elem(&port_slots, &ifindex);
	struct port_info *pi;
	struct port_stats *ps;
	struct flow_val *f;
	struct action_list *al;
	struct pkt p;
	__u64 now;
	int r;

	if (!slotp)
		return TC_ACT_OK; /* not (or no longer) a port */
	slot = *slotp;
	pi = bpf_map_lookup_elem(&ports, &slot);
	if (!pi || pi->ifindex != ifindex)
		return TC_ACT_OK;
	ps = bpf_map_lookup_elem(&port_stats, &slot);
	if (ps) {
		ps->rx_packets++;
		ps->rx_bytes += frame_len(skb);
	}
	if (frame_len(skb) > pi->max_len && !skb->gso_size) {
		count_drop(DROP_RX_OVERSIZE);
		return TC_ACT_SHOT;
	}
	/* The VM sent it: its egress limit, before the flow lookup, so
	 * that misses are policed as hits are. */
	if (!police(slot, POLICE_EGRESS, frame_len(skb))) {
		count_drop(DROP_QOS_POLICED);
		return TC_ACT_SHOT;
	}
	r = parse(skb, &p, (__u32)pi->index);
	/* A guest's super-frame whose segments its port could not carry
	 * (a tap's virtio_net_hdr can say anything): as a frame too long. */
	if (!r && skb->gso_size && pi->mtu && (p.l3 == L3_IPV4 || p.l3 == L3_IPV6) && ip_len(skb, &p) > pi->mtu) {
		count_drop(DROP_RX_OVERSIZE);
		return TC_ACT_SHOT;
	}
	if (r == PARSE_PUNT)
		return send_upcall(skb, &p, UPCALL_PUNT, slot);
	if (r) {
		count_drop(r);
		return TC_ACT_SHOT;
	}
	f = bpf_map_lookup_elem(&flows, &p.key);
	if (!f)
		return send_upcall(skb, &p, UPCALL_MISS, slot);
	/* Too long for the flow's path: the agent answers frag-needed. */
	if (f->mtu && (p.l3 == L3_IPV4 || p.l3 == L3_IPV6) && ip_len(skb, &p) > f->mtu)
		return send_upcall(skb, &p, UPCALL_RECHECK, slot);
	now = bpf_ktime_get_ns();
	if (f->flags & FLOW_CT) {
		/* The kernel tracks the flow's connections: they advance here,
		 * and a connection that is gone or over goes to the agent. */
		r = ct_update(&p, f, now);
		if (r) {
			count(r, 1);
			return send_upcall(skb, &p, UPCALL_RECHECK, slot);
		}
	} else if ((f->flags & FLOW_STATEFUL) && p.l4 == L4_TCP && (p.tcp_flags & (TCP_FIN | TCP_RST))) {
		/* A segment closing a connection only the agent tracks. */
		return send_upcall(skb, &p, UPCALL_RECHECK, slot);
	}
	count(C_HITS, 1);
	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, frame_len(skb));
	/* Writing the timestamp at most every millisecond keeps the flow's
	 * cache line shared between CPUs; expiry works in seconds. */
	if (now - f->used > 1000000)
		f->used = now;
	if (f->flags & FLOW_SLOW)
		return send_upcall(skb, &p, UPCALL_SLOW, slot);
	al = bpf_map_lookup_elem(&actions, &f->acts);
	if (!al) /* replaced under our feet: let the agent decide */
		return send_upcall(skb, &p, UPCALL_MISS, slot);
	return apply(skb, &p, al);
}

SEC("tc")
int exec_in(struct __sk_buff *skb)
{
	__u32 mark = skb->mark, slot = mark % EXEC_SLOTS;
	struct exec_slot *e = bpf_map_lookup_elem(&exec_slots, &slot);
	int v;

	if (mark == 0)
		return TC_ACT_SHOT; /* the kernel's own chatter on the device */
	if (!e || e->seq != mark / EXEC_SLOTS) {
		count_drop(DROP_EXEC_STALE);
		return TC_ACT_SHOT;
	}
	skb->mark = 0;
	count(C_EXEC, 1);
	if (e->act.type == ACT_OUTPUT)
		v = act_output(skb, &e->act, 1);
	else if (e->act.type == ACT_ENCAP)
		v = act_encap(skb, &e->act, 1, 0);
	else
		v = -DROP_EXEC_STALE;
	if (v < 0) {
		count_drop(-v);
		return TC_ACT_SHOT;
	}
	return v;
}

static __always_inline int peer_known(__u32 addr)
{
	return bpf_map_lookup_elem(&peers, &addr) != NULL;
}

SEC("tc")
int tunnel_in(struct __sk_buff *skb)
{
	__u32 zero = 0, key, *slotp, slot, len = frame_len(skb);
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct bpf_tunnel_key tk = {};
	struct port_info *pi;
	struct port_stats *ps;
	int gre;

	if (!cfg)
		return TC_ACT_SHOT;
	gre = skb->ingress_ifindex == cfg->gre_ifindex;
	if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0)) {
		count_drop(DROP_TUNNEL_MALFORMED);
		return TC_ACT_SHOT;
	}
	/* Also checked before decapsulation (underlay_in), but reassembled
	 * fragments and packets on other underlay interfaces get here only. */
	if (!peer_known(bpf_htonl(tk.remote_ipv4))) {
		count_drop(DROP_TUNNEL_UNKNOWN_PEER);
		return TC_ACT_SHOT;
	}
	key = (__u32)tk.tunnel_id;
	slotp = bpf_map_lookup_elem(&tunnel_keys, &key);
	if (!slotp) {
		count_drop(DROP_TUNNEL_UNKNOWN_KEY);
		return TC_ACT_SHOT;
	}
	slot = *slotp;
	pi = bpf_map_lookup_elem(&ports, &slot);
	if (!pi || !pi->ifindex) {
		count_drop(DROP_TUNNEL_UNKNOWN_KEY);
		return TC_ACT_SHOT;
	}
	count(gre ? C_GRE_RX_PACKETS : C_VXLAN_RX_PACKETS, 1);
	count(gre ? C_GRE_RX_BYTES : C_VXLAN_RX_BYTES, len);
	/* From another host to the port's VM: its ingress limit. */
	if (!police(slot, POLICE_INGRESS, len)) {
		count_drop(DROP_QOS_POLICED);
		return TC_ACT_SHOT;
	}
	ps = bpf_map_lookup_elem(&port_stats, &slot);
	if (ps) {
		ps->tx_packets++;
		ps->tx_bytes += len;
	}
	if (pi->flags & PORT_PEER)
		return bpf_redirect_peer(pi->ifindex, 0);
	return bpf_redirect(pi->ifindex, 0);
}

/* state hands a flow-state packet's or a probe's payload (at off, n bytes)
 * to the agent, as an upcall of reason (UPCALL_STATE or UPCALL_PROBE). */
static __noinline int state(struct __sk_buff *skb, __u32 from, __u32 off, __u32 n, __u32 reason)
{
	struct upcall u = {};
	__u32 len = skb->len;

	if (n == 0) {
		count_drop(reason == UPCALL_PROBE ? DROP_TUNNEL_PROBE_UNHANDLED : DROP_TUNNEL_STATE_UNHANDLED);
		return TC_ACT_SHOT;
	}
	if (len > UPCALL_MAX) {
		count_drop(DROP_TUNNEL_MALFORMED);
		return TC_ACT_SHOT;
	}
	u.reason = reason;
	u.ifindex = skb->ingress_ifindex;
	u.len = len;
	u.data_off = off;
	u.data_len = n;
	u.peer = from;
	if (upcall_output(skb, BPF_F_CURRENT_CPU | ((__u64)len << 32), &u, sizeof(u))) {
		count(C_LOST, 1);
		count_drop(DROP_UPCALL_LOST);
	}
	return TC_ACT_SHOT;
}

/* echo answers a peer's echo request (packet.AppendEchoRequest) in the
 * kernel: the probe by which peers tell a host whose datapath forwards —
 * its agent dead or restarting, these programs still pinned — from one
 * whose datapath is gone too (pkg/agent/reach). The packet goes back to
 * its sender: addresses swapped (which changes no checksum), TTL reset,
 * type made a reply, out of the interface it came in by, the next hop's
 * address from the kernel's routes and neighbours as for the agent's own
 * probes. The payload is at off, n bytes; csum is the offset of the UDP
 * checksum, 0 for GRE without one. Returns -1, having changed nothing, if
 * the payload is not an echo request. */
static __noinline int echo(struct __sk_buff *skb, __u32 off, __u32 n, __u32 csum)
{
	__u8 m[8], a[8], b[8], ttl[2];
	__u16 oldw, neww;

	if (n != 8 || bpf_skb_load_bytes(skb, off, m, 8))
		return -1;
	if (m[0] != 1 || m[1] != 3 || m[2] || m[3])
		return -1;
	if (bpf_skb_load_bytes(skb, 14 + 8, ttl, 2) || bpf_skb_load_bytes(skb, 14 + 12, a, 8))
		return -1;
	__builtin_memcpy(b, a + 4, 4);
	__builtin_memcpy(b + 4, a, 4);
	if (bpf_skb_store_bytes(skb, 14 + 12, b, 8, 0))
		goto bad;
	__builtin_memcpy(&oldw, ttl, 2);
	ttl[0] = 64;
	__builtin_memcpy(&neww, ttl, 2);
	if (bpf_l3_csum_replace(skb, 14 + 10, oldw, neww, 2) || bpf_skb_store_bytes(skb, 14 + 8, ttl, 2, 0))
		goto bad;
	__builtin_memcpy(&oldw, m, 2);
	m[1] = 4;
	__builtin_memcpy(&neww, m, 2);
	/* The type's word is at an even offset from the UDP header. */
	if (csum && bpf_l4_csum_replace(skb, csum, oldw, neww, BPF_F_MARK_MANGLED_0 | 2))
		goto bad;
	if (bpf_skb_store_bytes(skb, off, m, 2, 0))
		goto bad;
	count(csum ? C_VXLAN_ECHOES : C_GRE_ECHOES, 1);
	return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
bad:
	count_drop(DROP_TUNNEL_MALFORMED);
	return TC_ACT_SHOT;
}

/* check_inner judges a tunnel packet's key and inner frame (at off, up to
 * end), as the userspace datapath's tunnel receiver does. It returns the
 * port slot, or -1 after dropping. */
static __always_inline int check_inner(struct __sk_buff *skb, __u32 from, __u32 key, __u32 off, __u32 end)
{
	__u32 *slot;

	if (key == STATE_KEY || key == PROBE_KEY) {
		state(skb, from, off, end - off, key == STATE_KEY ? UPCALL_STATE : UPCALL_PROBE);
		return -1;
	}
	if (end - off < 14) {
		count_drop(DROP_TUNNEL_MALFORMED);
		return -1;
	}
	slot = bpf_map_lookup_elem(&tunnel_keys, &key);
	if (!slot) {
		count_drop(DROP_TUNNEL_UNKNOWN_KEY);
		return -1;
	}
	return *slot;
}

/* Flags of bpf_skb_adjust_room newer than this build's headers (6.3). */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV6
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

/* decap strips the outer Ethernet, IPv4 and tunnel headers (hl bytes of
 * IP and GRE, or IP, UDP and VXLAN; the inner frame's Ethernet header
 * follows them) and delivers the inner frame to the port in slot.
 *
 * GRE, which has no device to fall back on, shrinks with flags 0, as its
 * encapsulation grows (the MSS changes of both cancel out). VXLAN keeps a
 * GSO frame's MSS and the checksum state, and consumes one level of
 * CHECKSUM_UNNECESSARY for the outer UDP header, as the kernel's UDP
 * receive does; an inner IPv6 frame gets its skb->protocol (Linux 6.3's
 * DECAP_L3 flag). If the kernel refuses the shrink, nothing has changed
 * and the VXLAN packet goes on to the kernel's VXLAN receive
 * (TC_ACT_OK), whose device delivers it by tunnel_in. */
static __noinline int decap(struct __sk_buff *skb, __u32 hl, __u32 slot, int vxlan)
{
	struct port_info *pi = bpf_map_lookup_elem(&ports, &slot);
	struct port_stats *ps;
	__u64 flags = 0;
	__u8 mac[14];
	__u32 len;
	int ip;

	if (!pi || !pi->ifindex) {
		count_drop(DROP_TUNNEL_UNKNOWN_KEY);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_load_bytes(skb, 14 + hl, mac, 14)) {
		count_drop(DROP_TUNNEL_MALFORMED);
		return TC_ACT_SHOT;
	}
	ip = be16(mac + 12) == ETH_P_IP_ || be16(mac + 12) == ETH_P_IPV6_;
	if (vxlan) {
		flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_NO_CSUM_RESET;
		if (be16(mac + 12) == ETH_P_IPV6_)
			flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
	}
	if (bpf_skb_adjust_room(skb, -(__s32)(hl + 14), BPF_ADJ_ROOM_MAC, flags)) {
		if (vxlan)
			return TC_ACT_OK;
		count_drop(DROP_TUNNEL_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, 0, mac, 14, 0)) {
		count_drop(DROP_TUNNEL_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (vxlan)
		bpf_csum_level(skb, BPF_CSUM_LEVEL_DEC);
	len = skb->len;
	count(vxlan ? C_VXLAN_RX_PACKETS : C_GRE_RX_PACKETS, 1);
	count(vxlan ? C_VXLAN_RX_BYTES : C_GRE_RX_BYTES, len);
	if (!police(slot, POLICE_INGRESS, len)) {
		count_drop(DROP_QOS_POLICED);
		return TC_ACT_SHOT;
	}
	ps = bpf_map_lookup_elem(&port_stats, &slot);
	if (ps) {
		ps->tx_packets++;
		ps->tx_bytes += len;
	}
	/* redirect_peer only where skb->protocol is the inner frame's (an IP
	 * VXLAN frame, see above): an ARP frame, or any GRE frame, still
	 * carries the outer IPv4's, which only a pass through the veth
	 * recomputes. */
	if (vxlan && ip && (pi->flags & PORT_PEER))
		return bpf_redirect_peer(pi->ifindex, 0);
	return bpf_redirect(pi->ifindex, 0);
}

/* vxlan_native reports whether underlay_in decapsulates a VXLAN packet
 * itself (ip: its outer IPv4 header; h: its VXLAN header; ul: its UDP
 * header) rather than leave it to the kernel's UDP and VXLAN receive and
 * tunnel_in: only the common case that both treat alike, the rest taking
 * the kernel's path as before.
 *   - GSO packets (the underlay's GRO merged them, or a peer's
 *     super-frame crossed a veth whole): the kernel's decapsulation
 *     resets their UDP tunnel offload state (skb->encapsulation and
 *     SKB_GSO_UDP_TUNNEL), which bpf_skb_adjust_room can only do from
 *     Linux's BPF_F_ADJ_ROOM_DECAP_L4_UDP on; left stale, it would
 *     wrongly segment the inner frame if forwarded.
 *   - A frame with a VLAN tag, or not addressed to this host's MAC.
 *   - A UDP checksum, which the kernel verifies (peers send none).
 *   - VXLAN flags or reserved bits besides I, which the kernel refuses.
 *   - An outer ECN mark, which the kernel carries to the inner header
 *     (RFC 6040), or drops.
 *   - A non-IP inner frame (ARP): only the kernel can set its
 *     skb->protocol before a redirect to a peer namespace. */
static __always_inline int vxlan_native(struct __sk_buff *skb, const __u8 *ip, const __u8 *ul, const __u8 *h, __u32 inner)
{
	__u8 et[2];

	if (skb->gso_size || skb->vlan_present || skb->pkt_type != 0 /* PACKET_HOST */)
		return 0;
	if (ul[6] || ul[7] || (ip[1] & 0x03))
		return 0;
	if (h[0] != 0x08 || h[1] || h[2] || h[3] || h[7])
		return 0;
	if (bpf_skb_load_bytes(skb, inner + 12, et, 2))
		return 0;
	return be16(et) == ETH_P_IP_ || be16(et) == ETH_P_IPV6_;
}

SEC("tc")
int underlay_in(struct __sk_buff *skb)
{
	__u32 zero = 0, ihl, tot, src, dst, l4, key, len = skb->len;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u8 eth[14], ip[20], h[16];
	__u16 fo;
	int r;

	if (!cfg || !cfg->local_ip || len < 34)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, eth, 14) || be16(eth + 12) != ETH_P_IP_)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 14, ip, 20) || ip[0] >> 4 != 4)
		return TC_ACT_OK;
	__builtin_memcpy(&dst, ip + 16, 4);
	if (dst != cfg->local_ip)
		return TC_ACT_OK;
	fo = be16(ip + 6);
	if (fo & 0x3fff)
		return TC_ACT_OK; /* a fragment: judged after reassembly, by tunnel_in */
	ihl = (__u32)(ip[0] & 0x0f) * 4;
	tot = be16(ip + 2);
	if (ihl < 20 || tot < ihl || tot > len - 14)
		return TC_ACT_OK; /* the kernel drops it */
	__builtin_memcpy(&src, ip + 12, 4);
	l4 = 14 + ihl;
	if (ip[9] == 17 && cfg->vxlan_ifindex) {
		__u32 ulen;
		__u8 ul[8];
		int slot;
		if (tot - ihl < 8 || bpf_skb_load_bytes(skb, l4, ul, 8) || be16(ul + 2) != cfg->vxlan_port)
			return TC_ACT_OK;
		if (!peer_known(src)) {
			count_drop(DROP_TUNNEL_UNKNOWN_PEER);
			return TC_ACT_SHOT;
		}
		ulen = be16(ul + 4);
		if (ulen < 8 || ulen > tot - ihl)
			return TC_ACT_OK;
		if (ulen < 16 || bpf_skb_load_bytes(skb, l4 + 8, h, 8) || !(h[0] & 0x08)) {
			count_drop(DROP_TUNNEL_MALFORMED);
			return TC_ACT_SHOT;
		}
		key = (__u32)be16(h + 4) << 8 | h[6];
		if (key == PROBE_KEY && (r = echo(skb, l4 + 16, ulen - 16, l4 + 6)) >= 0)
			return r;
		slot = check_inner(skb, src, key, l4 + 16, l4 + ulen);
		if (slot < 0)
			return TC_ACT_SHOT;
		/* Padding after the UDP datagram would stay on the inner frame. */
		if (14 + tot == len && l4 + ulen == len && vxlan_native(skb, ip, ul, h, l4 + 16))
			return decap(skb, ihl + 16, slot, 1);
		return TC_ACT_OK; /* the kernel decapsulates; tunnel_in delivers */
	}
	if (ip[9] == 47 && cfg->gre_ifindex) {
		__u16 f;
		__u32 hl = 4, key_off;
		int slot;
		if (!peer_known(src)) {
			count_drop(DROP_TUNNEL_UNKNOWN_PEER);
			return TC_ACT_SHOT;
		}
		if (tot - ihl < 4 || bpf_skb_load_bytes(skb, l4, h, 4)) {
			count_drop(DROP_TUNNEL_MALFORMED);
			return TC_ACT_SHOT;
		}
		f = be16(h);
		/* As packet.DecapGRE: version 0, no RFC 1701 routing, a key,
		 * transparent Ethernet bridging. */
		if ((f & 0x7) || (f & 0x4c00) || !(f & 0x2000) || be16(h + 2) != 0x6558) {
			count_drop(DROP_TUNNEL_MALFORMED);
			return TC_ACT_SHOT;
		}
		if (f & 0x8000)
			hl += 4;
		key_off = hl;
		hl += 4;
		if (f & 0x1000)
			hl += 4;
		if (tot - ihl < hl || bpf_skb_load_bytes(skb, l4 + key_off, h, 4)) {
			count_drop(DROP_TUNNEL_MALFORMED);
			return TC_ACT_SHOT;
		}
		key = bpf_ntohl(*(__u32 *)h);
		/* With a GRE checksum (not ours), the agent answers. */
		if (key == PROBE_KEY && !(f & 0x8000) && (r = echo(skb, l4 + hl, 14 + tot - l4 - hl, 0)) >= 0)
			return r;
		slot = check_inner(skb, src, key, l4 + hl, 14 + tot);
		if (slot < 0)
			return TC_ACT_SHOT;
		return decap(skb, ihl + hl, slot, 0);
	}
	return TC_ACT_OK;
}

/* Keeps struct upcall in the BTF, for bpf2go and the layout test. */
const struct upcall *unused_upcall __attribute__((unused));

char _license[] SEC("license") = "GPL";
