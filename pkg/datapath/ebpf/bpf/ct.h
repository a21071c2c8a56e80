/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection tracking in the program: the C twin of flowstate's state
 * machine (State.Advance) and expiry classes (classOf), applied to the
 * connections a flow names as its packets pass. ct_test.go drives TCP
 * flag sequences through a flow and checks the entry against flowstate.
 */
#ifndef NAGARE_CT_H
#define NAGARE_CT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "nagare.h"
#include "maps.h"
#include "parse.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* ct_class is flowstate's classOf: the index of the state's timeout. */
static __always_inline __u32 ct_class(__u8 proto, __u8 st)
{
	__u8 phase = st & CT_PHASE;

	switch (proto) {
	case 6:
		return phase < 5 ? phase : CT_CLOSED;
	case 17:
		return phase == CT_NEW ? 5 : 6;
	case 1:
	case 58:
		return phase == CT_NEW ? 7 : 8;
	}
	return phase == CT_NEW ? 9 : 10;
}

static __always_inline __u8 with_phase(__u8 st, __u8 phase)
{
	return (st & ~CT_PHASE) | phase;
}

/* ct_advance is flowstate.State.Advance: the state after a packet of
 * protocol proto with TCP flags flags went in direction reply. */
static __always_inline __u8 ct_advance(__u8 st, __u8 proto, __u8 flags, int reply)
{
	__u8 phase;

	if (reply)
		st |= CT_REPLIED;
	phase = st & CT_PHASE;
	if (proto != 6) {
		if (reply && phase == CT_NEW)
			st = with_phase(st, CT_ESTABLISHED);
		return st;
	}
	if (flags & TCP_RST)
		return with_phase(st, CT_CLOSED);
	if ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN && !reply && phase >= CT_FIN_WAIT)
		return CT_NEW; /* the port reused: start over */
	if (flags & TCP_FIN) {
		st |= reply ? CT_FIN_REV : CT_FIN_FWD;
		if ((st & (CT_FIN_FWD | CT_FIN_REV)) == (CT_FIN_FWD | CT_FIN_REV))
			return with_phase(st, CT_TIME_WAIT);
		if (phase < CT_FIN_WAIT)
			return with_phase(st, CT_FIN_WAIT);
		return st;
	}
	if (reply && phase == CT_NEW)
		return with_phase(st, CT_ESTABLISHED);
	return st;
}

/* A lifetime is written at most this often per entry (unless the state
 * changes), so that a busy connection's entry stays in shared cache
 * lines; lifetimes are in seconds. */
#define CT_REFRESH_NS 1000000ULL

/*
 * ct_update advances the connections flow f names with packet p at now.
 * It returns 0 to let the flow forward, or C_CT_MISSING / C_CT_EXPIRED
 * when a connection is gone or over: the agent, which holds the table the
 * entries come from, judges the packet (and writes a live entry again).
 */
static __noinline int ct_update(const struct pkt *p, const struct flow_val *f, __u64 now)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u8 flags = p->l4 == L4_TCP ? p->tcp_flags : 0;

	if (!cfg)
		return C_CT_MISSING;
	for (int i = 0; i < CT_REFS; i++) {
		__u32 id = f->ct[i];
		struct ct_entry *e;
		__u8 st;

		if (!id)
			break;
		e = bpf_map_lookup_elem(&ct, &id);
		if (!e)
			return C_CT_MISSING;
		if (e->expires < now)
			return C_CT_EXPIRED;
		st = ct_advance(e->state, e->fwd.proto, flags, (f->ct_dir >> i) & 1);
		if (st != e->state || now - e->used > CT_REFRESH_NS) {
			__u32 c = ct_class(e->fwd.proto, st);
			e->state = st;
			e->used = now;
			if (c < CT_CLASSES)
				e->expires = now + cfg->ct_timeout[c];
		}
	}
	return 0;
}

#endif
