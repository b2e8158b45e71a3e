//! The flow health view (DESIGN.md §4.6): `GET /api/v1/view`, a matrix of who (namespaces or
//! workloads) × where (destination categories), and `GET /api/v1/view/destinations`, one cell's
//! destinations. Both aggregate the controller's rollups over any time range.
//!
//! A source that is not a pod has a namespace of its own in parentheses, which no Kubernetes
//! namespace can be: [`HOST_NAMESPACE`] for the node itself (host-network pods), and
//! [`UNKNOWN_NAMESPACE`] for sources no inventory names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::category::Category;
use crate::conn::Outcome;
use crate::dns::DnsOutcome;

/// The namespace of traffic from the node itself.
pub const HOST_NAMESPACE: &str = "(host)";
/// The namespace of traffic from sources no inventory names.
pub const UNKNOWN_NAMESPACE: &str = "(unknown)";
/// The destination standing for all those a rollup did not keep by name.
pub const OTHER_DESTINATIONS: &str = "(other)";
/// Time slots in a cell's timeline.
pub const TIMELINE_SLOTS: u64 = 30;

/// What the matrix's rows are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One row per namespace.
    #[default]
    Namespace,
    /// One row per workload (`deployment/web`; a pod without one is `pod/NAME`).
    Workload,
}

impl GroupBy {
    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Namespace => "namespace",
            GroupBy::Workload => "workload",
        }
    }
}

/// The parameters of `GET /api/v1/view`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// Look back this many seconds (default [`super::DEFAULT_SINCE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Rows by namespace (default) or by workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<GroupBy>,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only rows whose namespace or workload holds this text (any case, matched literally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

impl ViewQuery {
    /// The parameters as `(name, value)` pairs for a URL's query, only those given.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("since", self.since.map(|s| s.to_string())),
            ("by", self.by.map(|b| b.as_str().to_string())),
            ("namespace", self.namespace.clone()),
            ("search", self.search.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// The answer of `GET /api/v1/view`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowView {
    /// The range aggregated: from (ns since the epoch) …
    pub from_ns: u64,
    /// … to.
    pub to_ns: u64,
    /// The width of one timeline slot (ns).
    pub slot_ns: u64,
    /// What the rows are.
    pub by: GroupBy,
    /// Rows with any traffic in the range, the most failures first.
    pub rows: Vec<ViewRow>,
}

/// A row of the matrix: a namespace, or a workload in its namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ViewRow {
    /// The namespace ([`HOST_NAMESPACE`], [`UNKNOWN_NAMESPACE`] for sources that are no pod).
    pub namespace: String,
    /// The workload, when rows are workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// One cell per category with traffic, in the contract's order.
    pub cells: Vec<Cell>,
}

/// Traffic of one row to one category of destinations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cell {
    /// Where the destinations sit.
    pub category: Category,
    /// Connection attempts by outcome.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<Outcome, u64>,
    /// DNS lookups by outcome, for names whose answers (or, failing, whose names) are in this
    /// category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dns: BTreeMap<DnsOutcome, u64>,
    /// Failed attempts and lookups.
    pub failures: u64,
    /// Attempts and lookups with an outcome (those the capture cut off are left out).
    pub total: u64,
    /// `failures / total`, 0 when there is none.
    pub failure_share: f64,
    /// Failures per slot of [`FlowView::slot_ns`], oldest first.
    pub timeline: Vec<u64>,
    /// Nodes the traffic came from, counted by the hour: those with traffic in any hour the
    /// range touches.
    pub nodes: u64,
}

impl Cell {
    /// An empty cell of `category` with `slots` timeline slots.
    pub fn empty(category: Category, slots: usize) -> Cell {
        Cell {
            category,
            connections: BTreeMap::new(),
            dns: BTreeMap::new(),
            failures: 0,
            total: 0,
            failure_share: 0.0,
            timeline: vec![0; slots],
            nodes: 0,
        }
    }
}

/// The parameters of `GET /api/v1/view/destinations`: one cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct DestinationsQuery {
    /// Look back this many seconds (default [`super::DEFAULT_SINCE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The row's namespace.
    pub namespace: String,
    /// The row's workload, when rows are workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The cell's category.
    pub category: Category,
}

impl DestinationsQuery {
    /// The parameters as `(name, value)` pairs for a URL's query, only those given.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("since", self.since.map(|s| s.to_string())),
            ("namespace", Some(self.namespace.clone())),
            ("workload", self.workload.clone()),
            ("category", Some(self.category.as_str().to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// One destination of a cell: `GET /api/v1/view/destinations` answers a list, failing ones
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationHealth {
    /// The destination: `name:port` (from DNS, TLS SNI, HTTP Host or the Kubernetes API),
    /// `address:port`, a DNS name for lookups, or [`OTHER_DESTINATIONS`].
    pub destination: String,
    /// Connection attempts by outcome.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<Outcome, u64>,
    /// DNS lookups by outcome.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dns: BTreeMap<DnsOutcome, u64>,
    /// Failed attempts and lookups.
    pub failures: u64,
    /// The start of the first bucket with traffic (ns since the epoch).
    pub first_seen_ns: u64,
    /// The end of the last bucket with traffic.
    pub last_seen_ns: u64,
    /// The start of the first bucket with a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure_ns: Option<u64>,
    /// The end of the last bucket with a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_ns: Option<u64>,
    /// Nodes the traffic came from.
    pub nodes: Vec<String>,
    /// Pods whose failures are kept as evidence (`NAMESPACE/NAME`), to capture from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// The latest failing connection record of it, as the records API has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_connection: Option<Box<super::Scoped<crate::report::ConnectionRecord>>>,
    /// The latest failing DNS record of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_dns: Option<Box<super::Scoped<crate::report::DnsRecord>>>,
}
