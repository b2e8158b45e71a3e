//! Diagnoses from the flow health view's rollups: the AKS egress checklist a network engineer
//! follows by hand, run over every node's traffic at once.
//!
//! The input is what the controller's store holds for a time range: counters by (namespace,
//! workload, node, kind, category, destination, outcome) and the latest telling records. The
//! rules run from the widest fault to the narrowest, and each failure is explained once: a DNS
//! failure by the hop that failed; public failures on every node by the egress device; one
//! node's failures by that node; a namespace failing where others reach the same destination by
//! a policy; what is left by its destination. So one fault gives one diagnosis, with its scope,
//! and not one per pod or per window.

mod build;
mod connections;
mod dns;
mod words;

use outflow_core::category::Category;
use outflow_core::report::{ConnectionRecord, DnsRecord, Finding};
use outflow_core::wire::diagnosis::{Diagnosis, DiagnosisState};
use outflow_core::wire::Scoped;
use outflow_core::{DnsOutcome, Outcome};

/// A failure share below this is "now and then", not broken: no diagnosis.
pub const MIN_SHARE: f64 = 0.2;

/// A failure this recent keeps its diagnosis active: about two report buckets.
pub const ACTIVE_FOR_NS: u64 = 2 * 60 * 1_000_000_000;

/// The outcome a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactOutcome {
    /// A connection attempt's.
    Connection(Outcome),
    /// A DNS lookup's.
    Dns(DnsOutcome),
}

impl FactOutcome {
    /// Whether it failed.
    pub fn is_failure(self) -> bool {
        match self {
            FactOutcome::Connection(o) => o.is_failure(),
            FactOutcome::Dns(o) => o.is_failure(),
        }
    }

    /// Whether it succeeded (attempts and lookups the capture cut off did neither).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            FactOutcome::Connection(Outcome::Established)
                | FactOutcome::Dns(DnsOutcome::Ok | DnsOutcome::NoData)
        )
    }

    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FactOutcome::Connection(o) => o.as_str(),
            FactOutcome::Dns(o) => o.as_str(),
        }
    }
}

/// One counter summed over the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The source's namespace (`(host)` and `(unknown)` for sources that are no pod).
    pub namespace: String,
    /// Its workload (`deployment/web`, `pod/NAME`).
    pub workload: String,
    /// The node whose agent saw it.
    pub node: String,
    /// The destination's category.
    pub category: Category,
    /// The destination as the view names it, or the DNS name.
    pub destination: String,
    /// What happened.
    pub outcome: FactOutcome,
    /// How many times.
    pub count: u64,
    /// The start of the first bucket it is in (ns since the epoch).
    pub first_ns: u64,
    /// The end of the last.
    pub last_ns: u64,
}

impl Fact {
    /// Whether it counts failures.
    pub fn failed(&self) -> bool {
        self.count > 0 && self.outcome.is_failure()
    }

    /// Whether it counts successes.
    pub fn succeeded(&self) -> bool {
        self.count > 0 && self.outcome.is_success()
    }

    fn is_dns(&self) -> bool {
        matches!(self.outcome, FactOutcome::Dns(_))
    }
}

/// A telling record the store kept, with the keys it is filed under.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The source's namespace.
    pub namespace: String,
    /// Its workload.
    pub workload: String,
    /// The node.
    pub node: String,
    /// `NAMESPACE/NAME`, empty for sources that are no pod.
    pub pod: String,
    /// The destination as the rollups name it (a finding's target).
    pub destination: String,
    /// When it was last seen (ns since the epoch).
    pub last_ns: u64,
    /// The record.
    pub record: ExampleRecord,
}

/// The record of an example.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleRecord {
    /// A failing connection group.
    Connection(Box<Scoped<ConnectionRecord>>),
    /// A failing lookup.
    Dns(Box<Scoped<DnsRecord>>),
    /// An agent's finding.
    Finding(Box<Scoped<Finding>>),
}

/// What the rules read.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Now (ns since the epoch): failures since [`ACTIVE_FOR_NS`] keep a diagnosis active.
    pub now_ns: u64,
    /// The counters.
    pub facts: Vec<Fact>,
    /// The latest telling records, newest first.
    pub examples: Vec<Example>,
}

/// The diagnoses of `input`: active first, then resolved, each newest first.
pub fn diagnose(input: &Input) -> Vec<Diagnosis> {
    let mut explained = vec![false; input.facts.len()];
    let mut out = dns::diagnose(input, &mut explained);
    out.extend(connections::diagnose(input, &mut explained));
    out.sort_by(|a, b| {
        (a.state == DiagnosisState::Resolved)
            .cmp(&(b.state == DiagnosisState::Resolved))
            .then_with(|| b.last_seen.cmp(&a.last_seen))
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

#[cfg(test)]
mod tests;
