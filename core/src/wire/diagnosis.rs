//! Diagnoses (DESIGN.md §4.6): `GET /api/v1/diagnoses`, what is broken, for whom, since when,
//! where the fault most likely is, the evidence and the next check. One diagnosis covers a
//! problem for as long as it lasts; it is not repeated per report window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::category::Category;

/// What kind of fault a diagnosis names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosisKind {
    /// Pods' lookups fail at the cluster DNS (CoreDNS or node-local DNS down or overloaded).
    DnsCluster,
    /// The cluster DNS's own queries to its upstream resolver go unanswered.
    DnsUpstreamDown,
    /// The upstream resolver answers SERVFAIL or REFUSED.
    DnsUpstreamError,
    /// The names do not exist (NXDOMAIN after every search expansion).
    DnsNameMissing,
    /// Every node fails to reach public destinations: the egress device.
    Egress,
    /// One node fails where the others succeed.
    Node,
    /// Some namespaces fail to reach destinations that others reach: a network policy or a
    /// rule on the node.
    NetworkPolicy,
    /// One destination fails while others in its category work.
    Destination,
}

impl DiagnosisKind {
    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisKind::DnsCluster => "dns-cluster",
            DiagnosisKind::DnsUpstreamDown => "dns-upstream-down",
            DiagnosisKind::DnsUpstreamError => "dns-upstream-error",
            DiagnosisKind::DnsNameMissing => "dns-name-missing",
            DiagnosisKind::Egress => "egress",
            DiagnosisKind::Node => "node",
            DiagnosisKind::NetworkPolicy => "network-policy",
            DiagnosisKind::Destination => "destination",
        }
    }
}

/// Whether the failures go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DiagnosisState {
    /// Failures in the last minutes.
    Active,
    /// The failures stopped.
    Resolved,
}

/// Who and what a diagnosis covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiagnosisScope {
    /// Namespaces whose traffic fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Their workloads, `NAMESPACE/KIND/NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    /// Pods whose failures are kept as evidence, `NAMESPACE/NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Nodes the failing traffic came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The destinations (as the view names them) or DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// The destinations' category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
}

/// What a diagnosis rests on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiagnosisEvidence {
    /// Attempts and lookups by outcome, over the scope and the range.
    pub counts: BTreeMap<String, u64>,
    /// Telling records, one line each (`shop/web-1 on node-a: 10.244.1.5 → 203.0.113.5:443
    /// unanswered ×3`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// A capture that would show it: a pod and a filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureHint>,
}

/// A capture to start for a diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureHint {
    /// `NAMESPACE/NAME`.
    pub pod: String,
    /// A tcpdump filter for the failing traffic.
    pub filter: String,
}

/// One problem, from when it started to now or to when it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diagnosis {
    /// Stable while the problem lasts: its kind and what it is about.
    pub id: String,
    /// What kind of fault.
    pub kind: DiagnosisKind,
    /// One sentence for a person: what fails, for whom.
    pub summary: String,
    /// Where the fault most likely is.
    pub fault: String,
    /// Who and what.
    pub scope: DiagnosisScope,
    /// The first failure in the range (RFC 3339).
    pub since: String,
    /// The latest failure (RFC 3339).
    pub last_seen: String,
    /// Whether it goes on.
    pub state: DiagnosisState,
    /// What it rests on.
    pub evidence: DiagnosisEvidence,
    /// What to check next, most telling first.
    pub next_checks: Vec<String>,
}

/// The answer of `GET /api/v1/diagnoses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diagnoses {
    /// Active ones first, then resolved; newest first within each.
    pub diagnoses: Vec<Diagnosis>,
}

/// The parameters of `GET /api/v1/diagnoses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct DiagnosesQuery {
    /// Look back this many seconds (default [`super::DEFAULT_SINCE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

impl DiagnosesQuery {
    /// The parameters as `(name, value)` pairs for a URL's query, only those given.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        self.since
            .map(|s| ("since", s.to_string()))
            .into_iter()
            .collect()
    }
}
