//! The kernel's own counters (the STATS array) and the flow-map evictions worked out from them.
//!
//! Separate from the flow scan: these are whole-datapath figures for the report's
//! `DatapathStats`, not per-flow traffic.

use outflow_ebpf::abi;

use super::{EbpfDatapath, KernelStats};

impl EbpfDatapath {
    /// Kernel counters since load.
    pub fn kernel_stats(&self) -> KernelStats {
        let sum = |slot: u32| -> u64 {
            self.stats
                .get(&slot, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        KernelStats {
            packets: sum(abi::STAT_PACKETS),
            events: sum(abi::STAT_EVENTS),
            event_drops: sum(abi::STAT_EVENT_DROPS),
            flows_new: sum(abi::STAT_FLOWS_NEW),
            flow_full: sum(abi::STAT_FLOW_FULL),
        }
    }

    /// Flow entries the LRU evicted so far: created, minus live at the last scan, minus removed
    /// by us. Entries created since the scan count as evicted until the next one, so the figure
    /// is read right after a scan.
    pub fn evicted(&self, stats: &KernelStats) -> u64 {
        stats.flows_new.saturating_sub(self.live + self.reaped)
    }
}
