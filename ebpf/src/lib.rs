//! outflow's kernel programs and their shared structs.
//!
//! The TC programs (`bpf/outflow.bpf.c`) are C, compiled by `build.rs` with clang and embedded
//! here as [`OBJECT`]; the agent loads them with aya. `include/outflow.h` defines every struct and
//! constant the kernel and user space share, and [`abi`] mirrors it field by field.

pub mod abi;

/// The compiled BPF object: programs `outflow_ingress` and `outflow_egress`, maps `FLOWS`,
/// `FLOW_CACHE`, `EVENTS` and `STATS`, and the `wakeup_bytes` global.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/outflow.bpf.o"));

/// Program attached at TC ingress of a pod's host-side interface (what the pod sends).
pub const PROG_INGRESS: &str = "outflow_ingress";
/// Program attached at TC egress of a pod's host-side interface (what the pod receives).
pub const PROG_EGRESS: &str = "outflow_egress";
/// The per-flow-direction LRU hash map.
pub const MAP_FLOWS: &str = "FLOWS";
/// Each CPU's last flow direction and its counts not yet in `FLOWS`.
pub const MAP_FLOW_CACHE: &str = "FLOW_CACHE";
/// The ring buffer of events.
pub const MAP_EVENTS: &str = "EVENTS";
/// The per-CPU counters.
pub const MAP_STATS: &str = "STATS";
/// The global holding the wake-up threshold in bytes.
pub const GLOBAL_WAKEUP_BYTES: &str = "wakeup_bytes";
