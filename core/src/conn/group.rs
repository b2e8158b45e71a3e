//! Per (src, dst, dst_port, proto) counters: what becomes one `ConnectionRecord`.
//!
//! Groups are bounded in number (a port scan would otherwise create one per port); packets of a
//! group beyond the limit are still counted in the capture totals, and the drop is reported.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::Outcome;
use crate::decode::Tunnel;
use crate::icmp::Reason;
use crate::report::LatencyAcc;

/// Identity of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// Client address (ip_bits form).
    pub src: u128,
    /// Server address.
    pub dst: u128,
    /// Server port.
    pub dst_port: u16,
    /// IP protocol.
    pub proto: u8,
}

/// Most names, ICMP senders and CONNECT targets kept per group: enough to diagnose, bounded.
const MAX_LIST: usize = 8;

/// Counters of one group.
#[derive(Debug, Clone)]
pub struct GroupStats {
    /// Its identity.
    pub key: GroupKey,
    /// Attempts by outcome, indexed by `Outcome::index`.
    pub outcomes: [u64; 5],
    /// Unreachable attempts by ICMP reason.
    pub unreachable_codes: Vec<(Reason, u64)>,
    /// Senders of ICMP errors.
    pub icmp_from: Vec<u128>,
    /// SYNs repeated for an attempt under way.
    pub syn_retransmissions: u64,
    /// Handshake latency.
    pub handshake: LatencyAcc,
    /// Client → server packets.
    pub packets_out: u64,
    /// Server → client packets.
    pub packets_in: u64,
    /// Client → server IP bytes.
    pub bytes_out: u64,
    /// Server → client IP bytes.
    pub bytes_in: u64,
    /// Names from TLS SNI and HTTP Host.
    pub names: Vec<String>,
    /// HTTP status → count.
    pub http_statuses: BTreeMap<u16, u64>,
    /// CONNECT target → (status or "none") → count.
    pub proxy_connects: BTreeMap<String, BTreeMap<String, u64>>,
    /// First packet time.
    pub first_ns: u64,
    /// Last packet time.
    pub last_ns: u64,
    /// The interface the client's packets came through (`Packet::iface` of the first flow's
    /// first client packet); 0 while unknown. A group is one client address, and an address
    /// changes hands only between windows, so one interface holds for the group.
    pub ingress_iface: u32,
    /// The tunnel the client's packets came in (the first seen), if encapsulated.
    pub tunnel: Option<Tunnel>,
}

impl GroupStats {
    fn new(key: GroupKey, ts_ns: u64) -> GroupStats {
        GroupStats {
            key,
            outcomes: [0; 5],
            unreachable_codes: Vec::new(),
            icmp_from: Vec::new(),
            syn_retransmissions: 0,
            handshake: LatencyAcc::default(),
            packets_out: 0,
            packets_in: 0,
            bytes_out: 0,
            bytes_in: 0,
            names: Vec::new(),
            http_statuses: BTreeMap::new(),
            proxy_connects: BTreeMap::new(),
            first_ns: ts_ns,
            last_ns: ts_ns,
            ingress_iface: 0,
            tunnel: None,
        }
    }

    /// Counts an attempt outcome.
    pub fn count(&mut self, outcome: Outcome) {
        self.outcomes[outcome.index()] += 1;
    }

    /// Takes back an outcome counted too early (an answer arrived after the SYN timeout).
    pub fn uncount(&mut self, outcome: Outcome) {
        let c = &mut self.outcomes[outcome.index()];
        *c = c.saturating_sub(1);
    }

    /// Records an ICMP rejection's reason and sender.
    pub fn reject(&mut self, reason: Reason, from: u128) {
        match self
            .unreachable_codes
            .iter_mut()
            .find(|(r, _)| *r == reason)
        {
            Some((_, n)) => *n += 1,
            None => self.unreachable_codes.push((reason, 1)),
        }
        if !self.icmp_from.contains(&from) && self.icmp_from.len() < MAX_LIST {
            self.icmp_from.push(from);
        }
    }

    /// Adds a destination name (SNI, Host), bounded and without repeats.
    pub fn add_name(&mut self, name: &str) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !self.names.contains(&name) && self.names.len() < MAX_LIST {
            self.names.push(name);
        }
    }

    /// Records a CONNECT through a proxy and the proxy's answer (`None`: not answered yet).
    pub fn add_connect(&mut self, target: &str, status: Option<u16>) {
        if !self.proxy_connects.contains_key(target) && self.proxy_connects.len() >= MAX_LIST {
            return;
        }
        let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        *self
            .proxy_connects
            .entry(target.to_string())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }
}

/// The bounded set of groups.
#[derive(Debug, Default)]
pub struct Groups {
    index: FxHashMap<GroupKey, u32>,
    /// Groups by id.
    pub stats: Vec<GroupStats>,
    limit: usize,
    /// Groups not created because of the limit.
    pub dropped: u64,
}

/// Id of "no group": the limit was reached.
pub const NO_GROUP: u32 = u32::MAX;

impl Groups {
    /// An empty set holding at most `limit` groups.
    pub fn new(limit: usize) -> Groups {
        Groups {
            limit,
            ..Groups::default()
        }
    }

    /// The id of a group, created if new; `NO_GROUP` past the limit.
    pub fn id(&mut self, key: GroupKey, ts_ns: u64) -> u32 {
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        if self.stats.len() >= self.limit {
            self.dropped += 1;
            return NO_GROUP;
        }
        let id = self.stats.len() as u32;
        self.stats.push(GroupStats::new(key, ts_ns));
        self.index.insert(key, id);
        id
    }

    /// Notes the interface a client packet of the group came through, unless one is known.
    pub fn saw_client_on(&mut self, id: u32, iface: u32) {
        if let Some(g) = self.get_mut(id) {
            if g.ingress_iface == 0 {
                g.ingress_iface = iface;
            }
        }
    }

    /// Notes the tunnel a client packet of the group came in, unless one is known.
    pub fn saw_client_tunnel(&mut self, id: u32, tunnel: Tunnel) {
        if let Some(g) = self.get_mut(id) {
            g.tunnel.get_or_insert(tunnel);
        }
    }

    /// The group with this id, unless it is `NO_GROUP`.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut GroupStats> {
        self.stats.get_mut(id as usize)
    }
}

impl GroupStats {
    /// Whether anything was counted since the group was created or renewed.
    pub fn has_news(&self) -> bool {
        self.outcomes.iter().any(|&n| n > 0)
            || self.packets_out + self.packets_in > 0
            || self.syn_retransmissions > 0
            || !self.http_statuses.is_empty()
            || !self.proxy_connects.is_empty()
    }
}

impl Groups {
    /// Starts a new reporting window: groups `keep` marks stay, with their counters zeroed, and
    /// the rest go. Returns each old id's new id (`NO_GROUP` for those gone), for the flows that
    /// hold them.
    pub fn renew(&mut self, keep: &[bool], now_ns: u64) -> Vec<u32> {
        let mut remap = vec![NO_GROUP; self.stats.len()];
        let old = std::mem::take(&mut self.stats);
        self.index.clear();
        for (i, g) in old.into_iter().enumerate() {
            if keep.get(i).copied().unwrap_or(false) {
                let id = self.stats.len() as u32;
                self.index.insert(g.key, id);
                // Kept for an open flow: the same client, so the same interface.
                let mut renewed = GroupStats::new(g.key, now_ns);
                renewed.ingress_iface = g.ingress_iface;
                renewed.tunnel = g.tunnel;
                self.stats.push(renewed);
                remap[i] = id;
            }
        }
        remap
    }
}
