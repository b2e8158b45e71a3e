//! The eBPF datapath: loads the TC programs, attaches them to pod interfaces, reads the ring
//! buffer and the flow map.
//!
//! On kernels with TCX (6.6+) programs attach as TCX links, which need no qdisc and go away with
//! the agent's file descriptors. Older kernels (AKS 5.15 images) use a clsact qdisc and netlink
//! filters; `TcMode::Netlink` forces that path here too. Filters a crashed agent left behind are
//! replaced, never stacked, and a clsact qdisc the agent added is removed when it detaches.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use outflow_core::capfile::Packet;
use outflow_core::engine::Traffic;
use outflow_core::wire::DatapathStats;
use outflow_ebpf::abi::{self, FlowCache, FlowKey, FlowValue};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{decode, AttachError, Datapath, DatapathError, TcMode};
use crate::{clock, netlink};

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
    /// Loads the programs with a flow map of `flow_entries` and a ring buffer of `ring_bytes`.
    pub fn load(flow_entries: u32, ring_bytes: u32, mode: TcMode) -> Result<Self, DatapathError> {
        let wakeup: u64 = (ring_bytes / 8) as u64;
        let mut bpf = EbpfLoader::new()
            .map_max_entries(outflow_ebpf::MAP_FLOWS, flow_entries)
            .map_max_entries(outflow_ebpf::MAP_EVENTS, ring_bytes)
            .override_global(outflow_ebpf::GLOBAL_WAKEUP_BYTES, &wakeup, true)
            .load(outflow_ebpf::OBJECT)
            .map_err(|e| DatapathError::Load(causes(&e)))?;
        for name in [outflow_ebpf::PROG_INGRESS, outflow_ebpf::PROG_EGRESS] {
            let prog: &mut SchedClassifier = program(&mut bpf, name)?;
            prog.load().map_err(|e| {
                DatapathError::Load(format!("{name}: {}", verifier_tail(&e.to_string())))
            })?;
        }
        let take = |bpf: &mut Ebpf, name: &str| {
            bpf.take_map(name)
                .ok_or_else(|| DatapathError::Load(format!("map {name} missing from the object")))
        };
        let ring = RingBuf::try_from(take(&mut bpf, outflow_ebpf::MAP_EVENTS)?)
            .map_err(|e| DatapathError::Load(e.to_string()))?;
        let flows = BpfHashMap::try_from(take(&mut bpf, outflow_ebpf::MAP_FLOWS)?)
            .map_err(|e| DatapathError::Load(e.to_string()))?;
        let cache = PerCpuArray::try_from(take(&mut bpf, outflow_ebpf::MAP_FLOW_CACHE)?)
            .map_err(|e| DatapathError::Load(e.to_string()))?;
        let stats = PerCpuArray::try_from(take(&mut bpf, outflow_ebpf::MAP_STATS)?)
            .map_err(|e| DatapathError::Load(e.to_string()))?;
        Ok(EbpfDatapath {
            bpf,
            ring,
            flows,
            cache,
            stats,
            mode,
            attached: HashMap::new(),
            reported: FxHashMap::default(),
            reaped: 0,
            live: 0,
            last_kernel: KernelStats::default(),
            last_evicted: 0,
            realtime_offset_ns: realtime_offset_ns(),
        })
    }

    /// Attaches both programs to an interface. An interface that vanishes meanwhile is an
    /// error for that interface only; whatever was attached is taken back.
    pub fn attach(&mut self, ifname: &str, ifindex: u32) -> Result<(), AttachError> {
        match self.attached.get(ifname) {
            Some(a) if a.ifindex == ifindex => return Ok(()),
            // The name now belongs to a new interface.
            Some(_) => self.detach(ifname),
            None => {}
        }
        let err = |e: String| AttachError {
            ifname: ifname.to_string(),
            message: e,
        };
        let mut owns_qdisc = false;
        if self.mode == TcMode::Netlink {
            match tc::qdisc_add_clsact(ifname) {
                Ok(()) => owns_qdisc = true,
                // Someone else's (or our earlier) qdisc: use it, leave it.
                Err(tc::TcError::AlreadyAttached) => {}
                Err(tc::TcError::NetlinkError(e))
                    if e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32) => {}
                Err(e) => return Err(err(format!("adding the clsact qdisc: {e}"))),
            }
            // A crashed agent's filters would otherwise run twice.
            for (ty, name) in directions() {
                let _ = tc::qdisc_detach_program(ifname, ty, name);
            }
        }
        let mut att = Attachment {
            ifindex,
            links: Vec::new(),
            owns_qdisc,
        };
        for (ty, name) in directions() {
            let options = match self.mode {
                TcMode::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
                TcMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
            };
            let attached = program(&mut self.bpf, name)
                .map_err(|e| err(e.to_string()))
                .and_then(|p| {
                    p.attach_with_options(ifname, ty, options)
                        .map_err(|e| err(format!("{e}")))
                });
            match attached {
                Ok(id) => att.links.push((name, id)),
                Err(e) => {
                    self.release(att);
                    return Err(e);
                }
            }
        }
        self.attached.insert(ifname.to_string(), att);
        Ok(())
    }

    /// Detaches from an interface (gone or no longer wanted).
    pub fn detach(&mut self, ifname: &str) {
        if let Some(att) = self.attached.remove(ifname) {
            self.release(att);
        }
    }

    fn release(&mut self, att: Attachment) {
        for (name, id) in att.links {
            if let Ok(p) = program(&mut self.bpf, name) {
                // The interface may be gone, and its filters with it.
                let _ = p.detach(id);
            }
        }
        if att.owns_qdisc {
            let _ = netlink::delete_clsact(att.ifindex);
        }
    }

    /// Hands each pending ring-buffer record to `f`.
    pub fn read_events(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(item) = self.ring.next() {
            f(&item);
        }
    }

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

fn directions() -> [(TcAttachType, &'static str); 2] {
    [
        (TcAttachType::Ingress, outflow_ebpf::PROG_INGRESS),
        (TcAttachType::Egress, outflow_ebpf::PROG_EGRESS),
    ]
}

fn program<'a>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, DatapathError> {
    bpf.program_mut(name)
        .ok_or_else(|| DatapathError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e| DatapathError::Load(format!("{name}: {e}")))
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

/// An error with its causes ("failed to create map `FLOWS`: Operation not permitted"): aya's
/// own message leaves the OS error to the source chain.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        source = s.source();
    }
    out
}

/// The end of a verifier log: the rejected instruction and why. The whole log runs to
/// thousands of lines.
fn verifier_tail(message: &str) -> String {
    let lines: Vec<&str> = message.lines().collect();
    let start = lines.len().saturating_sub(8);
    let head = lines.first().copied().unwrap_or_default();
    if start == 0 {
        return message.to_string();
    }
    format!("{head} … {}", lines[start..].join("\n"))
}
