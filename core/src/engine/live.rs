//! The engine as the live agent drives it: time that passes with no packets, traffic the
//! datapath counted in the kernel, and one report per time window.
//!
//! Offline, a capture's end closes everything (`Engine::finish`). Live there is no end: every
//! few seconds `drain` reports what was decided since the last window (attempt outcomes, closed
//! DNS lookups, traffic) and keeps what is still under way (open flows, pending queries, search
//! list runs) for the next one.

use std::net::IpAddr;

use super::{Engine, Report};
use crate::conn::group::{GroupKey, NO_GROUP};
use crate::conn::{sender_is_client, FlowKey};
use crate::decode::{ip_bits, proto};

/// Packets and bytes that the datapath counted for one direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// The packets' source.
    pub src: IpAddr,
    /// Their destination.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol (TCP and UDP are recorded; others are ignored).
    pub proto: u8,
    /// Packets.
    pub packets: u64,
    /// IP bytes.
    pub ip_bytes: u64,
}

impl Engine {
    /// Moves time to `now_ns` though no packet came: SYN and DNS timeouts fire on time on a quiet
    /// node. Time never goes back.
    pub fn advance(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
        self.first_ns.get_or_insert(self.now_ns);
        if self.now_ns >= self.next_sweep_ns {
            self.sweep();
        }
    }

    /// Adds traffic counted outside the engine to the flow's group. Which side is the client
    /// comes from the flow's SYN when the engine saw one, else from the ports.
    pub fn add_traffic(&mut self, t: &Traffic) {
        if t.proto != proto::TCP && t.proto != proto::UDP {
            return;
        }
        let (src, dst) = (ip_bits(t.src), ip_bits(t.dst));
        let (key, src_is_lo) = FlowKey::new(src, t.sport, dst, t.dport, t.proto);
        let (group, from_client) = match self.flows.get_mut(&key) {
            Some(f) => (f.group, src_is_lo == f.client_is_lo),
            None => {
                let from_client = if t.proto == proto::UDP && t.sport == 53 {
                    false
                } else {
                    sender_is_client(t.sport, t.dport)
                };
                let gkey = if from_client {
                    GroupKey {
                        src,
                        dst,
                        dst_port: t.dport,
                        proto: t.proto,
                    }
                } else {
                    GroupKey {
                        src: dst,
                        dst: src,
                        dst_port: t.sport,
                        proto: t.proto,
                    }
                };
                (self.groups.id(gkey, self.now_ns), from_client)
            }
        };
        if let Some(g) = self.groups.get_mut(group) {
            if from_client {
                g.packets_out += t.packets;
                g.bytes_out += t.ip_bytes;
            } else {
                g.packets_in += t.packets;
                g.bytes_in += t.ip_bytes;
            }
            g.last_ns = g.last_ns.max(self.now_ns);
        }
    }

    /// The report of the window since the last drain: groups with something new, DNS lookups
    /// closed, findings over both, and the window's counts. Open flows, pending queries and
    /// search-list runs carry over; groups no open flow uses are forgotten.
    pub fn drain(&mut self) -> Report {
        self.sweep();
        let groups = &mut self.groups;
        self.flows.for_each(|_, f| super::flows::settle(groups, f));
        let since = self.window_start_ns.or(self.first_ns);
        let report = self.report(since, |g| g.has_news());
        self.window_start_ns = Some(self.now_ns);
        let mut keep = vec![false; self.groups.stats.len()];
        self.flows.for_each(|_, f| {
            if f.group != NO_GROUP {
                keep[f.group as usize] = true;
            }
        });
        let remap = self.groups.renew(&keep, self.now_ns);
        self.flows.for_each(|_, f| {
            if f.group != NO_GROUP {
                f.group = remap[f.group as usize];
            }
        });
        report
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
