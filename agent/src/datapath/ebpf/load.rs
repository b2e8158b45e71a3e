//! Loading the TC programs and taking their maps out of the object, with errors that say why:
//! aya's message with its OS cause, and the end of a verifier log rather than all of it.
//!
//! Separate from attaching: a load happens once per agent, and its failures (no privilege, an old
//! kernel, a rejected program) decide whether the agent falls back to libpcap.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, PerCpuArray, RingBuf};
use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader};
use rustc_hash::FxHashMap;

use super::{realtime_offset_ns, EbpfDatapath, KernelStats};
use crate::datapath::{DatapathError, TcMode};

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
}

pub(super) fn program<'a>(
    bpf: &'a mut Ebpf,
    name: &str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    bpf.program_mut(name)
        .ok_or_else(|| DatapathError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e| DatapathError::Load(format!("{name}: {e}")))
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
