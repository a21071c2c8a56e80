/* SPDX-License-Identifier: GPL-2.0 */
/* The maps. Their Go owners are in ../maps.go; pinned ones survive the agent. */
#ifndef NAGARE_MAPS_H
#define NAGARE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "nagare.h"

/* The exact-match flow table. max_entries is set by the loader from
 * FlowConfig.MaxFlows; entries are allocated on install, not up front. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} flows SEC(".maps");

/* Action lists by id, shared between flows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, __u32);
	__type(value, struct action_list);
} actions SEC(".maps");

/* Offloaded connections by id (nagare.h). LRU: under pressure the
 * kernel drops the least recently used, whose flows then ask the agent,
 * which writes it again from its table. max_entries is set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 17);
	__type(key, __u32);
	__type(value, struct ct_entry);
} ct SEC(".maps");

/* ifindex -> port slot, for frames entering a port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} port_slots SEC(".maps");

/* slot -> the port. An output checks the slot still holds its ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_info);
} ports SEC(".maps");

/* tunnel key -> port slot: the receive side of "tunnel key = egress port". */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} tunnel_keys SEC(".maps");

/* The tunnel-zone peers (IPv4, network order). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_stats);
} port_stats SEC(".maps");

/* slot * 2 + POLICE_* -> a port's token bucket (SetPortQoS). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_PORTS);
	__type(key, __u32);
	__type(value, struct policer);
} policers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_DROPS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXEC_SLOTS);
	__type(key, __u32);
	__type(value, struct exec_slot);
} exec_slots SEC(".maps");

/*
 * Upcalls: a record per CPU ring, the packet attached. Two sets of rings:
 * "upcalls" wakes the agent's reader at every record, "upcalls_batch" only
 * every few dozen (its reader's wakeup_events), and upcall_mode[0] says
 * which to use: 1 while the reader is awake and drains both every
 * millisecond, 0 while it sleeps. A wakeup is an inter-processor
 * interrupt and a thread switch, more than ten times the cost of the
 * rest of a miss in the kernel (BenchmarkUpcall): under a flood of new
 * flows they are paid once per batch, not once per packet.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} upcalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} upcalls_batch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} upcall_mode SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += n;
}

/* upcall_output sends an upcall record with the packet (flags as
 * bpf_perf_event_output's) to the rings upcall_mode names. */
static __always_inline long upcall_output(struct __sk_buff *skb, __u64 flags, void *data, __u64 size)
{
	__u32 zero = 0;
	__u32 *mode = bpf_map_lookup_elem(&upcall_mode, &zero);

	if (mode && *mode)
		return bpf_perf_event_output(skb, &upcalls_batch, flags, data, size);
	return bpf_perf_event_output(skb, &upcalls, flags, data, size);
}

static __always_inline void count_drop(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&drops, &reason);
	if (c)
		*c += 1;
}

/* police takes a frame of len bytes from the bucket of the port in slot
 * for direction dir (POLICE_*), as datapath.Policer.Allow does: it returns
 * 0, taking nothing, if the bucket has too few tokens (the caller counts
 * the drop, DROP_QOS_POLICED). A GSO super-frame
 * takes its whole length at once. A port without a limit costs a lookup. */
static __noinline int police(__u32 slot, __u32 dir, __u32 len)
{
	__u32 idx = slot * 2 + dir;
	struct policer *b = bpf_map_lookup_elem(&policers, &idx);
	__u64 rate, cost, now, elapsed;
	int ok = 1;

	if (!b)
		return 1;
	rate = *(volatile __u64 *)&b->rate;
	if (!rate)
		return 1;
	cost = (__u64)len * 1000000000ULL / rate;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&b->lock);
	/* The agent may have changed the limit since rate was read: a
	 * removed one lets the frame through. */
	if (b->rate) {
		if (b->last && now > b->last) {
			elapsed = now - b->last;
			if (b->tokens >= b->burst || elapsed >= b->burst - b->tokens)
				b->tokens = b->burst;
			else
				b->tokens += elapsed;
		}
		b->last = now;
		if (b->tokens < cost)
			ok = 0;
		else
			b->tokens -= cost;
	}
	bpf_spin_unlock(&b->lock);
	return ok;
}

#endif
