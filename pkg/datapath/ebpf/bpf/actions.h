/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Flow actions, applied in order to the skb (OpenFlow semantics: each sees
 * the frame as the previous left it). Checksums are fixed with the kernel's
 * incremental helpers, which also keep CHECKSUM_PARTIAL skbs (locally
 * generated TCP, GSO) and CHECKSUM_COMPLETE ones consistent: an address is
 * in the TCP/UDP/ICMPv6 pseudo header (BPF_F_PSEUDO_HDR), a port is not,
 * and an IPv4 UDP checksum of zero ("none") stays zero (BPF_F_MARK_MANGLED_0).
 *
 * Each action is a __noinline function so that the verifier checks it
 * once, not once per position in the list.
 */
#ifndef NAGARE_ACTIONS_H
#define NAGARE_ACTIONS_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "nagare.h"
#include "maps.h"
#include "parse.h"

/* The frame length as received: the data plus a tag the kernel took out. */
static __always_inline __u32 frame_len(struct __sk_buff *skb)
{
	return skb->len + (skb->vlan_present ? 4 : 0);
}

/* l3_offset returns the offset of the L3 header of the frame as it is now
 * (pushes and pops move it), and its EtherType in *et. */
static __noinline int l3_offset(struct __sk_buff *skb, __u16 *et)
{
	__u32 off = 12;
	__u8 t[2];

	for (int i = 0; i < 4; i++) {
		if (bpf_skb_load_bytes(skb, off, t, 2))
			return -1;
		*et = be16(t);
		if (*et != ETH_P_8021Q_ && *et != ETH_P_8021AD_)
			return off + 2;
		off += 4;
	}
	return -1;
}

static __noinline int act_dec_ttl(struct __sk_buff *skb, __u8 n)
{
	__u16 et = 0;
	int l3 = l3_offset(skb, &et);
	__u8 h[12];

	if (l3 < 0)
		return 0;
	if (et == ETH_P_IP_) {
		__u16 old, new;
		if (bpf_skb_load_bytes(skb, l3, h, 12) || h[0] >> 4 != 4)
			return 0;
		if (h[8] <= n)
			return DROP_TTL_EXPIRED;
		__builtin_memcpy(&old, h + 8, 2);
		h[8] -= n;
		__builtin_memcpy(&new, h + 8, 2);
		if (bpf_l3_csum_replace(skb, l3 + 10, old, new, 2))
			return DROP_TTL_EXPIRED;
		if (bpf_skb_store_bytes(skb, l3 + 8, h + 8, 1, 0))
			return DROP_TTL_EXPIRED;
	} else if (et == ETH_P_IPV6_) {
		if (bpf_skb_load_bytes(skb, l3, h, 8) || h[0] >> 4 != 6)
			return 0;
		if (h[7] <= n)
			return DROP_TTL_EXPIRED;
		h[7] -= n;
		if (bpf_skb_store_bytes(skb, l3 + 7, h + 7, 1, 0))
			return DROP_TTL_EXPIRED;
	}
	return 0;
}

/* l4_csum returns the offset of the L4 checksum an address change must
 * fix (pseudo) or a port change must fix (!pseudo), 0 if none, and the
 * helper flags in *flags. */
static __always_inline __u32 l4_csum(struct __sk_buff *skb, const struct pkt *p, __u32 l4off, int pseudo, __u64 *flags)
{
	*flags = pseudo ? BPF_F_PSEUDO_HDR : 0;
	switch (p->l4) {
	case L4_TCP:
		return l4off + 16;
	case L4_UDP:
		*flags |= BPF_F_MARK_MANGLED_0;
		return l4off + 6;
	case L4_ICMPV6:
		return l4off + 2;
	case L4_ICMPV4:
		return pseudo ? 0 : l4off + 2;
	}
	return 0;
}

static __noinline int act_set_ip(struct __sk_buff *skb, const struct pkt *p, const struct action *a, int dst)
{
	__u16 et = 0;
	int l3 = l3_offset(skb, &et);
	__u32 l4off, csum_off;
	__u64 flags;

	if (l3 < 0)
		return DROP_REWRITE_REFUSED;
	l4off = l3 + (p->l4off - p->l3off);
	if (p->l3 == L3_IPV4 && a->b == 4) {
		__u32 old, new;
		__u32 off = l3 + (dst ? 16 : 12);
		if (bpf_skb_load_bytes(skb, off, &old, 4))
			return DROP_REWRITE_REFUSED;
		__builtin_memcpy(&new, a->data, 4);
		if (bpf_l3_csum_replace(skb, l3 + 10, old, new, 4))
			return DROP_REWRITE_REFUSED;
		csum_off = l4_csum(skb, p, l4off, 1, &flags);
		if (csum_off && bpf_l4_csum_replace(skb, csum_off, old, new, flags | 4))
			return DROP_REWRITE_REFUSED;
		if (bpf_skb_store_bytes(skb, off, &new, 4, 0))
			return DROP_REWRITE_REFUSED;
		return 0;
	}
	if (p->l3 == L3_IPV6 && a->b == 6) {
		__u8 old[16];
		__u32 off = l3 + (dst ? 24 : 8);
		__s64 diff;
		if (bpf_skb_load_bytes(skb, off, old, 16))
			return DROP_REWRITE_REFUSED;
		csum_off = l4_csum(skb, p, l4off, 1, &flags);
		if (csum_off) {
			diff = bpf_csum_diff((__be32 *)old, 16, (__be32 *)a->data, 16, 0);
			if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, flags))
				return DROP_REWRITE_REFUSED;
		}
		if (bpf_skb_store_bytes(skb, off, a->data, 16, 0))
			return DROP_REWRITE_REFUSED;
		return 0;
	}
	return DROP_REWRITE_REFUSED;
}

/* act_set_l16 rewrites a 16-bit L4 field (a port or an echo identifier)
 * at l4 offset field, fixing the L4 checksum. */
static __noinline int act_set_l16(struct __sk_buff *skb, const struct pkt *p, __u16 value, __u32 field)
{
	__u16 et = 0;
	int l3 = l3_offset(skb, &et);
	__u32 l4off, csum_off;
	__u16 old, new = bpf_htons(value);
	__u64 flags;

	if (l3 < 0)
		return DROP_REWRITE_REFUSED;
	l4off = l3 + (p->l4off - p->l3off);
	if (bpf_skb_load_bytes(skb, l4off + field, &old, 2))
		return DROP_REWRITE_REFUSED;
	csum_off = l4_csum(skb, p, l4off, 0, &flags);
	if (csum_off && bpf_l4_csum_replace(skb, csum_off, old, new, flags | 2))
		return DROP_REWRITE_REFUSED;
	if (bpf_skb_store_bytes(skb, l4off + field, &new, 2, 0))
		return DROP_REWRITE_REFUSED;
	return 0;
}

static __always_inline int is_echo(const struct pkt *p)
{
	__u8 t = p->key.src_port >> 8;
	return (p->l4 == L4_ICMPV4 && (t == 8 || t == 0)) || (p->l4 == L4_ICMPV6 && (t == 128 || t == 129));
}

static __noinline int act_vlan(struct __sk_buff *skb, const struct action *a)
{
	if (a->type == ACT_PUSH_VLAN)
		return bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q_), a->h & 0x0fff) ? DROP_VLAN_HEADROOM : 0;
	/* The kernel took the outer tag out of the frame on receive; a frame
	 * without one has none. */
	if (!skb->vlan_present)
		return DROP_POP_UNTAGGED;
	return bpf_skb_vlan_pop(skb) ? DROP_POP_UNTAGGED : 0;
}

/* output sends the frame out of a port: redirect for the last output of
 * the list, a clone for the others (later actions keep changing the
 * original). It returns the TC verdict for the last, 0 for a clone, or
 * -reason. */
static __noinline int act_output(struct __sk_buff *skb, const struct action *a, int last)
{
	__u32 slot = a->h;
	struct port_info *pi = bpf_map_lookup_elem(&ports, &slot);
	struct port_stats *ps;

	if (!pi || pi->ifindex != a->w || a->w == 0)
		return -DROP_PORT_GONE;
	/* The port's VM receives it: its ingress limit. A flow's hits and
	 * the agent's Execute (exec_in) both output here. */
	if (!police(slot, POLICE_INGRESS, frame_len(skb)))
		return -DROP_QOS_POLICED;
	ps = bpf_map_lookup_elem(&port_stats, &slot);
	if (ps) {
		ps->tx_packets++;
		ps->tx_bytes += frame_len(skb);
	}
	if (!last)
		return bpf_clone_redirect(skb, a->w, 0) ? -DROP_PORT_GONE : 0;
	if (a->b & OUT_PEER)
		return bpf_redirect_peer(a->w, 0);
	return bpf_redirect(a->w, 0);
}

/* ip_len is the length of the IP datagram the flow's MTU applies to: for
 * a GSO super-packet, that of one segment. */
static __always_inline __u32 ip_len(struct __sk_buff *skb, const struct pkt *p)
{
	__u32 gso = skb->gso_size;

	if (gso && p->payoff > p->l3off)
		return p->payoff - p->l3off + gso;
	return p->l3len;
}

/* outer_ipv4 writes the 20-byte outer IPv4 header of a tunnel packet of
 * tot bytes (this header included) carrying proto from src to dst
 * (network order), with its checksum. */
static __always_inline int outer_ipv4(__u8 *ip, __u8 proto, __u32 tot, __u32 src, __u32 dst)
{
	__s64 csum;

	ip[0] = 0x45;
	ip[2] = tot >> 8;
	ip[3] = tot & 0xff;
	ip[6] = 0x40; /* DF: the overlay's MTU is sized for the underlay */
	ip[8] = 64;
	ip[9] = proto;
	__builtin_memcpy(ip + 12, &src, 4);
	__builtin_memcpy(ip + 16, &dst, 4);
	csum = bpf_csum_diff(0, 0, (__be32 *)ip, 20, 0);
	if (csum < 0)
		return -1;
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	*(__u16 *)(ip + 10) = ~(__u16)csum;
	return 0;
}

/* send_outer writes the outer Ethernet header (unicast, IPv4; the
 * addresses are the neighbour subsystem's) and sends the tunnel packet
 * out of the underlay interface ifindex. */
static __always_inline int send_outer(struct __sk_buff *skb, __u32 ifindex)
{
	__u8 eth[14] = {};

	eth[12] = 0x08;
	if (bpf_skb_store_bytes(skb, 0, eth, 14, 0))
		return -DROP_TUNNEL_TX_ERROR;
	/* Without next-hop parameters the kernel routes the outer packet
	 * (out of the underlay interface, through a gateway if need be) and
	 * resolves the neighbour. bpf_fib_lookup would refuse: it insists on
	 * forwarding being enabled on the interface. */
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

/* gre_encap encapsulates the frame in IPv4 + GRE (RFC 2890: key,
 * transparent Ethernet bridging) in the program itself: many kernels (this
 * project's CI among them) are built without GRE tunnel devices, while the
 * GRE segmentation offload that GSO frames need is always there. The room
 * is made with the encapsulation flags so that the kernel segments a GSO
 * frame as GRE, and the kernel routes the outer packet and fills in its
 * Ethernet header. Only IP frames without a VLAN tag can be grown this way
 * (bpf_skb_adjust_room); the agent marks other GRE flows slow and sends
 * their packets itself. The encapsulation must be the flow's last output:
 * it changes the frame for every later action too. */
static __noinline int gre_encap(struct __sk_buff *skb, const struct action *a, const struct config *cfg)
{
	struct {
		__u8 ip[20];
		__u8 gre[8];
		__u8 mac[14];
	} h = {};
	__u32 key = bpf_htonl(a->w), dst;

	if (skb->vlan_present || (skb->protocol != bpf_htons(ETH_P_IP_) && skb->protocol != bpf_htons(ETH_P_IPV6_)))
		return -DROP_TUNNEL_TX_ERROR;
	if (bpf_skb_load_bytes(skb, 0, h.mac, 14))
		return -DROP_TUNNEL_TX_ERROR;
	__builtin_memcpy(&dst, a->data, 4);
	if (bpf_skb_adjust_room(skb, sizeof(h), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_GRE |
				BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(14)))
		return -DROP_TUNNEL_TX_ERROR;
	if (outer_ipv4(h.ip, 47, skb->len - 14, cfg->local_ip, dst))
		return -DROP_TUNNEL_TX_ERROR;
	h.gre[0] = 0x20; /* K */
	h.gre[2] = 0x65;
	h.gre[3] = 0x58;
	__builtin_memcpy(h.gre + 4, &key, 4);
	if (bpf_skb_store_bytes(skb, 14, &h, sizeof(h), 0))
		return -DROP_TUNNEL_TX_ERROR;
	return send_outer(skb, cfg->gre_ifindex);
}

/* The UDP source ports of VXLAN packets: RFC 7348's suggested range. */
#define VXLAN_SPORT_MIN 49152
#define VXLAN_SPORTS (65536 - VXLAN_SPORT_MIN)

/* vxlan_encap encapsulates the frame in IPv4 + UDP + VXLAN (RFC 7348) in
 * the program, as gre_encap does GRE, and sends it out of the underlay
 * interface: the frame skips the VXLAN device's transmit path (a queue,
 * a route lookup, the netfilter hooks of a locally sent packet). The UDP
 * source port is a hash of the inner flow, so that the underlay's ECMP
 * spreads flows as RFC 7348 asks; the UDP checksum is 0, as the device
 * sends it here (BPF_F_ZERO_CSUM_TX). The room is made with the UDP
 * tunnel flags, so that the kernel segments a GSO frame as the device's
 * would be, each segment's inner MSS kept (FIXED_GSO: the flow's MTU
 * check already holds the segments to the overlay's MTU).
 *
 * bpf_redirect_neigh hands the packet to the underlay interface as it is,
 * without the fragmentation of the kernel's IP output: a packet (or a GSO
 * frame's segment: seg is the inner IP length of one, 0 to take the
 * frame's) that would not fit the interface's MTU goes through the VXLAN
 * device, which fragments it as before (a VM whose MTU leaves no room for
 * the encapsulation still gets through).
 *
 * It returns 0, having changed nothing, for those and for a frame
 * bpf_skb_adjust_room cannot grow so — not IP, VLAN-tagged, already
 * encapsulated, of a GSO type it refuses, or too long for one outer IPv4
 * header — which the caller sends through the VXLAN device instead; else
 * the TC verdict, or -reason once the frame has changed. */
static __noinline int vxlan_encap(struct __sk_buff *skb, const struct action *a, const struct config *cfg, __u32 seg)
{
	struct {
		__u8 ip[20];
		__u8 udp[8];
		__u8 vx[8];
		__u8 mac[14];
	} h = {};
	__u32 vni = bpf_htonl(a->w << 8), dst, tot = skb->len - 14 + sizeof(h), hash, mtu;
	__u16 sport;

	if (!cfg->underlay_ifindex || skb->vlan_present || tot > 0xffff ||
	    (skb->protocol != bpf_htons(ETH_P_IP_) && skb->protocol != bpf_htons(ETH_P_IPV6_)))
		return 0;
	if (!seg)
		seg = skb->len - 14;
	/* In: a small length, which fits; out: the interface's MTU. */
	mtu = 1;
	if (bpf_check_mtu(skb, cfg->underlay_ifindex, &mtu, 0, 0) || seg + sizeof(h) > mtu)
		return 0;
	if (bpf_skb_load_bytes(skb, 0, h.mac, 14))
		return 0;
	/* Before the outer headers exist: the hash of the inner flow. */
	hash = bpf_get_hash_recalc(skb);
	hash ^= hash << 16;
	sport = VXLAN_SPORT_MIN + (__u16)(((__u64)hash * VXLAN_SPORTS) >> 32);
	if (bpf_skb_adjust_room(skb, sizeof(h), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
				BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(14) |
				BPF_F_ADJ_ROOM_FIXED_GSO))
		return 0;
	__builtin_memcpy(&dst, a->data, 4);
	if (outer_ipv4(h.ip, 17, tot, cfg->local_ip, dst))
		return -DROP_TUNNEL_TX_ERROR;
	*(__u16 *)h.udp = bpf_htons(sport);
	*(__u16 *)(h.udp + 2) = bpf_htons(cfg->vxlan_port);
	*(__u16 *)(h.udp + 4) = bpf_htons(tot - 20);
	h.vx[0] = 0x08; /* I: the VNI is valid */
	__builtin_memcpy(h.vx + 4, &vni, 4);
	if (bpf_skb_store_bytes(skb, 14, &h, sizeof(h), 0))
		return -DROP_TUNNEL_TX_ERROR;
	return send_outer(skb, cfg->underlay_ifindex);
}

/* encap sends the frame to a remote host. GRE is built here (gre_encap),
 * and so is VXLAN as the flow's last output (vxlan_encap; seg is the
 * inner IP length of one segment, 0 for the frame's). Other VXLAN
 * frames go through the kernel's VXLAN device in collect_md mode: the key
 * and remote endpoint travel as skb metadata (bpf_skb_set_tunnel_key), and
 * the device builds the outer headers and segments GSO frames. */
static __noinline int act_encap(struct __sk_buff *skb, const struct action *a, int last, __u32 seg)
{
	__u32 zero = 0, ifindex;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct bpf_tunnel_key tk = {};
	__u32 len = frame_len(skb);
	int gre = a->b == TUN_GRE, v;

	if (!cfg)
		return -DROP_TUNNEL_DISABLED;
	ifindex = gre ? cfg->gre_ifindex : cfg->vxlan_ifindex;
	if (!ifindex)
		return -DROP_TUNNEL_DISABLED;
	v = 0;
	if (gre) {
		if (!last)
			return -DROP_TUNNEL_TX_ERROR; /* the agent never installs this */
		v = gre_encap(skb, a, cfg);
	} else if (last) {
		v = vxlan_encap(skb, a, cfg, seg);
	}
	if (v < 0) {
		count(gre ? C_GRE_TX_ERRORS : C_VXLAN_TX_ERRORS, 1);
		return v;
	}
	if (v > 0 || gre) {
		count(gre ? C_GRE_TX_PACKETS : C_VXLAN_TX_PACKETS, 1);
		count(gre ? C_GRE_TX_BYTES : C_VXLAN_TX_BYTES, len);
		return v;
	}
	/* VXLAN the program left to the device. */
	tk.tunnel_id = a->w;
	tk.remote_ipv4 = bpf_ntohl(*(__u32 *)a->data);
	tk.local_ipv4 = bpf_ntohl(cfg->local_ip);
	tk.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &tk, sizeof(tk), BPF_F_ZERO_CSUM_TX)) {
		count(C_VXLAN_TX_ERRORS, 1);
		return -DROP_TUNNEL_TX_ERROR;
	}
	count(C_VXLAN_TX_PACKETS, 1);
	count(C_VXLAN_TX_BYTES, len);
	if (!last) {
		if (bpf_clone_redirect(skb, ifindex, 0)) {
			count(C_VXLAN_TX_ERRORS, 1);
			return -DROP_TUNNEL_TX_ERROR;
		}
		return 0;
	}
	return bpf_redirect(ifindex, 0);
}

/* apply runs a flow's actions and returns the TC verdict. */
static __noinline int apply(struct __sk_buff *skb, const struct pkt *p, const struct action_list *f)
{
	__u32 n = f->n, last = f->last_out;
	int r = 0;

	if (n == 0) {
		count_drop(DROP_FLOW);
		return TC_ACT_SHOT;
	}
	for (__u32 i = 0; i < MAX_ACTS; i++) {
		const struct action *a = &f->acts[i];
		if (i >= n || i > last)
			break;
		switch (a->type) {
		case ACT_SET_ETH_SRC:
			r = bpf_skb_store_bytes(skb, 6, a->data, 6, 0) ? DROP_REWRITE_REFUSED : 0;
			break;
		case ACT_SET_ETH_DST:
			r = bpf_skb_store_bytes(skb, 0, a->data, 6, 0) ? DROP_REWRITE_REFUSED : 0;
			break;
		case ACT_PUSH_VLAN:
		case ACT_POP_VLAN:
			r = act_vlan(skb, a);
			break;
		case ACT_DEC_TTL:
			r = act_dec_ttl(skb, a->b);
			break;
		case ACT_SET_IP_SRC:
		case ACT_SET_IP_DST:
			r = act_set_ip(skb, p, a, a->type == ACT_SET_IP_DST);
			break;
		case ACT_SET_L4_SRC:
		case ACT_SET_L4_DST:
			if (p->l4 != L4_TCP && p->l4 != L4_UDP)
				r = DROP_REWRITE_REFUSED;
			else
				r = act_set_l16(skb, p, a->h, a->type == ACT_SET_L4_DST ? 2 : 0);
			break;
		case ACT_SET_ICMP_ID:
			r = is_echo(p) ? act_set_l16(skb, p, a->h, 4) : DROP_REWRITE_REFUSED;
			break;
		case ACT_OUTPUT:
		case ACT_ENCAP: {
			int v = a->type == ACT_OUTPUT ? act_output(skb, a, i == last) : act_encap(skb, a, i == last, ip_len(skb, p));
			if (v < 0) {
				count_drop(-v);
				if (i == last)
					return TC_ACT_SHOT;
				break;
			}
			if (i == last)
				return v;
			break;
		}
		}
		if (r) {
			count_drop(r);
			return TC_ACT_SHOT;
		}
	}
	return TC_ACT_SHOT;
}

#endif
