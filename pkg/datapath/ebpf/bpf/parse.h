/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The frame parser: the C twin of pkg/packet's Decoder (with VXLAN
 * decoding off, as on ports) and flow.KeyOf. It must accept exactly the
 * frames the Go decoder accepts, drop the others for the same reason, and
 * compute the same key bit for bit; parse_test.go checks that on a corpus
 * and under fuzzing through BPF_PROG_TEST_RUN.
 *
 * Reads go through bpf_skb_load_bytes, which checks every offset against
 * the packet (linear part and fragments alike), so a hostile length field
 * can never make the program read outside the frame: the worst it gets is
 * an error, reported as a truncated frame.
 */
#ifndef NAGARE_PARSE_H
#define NAGARE_PARSE_H

#include "nagare.h"

#define ETH_P_IP_ 0x0800
#define ETH_P_ARP_ 0x0806
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88a8
#define ETH_P_IPV6_ 0x86dd

enum { L3_NONE, L3_UNKNOWN, L3_ARP, L3_IPV4, L3_IPV6 };
enum { L4_NONE, L4_OTHER, L4_TCP, L4_UDP, L4_ICMPV4, L4_ICMPV6, L4_GRE };
enum { FRAG_NONE, FRAG_FIRST, FRAG_LATER };

#define MAX_EXT_HEADERS 8 /* packet.MaxIPv6ExtHeaders */
#define MIN_LATER_FRAG_OFF 8
#define MAX_ND_OPTIONS 32 /* more go to the agent's parser (PARSE_PUNT) */
#define MAX_TTL_CLASS 32

/* What the parser learns beyond the key: where the headers are, for the
 * actions and the hit checks. Offsets are from skb->data (the MAC header;
 * a VLAN tag the kernel stripped into skb->vlan_tci is not in the data). */
struct pkt {
	struct flow_key key;
	__u32 l3off;
	__u32 l4off;   /* IP: the upper-layer header */
	__u32 l3len;   /* IP: the datagram length, from its header */
	__u32 payoff;  /* TCP, UDP: where the payload starts */
	__u8 l3;
	__u8 l4;
	__u8 tcp_flags;
	__u8 pad;
};

static __always_inline __u16 be16(const __u8 *b) { return (__u16)b[0] << 8 | b[1]; }

static __always_inline __u16 tci_key(__u16 tci)
{
	/* flow.Key.VLAN: VID | PCP<<13 | present in DEI's slot. */
	return (tci & 0x0fff) | (tci & 0xe000) | 0x1000;
}

static __always_inline int short_header(struct pkt *p, int otherwise)
{
	return p->key.frag == FRAG_FIRST ? DROP_SHORT_FRAGMENT : otherwise;
}

static __always_inline void mapped4(__u8 *dst, const __u8 *a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	dst[12] = a[0];
	dst[13] = a[1];
	dst[14] = a[2];
	dst[15] = a[3];
}

static __always_inline int solicited_node(const __u8 *a)
{
	return a[0] == 0xff && a[1] == 0x02 && a[11] == 0x01 && a[12] == 0xff &&
	       (a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9] | a[10]) == 0;
}

static __always_inline int unspecified(const __u8 *a)
{
	__u64 x = 0;
	for (int i = 0; i < 16; i++)
		x |= a[i];
	return x == 0;
}

/* RFC 4861 §6.1.1 and §7.1 validity checks, as packet.decodeND. */
static __noinline int parse_nd(struct __sk_buff *skb, struct pkt *p, __u32 l4off, __u32 l4len, __u8 type)
{
	__u8 *src = p->key.src_ip, *dst = p->key.dst_ip;
	__u8 hdr[24];
	__u32 o = 8;
	__u8 want = 1, flags = 0, has_link = 0;

	if (p->key.ttl_class != MAX_TTL_CLASS) /* TTL 255 is the only TTL >= 32 accepted */
		return DROP_BAD_ND;
	if (bpf_skb_load_bytes(skb, l4off, hdr, 8))
		return DROP_TRUNCATED;
	/* key.ttl_class cannot tell 255 from 40: read the hop limit itself. */
	{
		__u8 hl;
		if (bpf_skb_load_bytes(skb, p->l3off + 7, &hl, 1) || hl != 255)
			return DROP_BAD_ND;
	}
	if (hdr[1] != 0 || p->key.frag != FRAG_NONE || src[0] == 0xff)
		return DROP_BAD_ND;
	if (type != 133) {
		if (l4len < 24)
			return DROP_BAD_ND;
		if (bpf_skb_load_bytes(skb, l4off, hdr, 24))
			return DROP_TRUNCATED;
		if (hdr[8] == 0xff) /* multicast target */
			return DROP_BAD_ND;
		o = 24;
	}
	if (type == 136) {
		flags = hdr[4] & 0xe0;
		want = 2;
		if (dst[0] == 0xff && (flags & 0x40))
			return DROP_BAD_ND;
	}
	if (type == 135 && unspecified(src) && !solicited_node(dst))
		return DROP_BAD_ND;
	for (int i = 0; i < MAX_ND_OPTIONS; i++) {
		__u8 opt[2];
		__u32 olen;
		if (o >= l4len)
			goto done;
		if (l4len - o < 2)
			return DROP_BAD_ND;
		if (bpf_skb_load_bytes(skb, l4off + o, opt, 2))
			return DROP_TRUNCATED;
		if (opt[1] == 0)
			return DROP_BAD_ND;
		olen = (__u32)opt[1] * 8;
		if (olen > l4len - o)
			return DROP_BAD_ND;
		if (opt[0] == want && olen == 8)
			has_link = 1;
		o += olen;
	}
	if (o < l4len)
		return PARSE_PUNT;
done:
	if (unspecified(src) && has_link && type != 136)
		return DROP_BAD_ND;
	return 0;
}

/* The upper-layer header at l4off, up to end (packet.decodeL4). */
static __noinline int parse_l4(struct __sk_buff *skb, struct pkt *p, __u32 l4off, __u32 end)
{
	__u32 l4len = end - l4off;
	__u8 proto = p->key.proto;
	__u8 h[20];

	p->l4off = l4off;
	switch (proto) {
	case 6: { /* TCP */
		__u32 doff;
		if (l4len < 20)
			return short_header(p, DROP_BAD_L4_HEADER);
		if (bpf_skb_load_bytes(skb, l4off, h, 20))
			return DROP_TRUNCATED;
		doff = (__u32)(h[12] >> 4) * 4;
		if (doff < 20)
			return DROP_BAD_L4_HEADER;
		if (doff > l4len)
			return short_header(p, DROP_BAD_L4_HEADER);
		p->key.src_port = be16(h);
		p->key.dst_port = be16(h + 2);
		p->tcp_flags = h[13];
		p->payoff = l4off + doff;
		p->l4 = L4_TCP;
		return 0;
	}
	case 17: { /* UDP */
		__u32 ulen;
		if (l4len < 8)
			return short_header(p, DROP_BAD_L4_HEADER);
		if (bpf_skb_load_bytes(skb, l4off, h, 8))
			return DROP_TRUNCATED;
		ulen = be16(h + 4);
		if (ulen < 8 || (p->key.frag == FRAG_NONE && ulen > l4len))
			return DROP_BAD_L4_HEADER;
		p->key.src_port = be16(h);
		p->key.dst_port = be16(h + 2);
		p->payoff = l4off + 8;
		p->l4 = L4_UDP;
		return 0;
	}
	case 1: { /* ICMPv4 */
		__u8 t;
		if (p->l3 != L3_IPV4) {
			p->l4 = L4_OTHER;
			return 0;
		}
		if (l4len < 8)
			return short_header(p, DROP_BAD_L4_HEADER);
		if (bpf_skb_load_bytes(skb, l4off, h, 8))
			return DROP_TRUNCATED;
		t = h[0];
		p->key.src_port = (__u16)t << 8 | h[1];
		switch (t) {
		case 0: case 8: case 13: case 14:
			p->key.dst_port = be16(h + 4);
			break;
		case 3: case 4: case 5: case 11: case 12: {
			/* RFC 792 errors must quote an IPv4 header. */
			__u32 in = l4len - 8, ihl;
			__u8 v;
			if (p->key.frag != FRAG_NONE || in < 20)
				return DROP_BAD_ICMP;
			if (bpf_skb_load_bytes(skb, l4off + 8, &v, 1))
				return DROP_TRUNCATED;
			ihl = (__u32)(v & 0x0f) * 4;
			if (v >> 4 != 4 || ihl < 20 || ihl > in)
				return DROP_BAD_ICMP;
			break;
		}
		}
		p->l4 = L4_ICMPV4;
		return 0;
	}
	case 58: { /* ICMPv6 */
		__u8 t;
		if (p->l3 != L3_IPV6) {
			p->l4 = L4_OTHER;
			return 0;
		}
		if (l4len < 8)
			return short_header(p, DROP_BAD_L4_HEADER);
		if (bpf_skb_load_bytes(skb, l4off, h, 8))
			return DROP_TRUNCATED;
		t = h[0];
		p->key.src_port = (__u16)t << 8 | h[1];
		switch (t) {
		case 128: case 129:
			p->key.dst_port = be16(h + 4);
			break;
		case 1: case 2: case 3: case 4: {
			__u8 v;
			if (p->key.frag != FRAG_NONE || l4len - 8 < 40)
				return DROP_BAD_ICMP;
			if (bpf_skb_load_bytes(skb, l4off + 8, &v, 1))
				return DROP_TRUNCATED;
			if (v >> 4 != 6)
				return DROP_BAD_ICMP;
			break;
		}
		case 133: case 135: case 136: {
			int r = parse_nd(skb, p, l4off, l4len, t);
			if (r)
				return r;
			break;
		}
		}
		p->l4 = L4_ICMPV6;
		return 0;
	}
	case 47: { /* GRE, as packet.parseGRE */
		__u16 f;
		__u32 hl = 4;
		if (l4len < 4)
			return short_header(p, DROP_BAD_GRE);
		if (bpf_skb_load_bytes(skb, l4off, h, 4))
			return DROP_TRUNCATED;
		f = be16(h);
		if ((f & 0x7) || (f & 0x4c00))
			return DROP_BAD_GRE;
		if (f & 0x8000)
			hl += 4;
		if (f & 0x2000)
			hl += 4;
		if (f & 0x1000)
			hl += 4;
		if (l4len < hl)
			return short_header(p, DROP_BAD_GRE);
		p->l4 = L4_GRE;
		return 0;
	}
	case 59: /* no next header */
		return 0;
	}
	p->l4 = L4_OTHER;
	return 0;
}

static __noinline int parse_ipv4(struct __sk_buff *skb, struct pkt *p, __u32 l3, __u32 len)
{
	__u8 ip[20];
	__u32 ihl, tot;
	__u16 fo, off;

	if (len < l3 + 20)
		return DROP_TRUNCATED;
	if (bpf_skb_load_bytes(skb, l3, ip, 20))
		return DROP_TRUNCATED;
	if (ip[0] >> 4 != 4)
		return DROP_BAD_IP_VERSION;
	ihl = (__u32)(ip[0] & 0x0f) * 4;
	if (ihl < 20)
		return DROP_BAD_IHL;
	tot = be16(ip + 2);
	if (tot > len - l3)
		return DROP_BAD_IP_LENGTH;
	if (tot < ihl)
		return DROP_BAD_IHL;
	p->key.tos = ip[1];
	fo = be16(ip + 6);
	p->key.ttl_class = ip[8] < MAX_TTL_CLASS ? ip[8] : MAX_TTL_CLASS;
	p->key.proto = ip[9];
	mapped4(p->key.src_ip, ip + 12);
	mapped4(p->key.dst_ip, ip + 16);
	p->l3len = tot;
	p->l4off = l3 + ihl;
	p->l3 = L3_IPV4;
	off = fo & 0x1fff;
	if (off) {
		p->key.frag = FRAG_LATER;
		return off < MIN_LATER_FRAG_OFF ? DROP_OVERLAP_FRAGMENT : 0;
	}
	if (fo & 0x2000)
		p->key.frag = FRAG_FIRST;
	return parse_l4(skb, p, l3 + ihl, l3 + tot);
}

static __noinline int parse_ipv6(struct __sk_buff *skb, struct pkt *p, __u32 l3, __u32 len)
{
	__u8 ip[40];
	__u32 tot, off = 40;
	__u8 nh, ext = 0, has_frag = 0;

	if (len < l3 + 40)
		return DROP_TRUNCATED;
	if (bpf_skb_load_bytes(skb, l3, ip, 40))
		return DROP_TRUNCATED;
	if (ip[0] >> 4 != 6)
		return DROP_BAD_IP_VERSION;
	tot = 40 + (__u32)be16(ip + 4);
	if (tot > len - l3)
		return DROP_BAD_IP_LENGTH;
	p->key.tos = (ip[0] << 4) | (ip[1] >> 4);
	p->key.ttl_class = ip[7] < MAX_TTL_CLASS ? ip[7] : MAX_TTL_CLASS;
	__builtin_memcpy(p->key.src_ip, ip + 8, 16);
	__builtin_memcpy(p->key.dst_ip, ip + 24, 16);
	p->l3len = tot;
	nh = ip[6];
	for (int i = 0; i <= MAX_EXT_HEADERS; i++) {
		__u8 eh[8];
		if (nh != 0 && nh != 43 && nh != 60 && nh != 44) {
			p->key.proto = nh;
			p->l3 = L3_IPV6;
			return parse_l4(skb, p, l3 + off, l3 + tot);
		}
		if (ext == MAX_EXT_HEADERS)
			return DROP_TOO_MANY_EXT_HEADERS;
		/* RFC 8200: hop-by-hop only first, one fragment header. */
		if ((nh == 0 && ext != 0) || (nh == 44 && has_frag))
			return DROP_BAD_EXT_HEADER;
		if (tot < off + 8)
			return short_header(p, DROP_BAD_EXT_HEADER);
		if (bpf_skb_load_bytes(skb, l3 + off, eh, 8))
			return DROP_TRUNCATED;
		ext++;
		if (nh != 44) {
			__u32 hl = ((__u32)eh[1] + 1) * 8;
			if (tot < off + hl)
				return short_header(p, DROP_BAD_EXT_HEADER);
			off += hl;
			nh = eh[0];
			continue;
		}
		has_frag = 1;
		{
			__u16 fo = be16(eh + 2);
			__u16 foff = fo >> 3;
			off += 8;
			nh = eh[0];
			if (foff) {
				p->key.frag = FRAG_LATER;
				p->key.proto = nh;
				p->l4off = l3 + off;
				p->l3 = L3_IPV6;
				return foff < MIN_LATER_FRAG_OFF ? DROP_OVERLAP_FRAGMENT : 0;
			}
			if (fo & 1)
				p->key.frag = FRAG_FIRST;
		}
	}
	return DROP_TOO_MANY_EXT_HEADERS; /* not reached: the loop returns */
}

static __noinline int parse_arp(struct __sk_buff *skb, struct pkt *p, __u32 l3, __u32 len)
{
	__u8 a[28];

	if (len < l3 + 28)
		return DROP_TRUNCATED;
	if (bpf_skb_load_bytes(skb, l3, a, 28))
		return DROP_TRUNCATED;
	if (be16(a) != 1 || be16(a + 2) != ETH_P_IP_ || a[4] != 6 || a[5] != 4)
		return DROP_BAD_ARP;
	p->key.proto = a[7]; /* the low byte of the operation */
	mapped4(p->key.src_ip, a + 14);
	mapped4(p->key.dst_ip, a + 24);
	p->l3 = L3_ARP;
	return 0;
}

/*
 * parse fills p from the frame in skb arriving on the port of topology
 * index in_port. It returns 0, a DROP_* malformed reason, or PARSE_PUNT.
 */
static __noinline int parse(struct __sk_buff *skb, struct pkt *p, __u32 in_port)
{
	__u32 len = skb->len, off = 12, nv = 0;
	__u8 eth[14];
	__u16 et;

	__builtin_memset(p, 0, sizeof(*p));
	p->key.in_port = in_port;
	if (len < 14)
		return DROP_TRUNCATED;
	if (bpf_skb_load_bytes(skb, 0, eth, 14))
		return DROP_TRUNCATED;
	__builtin_memcpy(p->key.eth_dst, eth, 6);
	__builtin_memcpy(p->key.eth_src, eth + 6, 6);
	if (skb->vlan_present) {
		/* The kernel moved the outer tag into the skb on receive. */
		p->key.vlan[0] = tci_key(skb->vlan_tci);
		nv = 1;
	}
	et = be16(eth + 12);
	for (int i = 0; i < 3; i++) {
		__u8 t[4];
		if (et != ETH_P_8021Q_ && et != ETH_P_8021AD_)
			break;
		/* A third tag is the double-tagging VLAN-hopping attack. */
		if (nv >= 2)
			return DROP_TOO_MANY_VLANS;
		if (len < off + 4 + 2)
			return DROP_TRUNCATED;
		if (bpf_skb_load_bytes(skb, off + 2, t, 4))
			return DROP_TRUNCATED;
		p->key.vlan[nv & 1] = tci_key(be16(t));
		nv++;
		et = be16(t + 2);
		off += 4;
	}
	p->key.ether_type = et;
	p->l3off = off + 2;
	switch (et) {
	case ETH_P_ARP_:
		return parse_arp(skb, p, off + 2, len);
	case ETH_P_IP_:
		return parse_ipv4(skb, p, off + 2, len);
	case ETH_P_IPV6_:
		return parse_ipv6(skb, p, off + 2, len);
	}
	p->l3 = L3_UNKNOWN;
	return 0;
}

#endif
