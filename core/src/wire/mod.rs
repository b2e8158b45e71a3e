//! What agents send the controller and what the controller's API serves (DESIGN.md §4.3).
//!
//! The records are those of the offline report (§4.2), each with the pod it is about, the node
//! and the time window it covers, so one reader serves `outflow analyze`, the REST API and the
//! CLI alike.

use serde::{Deserialize, Serialize};

pub mod captures;
pub mod check;
pub mod cluster;
pub mod diagnosis;
pub mod health;
pub mod identity;
pub mod view;

use crate::report::{CaptureStats, ConnectionRecord, DnsRecord, Finding};

/// Who and when a record is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Scope {
    /// The pod's name, when the source is a known pod: the pod behind the node-side interface
    /// the source's packets came through, else the pod holding the source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's `metadata.uid`, when the Kubernetes API names the pod: it tells a pod from an
    /// earlier one of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// What runs the pod, as `kind/name` (`deployment/web`, `statefulset/db`, `cronjob/backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The source is the node itself (its own address, as host-network pods have), not a pod.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
    /// The node whose agent saw it.
    pub node: String,
    /// Start of the report window (RFC 3339).
    pub window_start: String,
    /// End of the report window (RFC 3339).
    pub window_end: String,
}

/// A record with its scope, flattened into one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Scoped<T> {
    /// Pod, node, window.
    #[serde(flatten)]
    pub scope: Scope,
    /// The record itself.
    #[serde(flatten)]
    pub record: T,
}

/// How the agent's datapath is doing (counters over the window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatapathStats {
    /// `ebpf` or `pcap`.
    pub kind: String,
    /// Why this datapath (e.g. why eBPF could not load).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Interfaces watched at the end of the window.
    pub interfaces: u64,
    /// Packets the datapath saw.
    pub packets: u64,
    /// Control and DNS events sent to user space.
    pub events: u64,
    /// Events lost because the ring buffer (or libpcap's buffer) was full.
    pub event_drops: u64,
    /// Flow entries the kernel map pushed out before the agent read them.
    pub flows_evicted: u64,
    /// Flow entries that could not be created at all.
    pub flow_map_full: u64,
    /// Interfaces the agent failed to attach to.
    pub attach_errors: u64,
    /// Window reports the agent could not deliver and dropped (controller down too long).
    pub reports_dropped: u64,
    /// When the agent's profile last took in what the cluster tells of its network (ns since
    /// the Unix epoch; `GET /api/v1/cluster/profile`). Absent: the profile file is all it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_profile_ns: Option<u64>,
    /// How often the agent reports (ns): the controller calls a node stale when several
    /// intervals pass without a report. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ns: Option<u64>,
    /// Records whose packets came through one pod's interface while their source address
    /// belonged to another pod; the interface decided whose they are.
    #[serde(default)]
    pub attribution_mismatches: u64,
}

/// One agent's report for one window: `POST /api/v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// The report's identity, `INSTANCE-SEQUENCE` (the agent process and its count of reports):
    /// a report sent again after a lost answer is stored once. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// Window start, ns since the Unix epoch.
    pub window_start_ns: u64,
    /// Window end, ns since the Unix epoch.
    pub window_end_ns: u64,
    /// Connection groups, per pod.
    pub connections: Vec<Scoped<ConnectionRecord>>,
    /// DNS lookups, per pod.
    pub dns: Vec<Scoped<DnsRecord>>,
    /// Findings, per pod.
    pub findings: Vec<Scoped<Finding>>,
    /// What the engine read.
    pub capture: CaptureStats,
    /// How the datapath is doing.
    pub datapath: DatapathStats,
    /// Every pod on the node at the window's end, idle ones included: the controller routes
    /// captures and checks by these, and shows pods that make no traffic as idle, not absent.
    #[serde(default)]
    pub pods: Vec<NodePod>,
}

impl NodeReport {
    /// A report of `node` for the window `(start_ns, end_ns)` with nothing in it yet, from a
    /// datapath of `kind` (`ebpf`, `pcap`).
    pub fn empty(node: &str, (start_ns, end_ns): (u64, u64), kind: &str) -> NodeReport {
        NodeReport {
            node: node.to_string(),
            report_id: None,
            window_start_ns: start_ns,
            window_end_ns: end_ns,
            connections: Vec::new(),
            dns: Vec::new(),
            findings: Vec::new(),
            capture: CaptureStats::default(),
            datapath: DatapathStats {
                kind: kind.to_string(),
                ..DatapathStats::default()
            },
            pods: Vec::new(),
        }
    }
}

/// A pod on the node, whether or not it made traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodePod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Its `metadata.uid`, when the Kubernetes API names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// What runs it (`deployment/web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Its addresses.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub addresses: Vec<std::net::IpAddr>,
    /// The node-side interfaces leading to it.
    #[serde(default)]
    pub interfaces: Vec<PodLink>,
}

/// A node-side interface of a pod and since when the datapath watches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PodLink {
    /// The node-side device.
    pub name: String,
    /// When the datapath attached to it (ns since the Unix epoch): its traffic is in the records
    /// from then on. Absent while it is not attached (attaching failed, or not yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_ns: Option<u64>,
}

/// What the API answers with a 4xx or 5xx: `{"error": "…"}`, a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What was wrong and what to do.
    pub error: String,
}

/// The header that carries the controller's token where `Authorization` cannot: through the
/// Kubernetes API server's service proxy, which keeps `Authorization` for itself.
pub const TOKEN_HEADER: &str = "x-outflow-token";

/// Where the controller listens unless told otherwise, and where clients look for it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// How far back a query looks unless told otherwise (the CLI's `--since`, the API's `since`).
pub const DEFAULT_SINCE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The query parameters of `GET /api/v1/connections`, `/dns` and `/findings`, as the CLI sends
/// them and the controller reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    /// `NAME` or `NAMESPACE/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Only this destination category (not for DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Only this outcome (for findings: the severity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Look back this many seconds (default [`DEFAULT_SINCE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Most rows returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl RecordQuery {
    /// The parameters as `(name, value)` pairs for a URL's query, only those given.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let text = [
            ("pod", self.pod.clone()),
            ("namespace", self.namespace.clone()),
            ("node", self.node.clone()),
            ("category", self.category.clone()),
            ("outcome", self.outcome.clone()),
            ("since", self.since.map(|s| s.to_string())),
            ("limit", self.limit.map(|l| l.to_string())),
        ];
        text.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    }
}

/// The API's paths, as every client spells them.
pub mod routes {
    /// `POST`: an agent's window report.
    pub const REPORTS: &str = "/api/v1/reports";
    /// `GET`: connection records.
    pub const CONNECTIONS: &str = "/api/v1/connections";
    /// `GET`: DNS lookup records.
    pub const DNS: &str = "/api/v1/dns";
    /// `GET`: findings.
    pub const FINDINGS: &str = "/api/v1/findings";
    /// `GET`: nodes and their datapaths.
    pub const HEALTH: &str = "/api/v1/health";
    /// `GET`: the flow health matrix over a time range.
    pub const VIEW: &str = "/api/v1/view";
    /// `GET`: what is broken, where and since when.
    pub const DIAGNOSES: &str = "/api/v1/diagnoses";
    /// `GET`: one cell's destinations.
    pub const VIEW_DESTINATIONS: &str = "/api/v1/view/destinations";
    /// `GET` lists, `POST` creates captures.
    pub const CAPTURES: &str = "/api/v1/captures";
    /// `GET`: what the Kubernetes API tells of the cluster's network, for agents' profiles.
    pub const CLUSTER_PROFILE: &str = "/api/v1/cluster/profile";
    /// `GET`: an agent's long poll for its node's new captures.
    pub const AGENT_CAPTURES: &str = "/api/v1/agent/captures";
    /// `GET`: the API's OpenAPI document, made from the code that serves it.
    pub const OPENAPI: &str = "/api/v1/openapi.json";

    /// `GET` one capture, `DELETE` stops it.
    pub fn capture(id: u64) -> String {
        format!("{CAPTURES}/{id}")
    }

    /// `GET` downloads, `PUT` uploads a capture's pcapng.
    pub fn capture_pcapng(id: u64) -> String {
        format!("{CAPTURES}/{id}/pcapng")
    }

    /// `POST`: the agent's summary at a capture's end.
    pub fn capture_result(id: u64) -> String {
        format!("{CAPTURES}/{id}/result")
    }
}
