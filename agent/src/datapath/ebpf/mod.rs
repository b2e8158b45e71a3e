//! The eBPF datapath: loads the TC programs, attaches them to pod interfaces, reads the ring
//! buffer and the flow map.
//!
//! On kernels with TCX (6.6+) programs attach as TCX links, which need no qdisc and go away with
//! the agent's file descriptors. Older kernels (AKS 5.15 images) use a clsact qdisc and netlink
//! filters; `TcMode::Netlink` forces that path here too. Filters a crashed agent left behind are
//! replaced, never stacked, and a clsact qdisc the agent added is removed when it detaches.
//!
//! This file holds the loaded programs and maps, the state kept beside them and the agent-facing
//! `Datapath` impl; loading (`load`), attaching to interfaces (`attach`), scanning the flow map
//! (`flows`) and the kernel's counters (`stats`) each have their own file, which imports from
//! this one and never the other way.

mod attach;
mod flows;
mod load;
mod stats;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::SchedClassifierLinkId;
use aya::Ebpf;
use outflow_core::capfile::Packet;
use outflow_core::engine::Traffic;
use outflow_core::wire::DatapathStats;
use outflow_ebpf::abi::{FlowCache, FlowKey, FlowValue};
use rustc_hash::FxHashMap;

use super::{decode, AttachError, Datapath, TcMode};
use crate::clock;

/// Counters read from the kernel's STATS array, summed over CPUs.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelStats {
    /// Packets seen.
    pub packets: u64,
    /// Events written.
    pub events: u64,
    /// Events dropped (ring buffer full).
    pub event_drops: u64,
    /// Flow entries created.
    pub flows_new: u64,
    /// Flow entries that could not be created.
    pub flow_full: u64,
}

/// What the agent attached to one interface, to take back on detach.
struct Attachment {
    ifindex: u32,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
    /// The agent added the clsact qdisc (netlink mode) and removes it on detach.
    owns_qdisc: bool,
}

/// A flow direction's counters at the last scan, and the scan (monotonic ns) at which they last
/// changed: the kernel keeps no timestamp, so idle entries are told by counters that stopped.
#[derive(Clone, Copy)]
struct Reported {
    packets: u64,
    bytes: u64,
    changed_ns: u64,
}

/// The loaded programs and maps.
pub struct EbpfDatapath {
    bpf: Ebpf,
    ring: RingBuf<MapData>,
    flows: BpfHashMap<MapData, FlowKey, FlowValue>,
    cache: PerCpuArray<MapData, FlowCache>,
    stats: PerCpuArray<MapData, u64>,
    mode: TcMode,
    attached: HashMap<String, Attachment>,
    /// Counters already reported, per flow direction, and when they last moved.
    reported: FxHashMap<FlowKey, Reported>,
    /// Entries the agent removed itself (idle flows); the rest of the difference between
    /// entries created and entries live is the LRU's evictions.
    reaped: u64,
    /// Entries in the map at the last scan.
    live: u64,
    /// Kernel counters and evictions at the last report.
    last_kernel: KernelStats,
    last_evicted: u64,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, refreshed every report, for the kernel's timestamps.
    realtime_offset_ns: u64,
}

impl EbpfDatapath {
    /// Hands each pending ring-buffer record to `f`.
    pub fn read_events(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(item) = self.ring.next() {
            f(&item);
        }
    }
}

impl Datapath for EbpfDatapath {
    fn kind(&self) -> &'static str {
        "ebpf"
    }

    fn attach(&mut self, ifname: &str, ifindex: u32) -> Result<(), AttachError> {
        EbpfDatapath::attach(self, ifname, ifindex)
    }

    fn detach(&mut self, ifname: &str) {
        EbpfDatapath::detach(self, ifname)
    }

    fn attached(&self) -> Vec<(String, u32)> {
        self.attached
            .iter()
            .map(|(n, a)| (n.clone(), a.ifindex))
            .collect()
    }

    fn wait_fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.ring.as_fd()]
    }

    fn read_packets(&mut self, f: &mut dyn FnMut(&Packet<'_>)) {
        let offset = self.realtime_offset_ns;
        self.read_events(|rec| {
            if let Some(p) = decode::packet(rec, offset) {
                f(&p);
            }
        });
    }

    fn read_traffic(
        &mut self,
        idle_before_ns: u64,
        on_packet: &mut dyn FnMut(&Packet<'_>),
    ) -> Vec<Traffic> {
        let offset = self.realtime_offset_ns;
        EbpfDatapath::read_traffic(self, idle_before_ns, |rec| {
            if let Some(p) = decode::packet(rec, offset) {
                on_packet(&p);
            }
        })
    }

    fn take_stats(&mut self) -> DatapathStats {
        let kernel = self.kernel_stats();
        let evicted = self.evicted(&kernel);
        let last = std::mem::replace(&mut self.last_kernel, kernel);
        let stats = DatapathStats {
            kind: self.kind().to_string(),
            reason: String::new(),
            interfaces: self.attached.len() as u64,
            packets: kernel.packets - last.packets,
            events: kernel.events - last.events,
            event_drops: kernel.event_drops - last.event_drops,
            flows_evicted: evicted.saturating_sub(self.last_evicted),
            flow_map_full: kernel.flow_full - last.flow_full,
            ..DatapathStats::default()
        };
        self.last_evicted = evicted;
        // Wall-clock steps (NTP) show up at the next window, not never.
        self.realtime_offset_ns = realtime_offset_ns();
        stats
    }
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC: what turns the kernel's event times into wall time.
fn realtime_offset_ns() -> u64 {
    clock::realtime_ns().saturating_sub(clock::monotonic_ns())
}

impl Drop for EbpfDatapath {
    fn drop(&mut self) {
        self.detach_all();
    }
}
