//! `GET /api/v1/health`: each node's last report, its datapath's losses and its pods, with
//! the latest captures beside them.

use serde::{Deserialize, Serialize};

/// The answer of `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// Every node that reported, by name.
    pub nodes: Vec<NodeHealth>,
    /// The latest captures.
    #[serde(default)]
    pub captures: Vec<super::captures::CaptureInfo>,
}

/// The last report of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeHealth {
    /// The node.
    pub node: String,
    /// When its last window ended (ns since the epoch).
    pub last_window_end_ns: u64,
    /// Reports received.
    pub reports: u64,
    /// Its last datapath stats.
    pub datapath: super::DatapathStats,
    /// Datapath counters summed over the reports kept: losses show here even when the last
    /// window had none.
    pub totals: DatapathTotals,
    /// The pods its last report listed, idle ones included.
    pub pods: Vec<PodHealth>,
    /// No report for [`STALE_AFTER_INTERVALS`] of its agent's intervals (at least
    /// [`STALE_AFTER_MIN_NS`]): the agent is down, cut off, or its node is gone. Its pods and
    /// losses are as of its last report.
    #[serde(default)]
    pub stale: bool,
}

/// Report intervals without a report after which a node is stale.
pub const STALE_AFTER_INTERVALS: u64 = 3;
/// A node is never stale sooner than this after its last report.
pub const STALE_AFTER_MIN_NS: u64 = 30 * 1_000_000_000;
/// The interval assumed for agents that do not say theirs.
pub const DEFAULT_INTERVAL_NS: u64 = 10 * 1_000_000_000;

/// Whether a node whose last window ended at `last_end_ns`, reporting every `interval_ns`, is
/// stale at `now_ns`.
pub fn is_stale(last_end_ns: u64, interval_ns: Option<u64>, now_ns: u64) -> bool {
    let interval = interval_ns.unwrap_or(DEFAULT_INTERVAL_NS);
    let after = interval
        .saturating_mul(STALE_AFTER_INTERVALS)
        .max(STALE_AFTER_MIN_NS);
    now_ns > last_end_ns.saturating_add(after)
}

/// A pod on a node and when it last made traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodHealth {
    /// The pod as its node listed it.
    #[serde(flatten)]
    pub pod: super::NodePod,
    /// The end of the last window with records of it (ns since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_traffic_ns: Option<u64>,
    /// No records of it in the last five minutes of its node's reports: silent, maybe
    /// because it is broken, but there.
    pub idle: bool,
}

/// Datapath counters summed over reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatapathTotals {
    /// Events lost in the ring buffer (or libpcap's buffer).
    pub event_drops: u64,
    /// Flow entries the kernel map pushed out.
    pub flows_evicted: u64,
    /// Flow entries that could not be created.
    pub flow_map_full: u64,
    /// Failed attachments.
    pub attach_errors: u64,
    /// Reports the agent dropped because the controller was unreachable too long.
    pub reports_dropped: u64,
    /// DNS messages the engine could not parse (malformed, or cut).
    pub dns_malformed: u64,
    /// Frames whose headers were malformed.
    pub undecodable: u64,
    /// Records whose interface named one pod and whose address another (the interface decided).
    #[serde(default)]
    pub attribution_mismatches: u64,
}
