/* Prints the size of each shared struct and the offset of each field, as the C compiler lays
 * them out, for tests/layout.rs to compare with the Rust mirror. */
#include <stddef.h>
#include <stdio.h>
#include "outflow.h"

#define SIZE(t) printf("%s %zu\n", #t, sizeof(struct t))
#define OFF(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define CONST(c) printf("%s %d\n", #c, (int)(c))

int main(void)
{
	SIZE(outflow_flow_key);
	OFF(outflow_flow_key, saddr);
	OFF(outflow_flow_key, daddr);
	OFF(outflow_flow_key, sport);
	OFF(outflow_flow_key, dport);
	OFF(outflow_flow_key, ifindex);
	OFF(outflow_flow_key, proto);
	OFF(outflow_flow_key, family);
	OFF(outflow_flow_key, _pad);
	SIZE(outflow_flow_value);
	OFF(outflow_flow_value, packets);
	OFF(outflow_flow_value, bytes);
	SIZE(outflow_flow_cache);
	OFF(outflow_flow_cache, key);
	OFF(outflow_flow_cache, _pad);
	OFF(outflow_flow_cache, packets);
	OFF(outflow_flow_cache, bytes);
	SIZE(outflow_event);
	OFF(outflow_event, ts_ns);
	OFF(outflow_event, ifindex);
	OFF(outflow_event, pkt_len);
	OFF(outflow_event, cap_len);
	OFF(outflow_event, kind);
	OFF(outflow_event, hook);
	OFF(outflow_event, _pad);
	OFF(outflow_event, data);
	CONST(OUTFLOW_AF_INET);
	CONST(OUTFLOW_AF_INET6);
	CONST(OUTFLOW_HOOK_INGRESS);
	CONST(OUTFLOW_HOOK_EGRESS);
	CONST(OUTFLOW_EV_CONTROL);
	CONST(OUTFLOW_EV_DNS);
	CONST(OUTFLOW_CONTROL_BYTES);
	CONST(OUTFLOW_DNS_BYTES);
	CONST(OUTFLOW_STAT_PACKETS);
	CONST(OUTFLOW_STAT_BYTES);
	CONST(OUTFLOW_STAT_FLOWS_NEW);
	CONST(OUTFLOW_STAT_FLOW_FULL);
	CONST(OUTFLOW_STAT_EVENTS);
	CONST(OUTFLOW_STAT_EVENT_DROPS);
	CONST(OUTFLOW_STAT_NOT_IP);
	CONST(OUTFLOW_STAT_SHORT);
	CONST(OUTFLOW_STAT_COUNT);
	return 0;
}
