//! The bounded flow table.
//!
//! One entry per 5-tuple holds the latest attempt, the group the flow counts into, and the state of
//! its application parser. Memory is bounded by `limit`: when the table is full, the least recently
//! active quarter is evicted at once (amortising the scan), and evictions are counted so a report
//! never silently undercounts. Idle flows are expired by packet time.

use rustc_hash::FxHashMap;

use super::attempt::{Attempt, Effect};
use super::FlowKey;
use crate::app::App;

/// One flow.
#[derive(Debug)]
pub struct Flow {
    /// Group id (`group::NO_GROUP` when the group limit was reached).
    pub group: u32,
    /// Whether the client is the key's `lo` endpoint.
    pub client_is_lo: bool,
    /// Last packet time.
    pub last_ns: u64,
    /// The latest TCP connection attempt.
    pub attempt: Attempt,
    /// Application-layer parser state.
    pub app: App,
    /// A UDP flow already counted as unreachable.
    pub rejected: bool,
    /// Packets from the client and from the server since last folded into the group. Counting
    /// here instead of in the group keeps the per-packet path to one table entry.
    pub packets: [u64; 2],
    /// IP bytes from the client and from the server, likewise.
    pub bytes: [u64; 2],
    /// The latest attempt effect not yet counted in the group (see `engine::flows::defer`).
    pub unapplied: Effect,
    /// Teardown seen: `FIN_CLIENT`, `FIN_SERVER`, `RESET` on TCP, `ANSWERED` on UDP.
    pub teardown: u8,
}

/// The client sent FIN.
pub const FIN_CLIENT: u8 = 1;
/// The server sent FIN.
pub const FIN_SERVER: u8 = 2;
/// Either side sent RST.
pub const RESET: u8 = 4;
/// A DNS server answered on this UDP flow.
pub const ANSWERED: u8 = 8;

impl Flow {
    /// Whether the exchange is over: both FINs or a RST on TCP, an answer on UDP DNS.
    pub fn is_closed(&self) -> bool {
        self.teardown & (RESET | ANSWERED) != 0
            || self.teardown & (FIN_CLIENT | FIN_SERVER) == FIN_CLIENT | FIN_SERVER
    }

    /// Notes a packet of this flow: always its time, its size only when the engine counts
    /// traffic itself (`Config::count_traffic`).
    pub fn saw(&mut self, count: bool, from_client: bool, ip_len: u32, ts_ns: u64) {
        if count {
            self.count(from_client, ip_len, ts_ns);
        } else {
            self.last_ns = ts_ns;
        }
    }

    /// Counts a packet of this flow.
    pub fn count(&mut self, from_client: bool, ip_len: u32, ts_ns: u64) {
        let dir = (!from_client) as usize;
        self.packets[dir] += 1;
        self.bytes[dir] += ip_len as u64;
        self.last_ns = ts_ns;
    }

    /// A new flow.
    pub fn new(group: u32, client_is_lo: bool, ts_ns: u64, app: App) -> Flow {
        Flow {
            group,
            client_is_lo,
            last_ns: ts_ns,
            attempt: Attempt::default(),
            app,
            rejected: false,
            packets: [0; 2],
            bytes: [0; 2],
            unapplied: Effect::None,
            teardown: 0,
        }
    }
}

/// The flow table.
#[derive(Debug)]
pub struct FlowTable {
    map: FxHashMap<FlowKey, Flow>,
    limit: usize,
    /// Flows evicted because the table was full.
    pub evicted: u64,
}

impl FlowTable {
    /// A table holding at most `limit` flows.
    pub fn new(limit: usize) -> FlowTable {
        FlowTable {
            map: FxHashMap::default(),
            limit: limit.max(4),
            evicted: 0,
        }
    }

    /// The flow for `key`, if tracked.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.map.get_mut(key)
    }

    /// The flow for `key`, made by `make` if new. When the table is full, the least recently
    /// active quarter is evicted first; `on_remove` sees each evicted flow so its open attempt can
    /// be closed. `ctx` is shared by both callbacks. One hash lookup when the flow exists.
    pub fn get_or_insert<C>(
        &mut self,
        key: FlowKey,
        ctx: &mut C,
        make: impl FnOnce(&mut C) -> Flow,
        mut on_remove: impl FnMut(&mut C, &mut Flow),
    ) -> &mut Flow {
        if self.map.len() >= self.limit && !self.map.contains_key(&key) {
            let mut times: Vec<u64> = self.map.values().map(|f| f.last_ns).collect();
            let nth = times.len() / 4;
            let (_, threshold, _) = times.select_nth_unstable(nth);
            let threshold = *threshold;
            let before = self.map.len();
            self.map.retain(|_, f| {
                let keep = f.last_ns > threshold;
                if !keep {
                    on_remove(ctx, f);
                }
                keep
            });
            self.evicted += (before - self.map.len()) as u64;
        }
        self.map.entry(key).or_insert_with(|| make(ctx))
    }

    /// Removes the flows `keep` rejects.
    pub fn expire(
        &mut self,
        mut keep: impl FnMut(&FlowKey, &Flow) -> bool,
        mut on_remove: impl FnMut(&FlowKey, &mut Flow),
    ) {
        self.map.retain(|k, f| {
            let keep = keep(k, f);
            if !keep {
                on_remove(k, f);
            }
            keep
        });
    }

    /// Removes one flow.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        self.map.remove(key)
    }

    /// Visits every flow (at the end of the input).
    pub fn for_each(&mut self, mut f: impl FnMut(&FlowKey, &mut Flow)) {
        for (k, v) in self.map.iter_mut() {
            f(k, v);
        }
    }

    /// Number of flows tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_table_evicts_the_oldest_quarter_and_counts_it() {
        let mut t = FlowTable::new(8);
        for i in 0..8u16 {
            let (k, _) = FlowKey::new(1, i, 2, 80, 6);
            t.get_or_insert(
                k,
                &mut (),
                |_| Flow::new(0, true, i as u64, App::Opaque),
                |_, _| {},
            );
        }
        let mut removed = Vec::new();
        let (k, _) = FlowKey::new(1, 100, 2, 80, 6);
        t.get_or_insert(
            k,
            &mut removed,
            |_| Flow::new(0, true, 100, App::Opaque),
            |r, f| r.push(f.last_ns),
        );
        removed.sort();
        assert_eq!(removed, vec![0, 1, 2]);
        assert_eq!(t.evicted, 3);
        assert_eq!(t.len(), 6);
    }
}
