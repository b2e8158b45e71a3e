/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Everything the kernel programs and the agent share: map keys and values, the ring-buffer event,
 * and the constants that name their fields. The agent mirrors each struct in ebpf/src/abi.rs and
 * ebpf/tests/layout.rs checks the two agree, so a change here must be made there too.
 *
 * Fixed-width types, explicit padding, no bitfields and no enums inside structs: the layout must
 * be the same for clang -target bpf and for the host compiler.
 */
#ifndef OUTFLOW_H
#define OUTFLOW_H

#include <linux/types.h>

/* Address families in outflow_flow_key.family. */
#define OUTFLOW_AF_INET 4
#define OUTFLOW_AF_INET6 6

/* Which hook saw a packet (outflow_event.hook). On a pod's host-side interface, TC ingress sees
 * what the pod sends and TC egress what it receives. */
#define OUTFLOW_HOOK_INGRESS 0
#define OUTFLOW_HOOK_EGRESS 1

/* Why a packet became an event (outflow_event.kind). */
#define OUTFLOW_EV_CONTROL 1 /* TCP SYN, FIN or RST; ICMP destination unreachable */
#define OUTFLOW_EV_DNS 2     /* UDP or TCP with port 53 on either side */

/* Bytes of the frame an event carries, from the Ethernet header on. A control packet needs its
 * headers and an ICMP error's quote; DNS needs the message, whose answers usually fit in 512. */
#define OUTFLOW_CONTROL_BYTES 192
#define OUTFLOW_DNS_BYTES 704

/* Slots of the STATS per-CPU array. */
#define OUTFLOW_STAT_PACKETS 0      /* packets seen */
#define OUTFLOW_STAT_BYTES 1        /* their bytes (skb->len) */
#define OUTFLOW_STAT_FLOWS_NEW 2    /* flow entries created (evictions = created - live - reaped) */
#define OUTFLOW_STAT_FLOW_FULL 3    /* flow entries that could not be created */
#define OUTFLOW_STAT_EVENTS 4       /* events written to the ring buffer */
#define OUTFLOW_STAT_EVENT_DROPS 5  /* events lost because the ring buffer was full */
#define OUTFLOW_STAT_NOT_IP 6       /* frames that are not IPv4 or IPv6 */
#define OUTFLOW_STAT_SHORT 7        /* frames too short for the headers they announce */
#define OUTFLOW_STAT_COUNT 8

/* One direction of one flow on one interface: the packet's own source and destination, so the two
 * directions are two entries and the kernel never compares addresses. Ports in network order. */
struct outflow_flow_key {
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 proto;
	__u8 family;
	__u8 _pad[2];
};

/* Counters of one flow direction. Updated with atomic adds: several CPUs may share an entry.
 * No timestamp: the agent tells idle entries by counters that stopped moving between its scans,
 * which spares every packet a clock read. */
struct outflow_flow_value {
	__u64 packets; /* segments: a GSO packet counts as its gso_segs */
	__u64 bytes;   /* skb->len, from the Ethernet header on */
};

/* Each CPU's flow direction of its last packet, and the counts not yet added to FLOWS (one entry
 * of the FLOW_CACHE per-CPU array). A bulk transfer's packets follow each other on one CPU, so
 * most packets add to this and skip the hash lookup; the counts go into FLOWS when the CPU sees
 * another flow. The agent reads FLOWS, then every CPU's entry, and adds the two. The key first,
 * 8-byte aligned, so the programs compare it a word at a time. */
struct outflow_flow_cache {
	struct outflow_flow_key key;
	__u32 _pad;
	__u64 packets;
	__u64 bytes;
} __attribute__((aligned(8)));

/* A packet sent to user space. `data` holds the first cap_len bytes of the frame; the reserved
 * size is OUTFLOW_CONTROL_BYTES or OUTFLOW_DNS_BYTES after the header, by kind. */
struct outflow_event {
	__u64 ts_ns;    /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;
	__u32 pkt_len;  /* skb->len */
	__u16 cap_len;  /* bytes in data */
	__u8 kind;      /* OUTFLOW_EV_* */
	__u8 hook;      /* OUTFLOW_HOOK_* */
	__u32 _pad;
	__u8 data[];
};

#endif /* OUTFLOW_H */
