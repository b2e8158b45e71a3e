//! Captures on demand between the CLI, the controller and the agents (DESIGN.md §4.4): what a
//! person asks for, how the controller shows it, and what the agent reports at the end.
//!
//! The same types are what the CLI sends, what the controller stores (its `ID.json` sidecars),
//! what the agent's long poll hands over, and what `GET /api/v1/captures` serves.

use serde::{Deserialize, Serialize};

/// What a person asks for: `POST /api/v1/captures`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    /// `NAMESPACE/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The node, when the person names it; else found from the pod. Once the capture exists its
    /// node is [`CaptureInfo::node`] and this is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// One interface (with a pod: one of the pod's; without: a node interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// pcap-filter expression.
    #[serde(default)]
    pub filter: String,
    /// Stop after this many packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// Bytes kept per packet; 0 keeps whole packets (tcpdump's `-s 0`), none the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
    /// Comment packets with what outflow concluded from them (default: yes).
    #[serde(default = "yes")]
    pub annotate: bool,
}

fn yes() -> bool {
    true
}

/// Where a capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CaptureState {
    /// Waiting for its node's agent.
    Pending,
    /// The agent captures.
    Running,
    /// Asked to stop; the agent finishes the file.
    Stopping,
    /// Ended; the file is whole.
    Done,
    /// Could not run (the reason says why); what was written is kept.
    Failed,
}

impl CaptureState {
    /// Done or failed: nothing more comes.
    pub fn is_over(self) -> bool {
        matches!(self, CaptureState::Done | CaptureState::Failed)
    }

    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureState::Pending => "pending",
            CaptureState::Running => "running",
            CaptureState::Stopping => "stopping",
            CaptureState::Done => "done",
            CaptureState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for CaptureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capture as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureInfo {
    /// Its id.
    pub id: u64,
    /// The node that runs it.
    pub node: String,
    /// What was asked.
    #[serde(flatten)]
    pub spec: CaptureSpec,
    /// Where it is.
    pub state: CaptureState,
    /// Created, ns since the epoch.
    pub created_ns: u64,
    /// Ended, ns since the epoch.
    #[serde(default)]
    pub ended_ns: Option<u64>,
    /// Packets written (from the agent's summary).
    #[serde(default)]
    pub packets: u64,
    /// Bytes of pcapng received so far.
    #[serde(default)]
    pub bytes: u64,
    /// Packets the kernel dropped.
    #[serde(default)]
    pub kernel_drops: u64,
    /// Why it ended, or why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// What the person should know at once, e.g. that the node's agent has not been heard from
    /// lately, so the capture may wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The agent's summary at the end: `POST /api/v1/captures/{id}/result`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptureResult {
    /// Packets written.
    pub packets: u64,
    /// Kernel drops.
    pub kernel_drops: u64,
    /// Why it ended ("packet count reached", "stopped", …).
    pub ended: String,
    /// Set when the capture could not run at all.
    #[serde(default)]
    pub error: Option<String>,
}
