// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * TC programs for a pod's host-side interface: count every packet per flow direction in an LRU
 * map, and copy only the packets that decide something (TCP SYN, FIN, RST; ICMP destination
 * unreachable; DNS) to user space through a ring buffer.
 *
 * Direct packet access only, no CO-RE and no kernel BTF, and nothing newer than Linux 5.15: the
 * programs must load on the kernels AKS node images ship. Every program returns TC_ACT_UNSPEC
 * (TCX_NEXT), so the packet goes on to whatever else is attached, unchanged.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "outflow.h"

/* linux/icmp.h pulls in libc headers that do not build for -target bpf; the first bytes are all
 * that is read. */
struct icmp_head {
	__u8 type;
	__u8 code;
	__u16 checksum;
};
#define ICMP_DEST_UNREACH 3

/* The loader sets max_entries from the agent's configuration. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct outflow_flow_key);
	__type(value, struct outflow_flow_value);
} FLOWS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct outflow_flow_cache);
} FLOW_CACHE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OUTFLOW_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} STATS SEC(".maps");

/* Bytes waiting in the ring buffer past which a writer wakes the reader. Below it, the reader's
 * poll timeout collects them: a busy node pays one wake-up per batch, not one per event. */
volatile const __u64 wakeup_bytes = 65536;

#define DNS_PORT bpf_htons(53)
#define IP_FRAG_OFFSET 0x1fff

static __always_inline void stat_add(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &slot);

	/* Per-CPU slot: no other CPU writes it, so a plain add is exact. */
	if (v)
		*v += n;
}

static __always_inline void submit(struct outflow_event *ev)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
	stat_add(OUTFLOW_STAT_EVENTS, 1);
}

/* One function per reserved size: bpf_ringbuf_reserve takes a constant. */
#define DEFINE_EMIT(name, bytes)                                                   \
	static __always_inline void name(struct __sk_buff *skb, __u8 kind, __u8 hook) \
	{                                                                          \
		struct outflow_event *ev;                                          \
		__u64 cap = skb->len;                                              \
                                                                                   \
		ev = bpf_ringbuf_reserve(&EVENTS, sizeof(*ev) + (bytes), 0);       \
		if (!ev) {                                                         \
			stat_add(OUTFLOW_STAT_EVENT_DROPS, 1);                     \
			return;                                                    \
		}                                                                  \
		if (cap > (bytes))                                                 \
			cap = (bytes);                                             \
		/* 64-bit all along, so the bounds the verifier sees are these. */ \
		if (cap < 1 || bpf_skb_load_bytes(skb, 0, ev->data, cap) < 0)     \
			cap = 0;                                                   \
		ev->ts_ns = bpf_ktime_get_ns();                                    \
		ev->ifindex = skb->ifindex;                                        \
		ev->pkt_len = skb->len;                                            \
		ev->cap_len = cap;                                                 \
		ev->kind = kind;                                                   \
		ev->hook = hook;                                                   \
		ev->_pad = 0;                                                      \
		submit(ev);                                                        \
	}

DEFINE_EMIT(emit_control, OUTFLOW_CONTROL_BYTES)
DEFINE_EMIT(emit_dns, OUTFLOW_DNS_BYTES)

static __always_inline void add_to_flow(struct outflow_flow_key *key, __u64 segs, __u64 bytes)
{
	struct outflow_flow_value *v = bpf_map_lookup_elem(&FLOWS, key);

	if (!v) {
		struct outflow_flow_value fresh = { .packets = segs, .bytes = bytes };

		if (bpf_map_update_elem(&FLOWS, key, &fresh, BPF_NOEXIST) == 0) {
			stat_add(OUTFLOW_STAT_FLOWS_NEW, 1);
			return;
		}
		/* Another CPU created it first: add to theirs. */
		v = bpf_map_lookup_elem(&FLOWS, key);
		if (!v) {
			stat_add(OUTFLOW_STAT_FLOW_FULL, 1);
			return;
		}
	}
	__sync_fetch_and_add(&v->packets, segs);
	__sync_fetch_and_add(&v->bytes, bytes);
}

/* Both keys 8-byte aligned: five words and a half. */
static __always_inline int same_key(const struct outflow_flow_key *a,
				    const struct outflow_flow_key *b)
{
	const __u64 *x = (const void *)a, *y = (const void *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] &&
	       *(const __u32 *)&x[5] == *(const __u32 *)&y[5];
}

/* Counts a packet through this CPU's cache entry (see struct outflow_flow_cache). A TC program
 * runs to its end on one CPU without another TC program of this CPU in between (ingress in the
 * receive softirq, egress with bottom halves off; a PREEMPT_RT kernel would break this), so the
 * entry needs no atomics. */
static __always_inline void count_flow(struct outflow_flow_key *key, __u64 segs, __u64 bytes)
{
	__u32 zero = 0;
	struct outflow_flow_cache *c = bpf_map_lookup_elem(&FLOW_CACHE, &zero);

	if (!c) {
		add_to_flow(key, segs, bytes);
		return;
	}
	if (same_key(&c->key, key)) {
		c->packets += segs;
		c->bytes += bytes;
		return;
	}
	if (c->packets)
		add_to_flow(&c->key, c->packets, c->bytes);
	__builtin_memcpy(&c->key, key, sizeof(*key));
	c->packets = segs;
	c->bytes = bytes;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 hook)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct outflow_flow_key key __attribute__((aligned(8))) = {};
	struct ethhdr *eth = data;
	__u64 segs = skb->gso_segs ? skb->gso_segs : 1;
	void *l4 = 0;
	__u8 kind = 0;

	stat_add(OUTFLOW_STAT_PACKETS, segs);
	stat_add(OUTFLOW_STAT_BYTES, skb->len);
	if ((void *)(eth + 1) > end) {
		stat_add(OUTFLOW_STAT_SHORT, 1);
		return TC_ACT_UNSPEC; /* not even an Ethernet header */
	}
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl < 5) {
			stat_add(OUTFLOW_STAT_SHORT, 1);
			return TC_ACT_UNSPEC;
		}
		key.family = OUTFLOW_AF_INET;
		key.proto = ip->protocol;
		__builtin_memcpy(key.saddr, &ip->saddr, 4);
		__builtin_memcpy(key.daddr, &ip->daddr, 4);
		/* Later fragments carry no L4 header: counted under ports 0. */
		if (!(ip->frag_off & bpf_htons(IP_FRAG_OFFSET)))
			l4 = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end) {
			stat_add(OUTFLOW_STAT_SHORT, 1);
			return TC_ACT_UNSPEC;
		}
		key.family = OUTFLOW_AF_INET6;
		key.proto = ip6->nexthdr;
		__builtin_memcpy(key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(key.daddr, &ip6->daddr, 16);
		/* Extension headers are not walked: such packets count under ports 0. */
		l4 = ip6 + 1;
	} else {
		stat_add(OUTFLOW_STAT_NOT_IP, 1);
		return TC_ACT_UNSPEC; /* ARP and friends */
	}
	key.ifindex = skb->ifindex;

	if (l4 && key.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) <= end) {
			key.sport = th->source;
			key.dport = th->dest;
			if (th->source == DNS_PORT || th->dest == DNS_PORT)
				kind = OUTFLOW_EV_DNS;
			else if (th->syn || th->fin || th->rst)
				kind = OUTFLOW_EV_CONTROL;
		}
	} else if (l4 && key.proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) <= end) {
			key.sport = uh->source;
			key.dport = uh->dest;
			if (uh->source == DNS_PORT || uh->dest == DNS_PORT)
				kind = OUTFLOW_EV_DNS;
		}
	} else if (l4 && key.proto == IPPROTO_ICMP) {
		struct icmp_head *ih = l4;

		if ((void *)(ih + 1) <= end && ih->type == ICMP_DEST_UNREACH)
			kind = OUTFLOW_EV_CONTROL;
	} else if (l4 && key.proto == IPPROTO_ICMPV6) {
		struct icmp6hdr *ih = l4;

		if ((void *)(ih + 1) <= end && ih->icmp6_type == ICMPV6_DEST_UNREACH)
			kind = OUTFLOW_EV_CONTROL;
	}

	count_flow(&key, segs, skb->len);
	if (kind == OUTFLOW_EV_DNS)
		emit_dns(skb, kind, hook);
	else if (kind == OUTFLOW_EV_CONTROL)
		emit_control(skb, kind, hook);
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int outflow_ingress(struct __sk_buff *skb)
{
	return handle(skb, OUTFLOW_HOOK_INGRESS);
}

SEC("classifier")
int outflow_egress(struct __sk_buff *skb)
{
	return handle(skb, OUTFLOW_HOOK_EGRESS);
}

char _license[] SEC("license") = "GPL";
