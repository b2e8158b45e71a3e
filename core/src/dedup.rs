//! Recognises one packet captured on several interfaces.
//!
//! `tcpdump -i any` on a node sees a pod's packet on its veth and again on the bridge or uplink;
//! counting both would double every number. A packet is a copy when an identical fingerprint (IP
//! and transport headers without TTL and checksum, see `decode.rs`) was seen on another interface
//! within a short window. Retransmissions on the same interface are not copies.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// The fingerprint memory.
#[derive(Debug)]
pub struct Dedup {
    window_ns: u64,
    seen: FxHashMap<u64, (u64, Option<u64>)>,
    order: VecDeque<(u64, u64)>,
}

impl Dedup {
    /// Copies are recognised within `window_ns` of the first sighting.
    pub fn new(window_ns: u64) -> Dedup {
        Dedup {
            window_ns,
            seen: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Whether the packet with `fingerprint`, captured at `ts_ns` on `origin` (an interface and
    /// packet-type identity; `None` when the capture does not record one), is a copy of one
    /// already counted.
    pub fn is_copy(&mut self, fingerprint: u64, origin: Option<u64>, ts_ns: u64) -> bool {
        while let Some(&(t, fp)) = self.order.front() {
            if t.saturating_add(self.window_ns) >= ts_ns {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&fp).is_some_and(|&(seen_t, _)| seen_t == t) {
                self.seen.remove(&fp);
            }
        }
        if let Some(&(t, o)) = self.seen.get(&fingerprint) {
            if (origin.is_none() || o != origin) && ts_ns.saturating_sub(t) <= self.window_ns {
                return true;
            }
        }
        self.seen.insert(fingerprint, (ts_ns, origin));
        self.order.push_back((ts_ns, fingerprint));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_packet_on_another_interface_is_a_copy() {
        let mut d = Dedup::new(50_000_000);
        assert!(!d.is_copy(7, Some(1), 1_000));
        assert!(d.is_copy(7, Some(2), 2_000));
    }

    #[test]
    fn same_packet_on_the_same_interface_is_a_retransmission() {
        let mut d = Dedup::new(50_000_000);
        assert!(!d.is_copy(7, Some(1), 1_000));
        assert!(!d.is_copy(7, Some(1), 2_000));
    }

    #[test]
    fn without_interface_identity_any_quick_repeat_is_a_copy() {
        let mut d = Dedup::new(50_000_000);
        assert!(!d.is_copy(7, None, 1_000));
        assert!(d.is_copy(7, None, 2_000));
    }

    #[test]
    fn copies_outside_the_window_are_new_packets() {
        let mut d = Dedup::new(50_000_000);
        assert!(!d.is_copy(7, Some(1), 0));
        assert!(!d.is_copy(7, Some(2), 1_000_000_000));
    }
}
