//! Reading the flow map: per flow direction, the traffic counted since the last scan, with idle
//! entries removed.
//!
//! The kernel keeps running counters and no timestamps; this file turns them into deltas the
//! engine takes as `Traffic`, and decides idleness from counters that stopped moving.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use outflow_core::engine::Traffic;
use outflow_ebpf::abi::{self, FlowKey};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{EbpfDatapath, Reported};
use crate::clock;

impl EbpfDatapath {
    /// Traffic counted since the last call, one entry per flow direction. A direction seen on
    /// two pod interfaces of this node (pod to pod) is the same packets twice: the larger count
    /// is kept. Entries whose counters have not moved since before `idle_before_ns` (monotonic)
    /// are removed.
    ///
    /// A flow's count is its `FLOWS` entry plus what CPUs still hold for it in `FLOW_CACHE`,
    /// read after the map. A CPU may move its part into the map between the two reads, so a
    /// scan can see less than the one before; counts are taken as the most seen so far, and the
    /// part missed shows in the next scan, never twice.
    ///
    /// A full map is tens of thousands of syscalls; ring-buffer records that arrive meanwhile are
    /// handed to `on_event` every few hundred entries, so a scan never lets the ring overflow.
    pub fn read_traffic(
        &mut self,
        idle_before_ns: u64,
        mut on_event: impl FnMut(&[u8]),
    ) -> Vec<Traffic> {
        let now = clock::monotonic_ns();
        let mut totals: FxHashMap<FlowKey, (u64, u64)> =
            FxHashMap::with_capacity_and_hasher(self.reported.len(), Default::default());
        for (n, entry) in self.flows.iter().enumerate() {
            if n % 512 == 511 {
                while let Some(item) = self.ring.next() {
                    on_event(&item);
                }
            }
            if let Ok((key, value)) = entry {
                totals.insert(key, (value.packets, value.bytes));
            }
        }
        let in_map = totals.len() as u64;
        // A flow a CPU still holds counts for is not idle, whatever its total: forgetting it
        // would count those again once they reach the map.
        // A set: a node may have a hundred CPUs, and every flow of the scan asks.
        let mut cached = FxHashSet::default();
        if let Ok(cpus) = self.cache.get(&0, 0) {
            for c in cpus.iter().filter(|c| c.packets > 0) {
                let t = totals.entry(c.key).or_default();
                t.0 += c.packets;
                t.1 += c.bytes;
                cached.insert(c.key);
            }
        }
        let mut by_tuple: FxHashMap<FlowKey, (u64, u64)> = FxHashMap::default();
        let mut seen: FxHashMap<FlowKey, Reported> =
            FxHashMap::with_capacity_and_hasher(totals.len(), Default::default());
        let mut idle = Vec::new();
        for (key, (packets, bytes)) in totals {
            let before = self.reported.get(&key).copied();
            let now_seen = match before {
                Some(b) if packets <= b.packets => b,
                Some(b) => Reported {
                    packets,
                    bytes: bytes.max(b.bytes),
                    changed_ns: now,
                },
                None => Reported {
                    packets,
                    bytes,
                    changed_ns: now,
                },
            };
            seen.insert(key, now_seen);
            if now_seen.changed_ns < idle_before_ns && !cached.contains(&key) {
                idle.push(key);
            }
            let delta = before.map_or((packets, bytes), |b| {
                (
                    now_seen.packets - b.packets,
                    now_seen.bytes.saturating_sub(b.bytes),
                )
            });
            if delta.0 == 0 {
                continue;
            }
            let tuple = FlowKey { ifindex: 0, ..key };
            let slot = by_tuple.entry(tuple).or_default();
            if delta.0 > slot.0 {
                *slot = delta;
            }
        }
        // What the scan did not see any more (the LRU dropped it, or we are about to) is
        // forgotten with the rest of the old counters.
        self.reported = seen;
        let mut removed = 0;
        for key in idle {
            if self.flows.remove(&key).is_ok() {
                self.reaped += 1;
                removed += 1;
                self.reported.remove(&key);
            }
        }
        self.live = in_map - removed;
        by_tuple
            .into_iter()
            .filter_map(|(k, (packets, bytes))| traffic(&k, packets, bytes))
            .collect()
    }

    /// The flow directions in the kernel's map now.
    pub fn flow_keys(&self) -> Vec<FlowKey> {
        self.flows.keys().filter_map(Result::ok).collect()
    }
}

/// The engine's view of a flow direction's counters. The kernel counts frames from the Ethernet
/// header; the engine counts IP bytes.
fn traffic(k: &FlowKey, packets: u64, bytes: u64) -> Option<Traffic> {
    let (src, dst): (IpAddr, IpAddr) = match k.family {
        abi::AF_INET => {
            let v4 = |a: &[u8; 16]| Ipv4Addr::new(a[0], a[1], a[2], a[3]).into();
            (v4(&k.saddr), v4(&k.daddr))
        }
        abi::AF_INET6 => (
            Ipv6Addr::from(k.saddr).into(),
            Ipv6Addr::from(k.daddr).into(),
        ),
        _ => return None,
    };
    Some(Traffic {
        src,
        dst,
        sport: u16::from_be(k.sport),
        dport: u16::from_be(k.dport),
        proto: k.proto,
        packets,
        ip_bytes: bytes.saturating_sub(14 * packets),
    })
}
