//! DNS: messages, query/response transactions, and lookups folded across the search list.
//!
//! A *transaction* is one query and its response (or timeout), matched by client, server, ports,
//! id, name and type. A *lookup* is what the application asked for: the transactions a resolver
//! makes for one name while walking its search list (`name.ns.svc.cluster.local`,
//! `name.svc.cluster.local`, …) fold into one, so an NXDOMAIN for a search expansion is not a
//! failure when a later expansion or the bare name resolves.

mod fields;
mod hickory;
pub mod lookup;
pub mod message;
mod name_text;
pub mod search_list;
pub mod tcp_stream;
pub mod transaction;
pub mod wire;

use serde::{Deserialize, Serialize};

/// Outcome of a DNS transaction or lookup (DESIGN.md §3, a contract; `unreachable`,
/// `incomplete` and `truncated` extend it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DnsOutcome {
    /// NOERROR with an answer.
    Ok,
    /// NOERROR without an answer of the asked type.
    NoData,
    /// The name does not exist.
    #[serde(rename = "nxdomain")]
    NxDomain,
    /// The server failed.
    #[serde(rename = "servfail")]
    ServFail,
    /// The server refused.
    Refused,
    /// No response within the DNS timeout.
    Timeout,
    /// Another response code.
    Other,
    /// An ICMP error said the server cannot be reached.
    Unreachable,
    /// The input ended before an answer or the timeout.
    Incomplete,
    /// The answer did not fit in UDP (TC bit) and no retry over TCP answered.
    Truncated,
}

impl DnsOutcome {
    /// All outcomes, each at its own index (`outcome as usize`), for counter arrays.
    pub const ALL: [DnsOutcome; 10] = [
        DnsOutcome::Ok,
        DnsOutcome::NoData,
        DnsOutcome::NxDomain,
        DnsOutcome::ServFail,
        DnsOutcome::Refused,
        DnsOutcome::Timeout,
        DnsOutcome::Other,
        DnsOutcome::Unreachable,
        DnsOutcome::Incomplete,
        DnsOutcome::Truncated,
    ];

    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsOutcome::Ok => "ok",
            DnsOutcome::NoData => "nodata",
            DnsOutcome::NxDomain => "nxdomain",
            DnsOutcome::ServFail => "servfail",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Timeout => "timeout",
            DnsOutcome::Other => "other",
            DnsOutcome::Unreachable => "unreachable",
            DnsOutcome::Incomplete => "incomplete",
            DnsOutcome::Truncated => "truncated",
        }
    }

    /// Whether the lookup failed to give the application an address: NXDOMAIN here is after the
    /// search list was tried (expansions are folded away), so it counts. NODATA (an `AAAA` of a
    /// name with only `A`) and lookups the capture cut off do not.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            DnsOutcome::Ok | DnsOutcome::NoData | DnsOutcome::Incomplete
        )
    }

    /// How much a failed transaction explains a failed lookup: the most telling one is reported
    /// (a timeout or SERVFAIL on one expansion explains more than NXDOMAIN on the others).
    pub fn weight(self) -> u8 {
        match self {
            DnsOutcome::Ok => 10,
            DnsOutcome::Incomplete => 9,
            DnsOutcome::Truncated => 8,
            DnsOutcome::Unreachable => 7,
            DnsOutcome::Timeout => 6,
            DnsOutcome::ServFail => 5,
            DnsOutcome::Refused => 4,
            DnsOutcome::Other => 3,
            DnsOutcome::NoData => 2,
            DnsOutcome::NxDomain => 1,
        }
    }
}

impl std::fmt::Display for DnsOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for DnsOutcome {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::DnsOutcome;

    #[test]
    fn each_outcome_sits_at_its_own_index() {
        for (i, o) in DnsOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
    }
}
