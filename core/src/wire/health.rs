//! `GET /api/v1/health`: each node's last report, its datapath's losses and its pods, with
//! the latest captures beside them; and the rules for when a node's agent counts as gone, for
//! its reports ([`is_stale`]) and for its capture polls ([`is_poll_stale`]).

use serde::{Deserialize, Serialize};

/// The answer of `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Every node that reported, by name.
    pub nodes: Vec<NodeHealth>,
    /// The latest captures.
    #[serde(default)]
    pub captures: Vec<super::captures::CaptureInfo>,
}

/// The last report of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// The longest the controller holds an agent's long poll for its captures open, in seconds.
pub const CAPTURE_POLL_MAX_WAIT_S: u64 = 30;
/// An agent asks again within seconds of a poll's answer: the slack allowed on top of the
/// longest poll before its silence counts.
pub const CAPTURE_POLL_SLACK_NS: u64 = 15 * 1_000_000_000;

/// Whether an agent that last asked for its captures at `last_poll_ns` has stopped asking at
/// `now_ns`: silent for longer than the longest poll plus [`CAPTURE_POLL_SLACK_NS`]. A capture
/// on its node waits until it asks again. Reports have their own rule, [`is_stale`]: an agent
/// may report and not poll (an old one), or poll between reports.
pub fn is_poll_stale(last_poll_ns: u64, now_ns: u64) -> bool {
    let after = CAPTURE_POLL_MAX_WAIT_S * 1_000_000_000 + CAPTURE_POLL_SLACK_NS;
    now_ns.saturating_sub(last_poll_ns) > after
}

/// A pod on a node and when it last made traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_poll_goes_stale_only_after_the_longest_poll_and_its_slack() {
        let t = 1_000 * S;
        assert!(!is_poll_stale(t, t + CAPTURE_POLL_MAX_WAIT_S * S));
        assert!(!is_poll_stale(t, t + 45 * S));
        assert!(is_poll_stale(t, t + 45 * S + 1));
        assert!(!is_poll_stale(t, t - S), "a clock step back is not silence");
    }
}
