//! From a rule's verdict to the contract's diagnosis: scope, times, counts and examples are
//! all read off the facts the rule took, so every diagnosis says them the same way.

use std::collections::{BTreeMap, BTreeSet};

use outflow_core::category::Category;
use outflow_core::report::rfc3339;
use outflow_core::wire::diagnosis::{
    CaptureHint, Diagnosis, DiagnosisEvidence, DiagnosisKind, DiagnosisScope, DiagnosisState,
};

use crate::{words, Example, Fact, Input, ACTIVE_FOR_NS};

/// Examples shown per diagnosis.
const MAX_EXAMPLES: usize = 3;
/// Destinations and pods named per diagnosis.
const MAX_LISTED: usize = 50;

/// What a rule concluded, before it is dressed as a diagnosis.
pub(crate) struct Verdict<'a> {
    pub kind: DiagnosisKind,
    /// What it is about, for the id (`public/203.0.113.5:443`).
    pub key: String,
    pub category: Option<Category>,
    /// The failing facts it explains, and successes that show the contrast.
    pub facts: Vec<&'a Fact>,
    /// Its summary, fault and next checks.
    pub words: words::Words,
}

fn sorted(it: impl Iterator<Item = String>) -> Vec<String> {
    it.collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_LISTED)
        .collect()
}

/// Whether `e` is a record of the failing fact `f`.
fn is_of(e: &Example, f: &Fact) -> bool {
    e.namespace == f.namespace
        && e.workload == f.workload
        && e.node == f.node
        && e.destination == f.destination
}

/// The diagnosis of `v`.
pub(crate) fn diagnosis(v: Verdict<'_>, input: &Input) -> Diagnosis {
    let failing: Vec<&Fact> = v.facts.iter().copied().filter(|f| f.failed()).collect();
    let mut counts = BTreeMap::new();
    for f in &v.facts {
        *counts.entry(f.outcome.as_str().to_string()).or_insert(0u64) += f.count;
    }
    let examples: Vec<&Example> = input
        .examples
        .iter()
        .filter(|e| failing.iter().any(|f| is_of(e, f)))
        .collect();
    let since = failing.iter().map(|f| f.first_ns).min().unwrap_or(0);
    let last = failing.iter().map(|f| f.last_ns).max().unwrap_or(0);
    let state = if last.saturating_add(ACTIVE_FOR_NS) >= input.now_ns {
        DiagnosisState::Active
    } else {
        DiagnosisState::Resolved
    };
    let scope = DiagnosisScope {
        namespaces: sorted(failing.iter().map(|f| f.namespace.clone())),
        workloads: sorted(
            failing
                .iter()
                .map(|f| format!("{}/{}", f.namespace, f.workload)),
        ),
        pods: sorted(
            examples
                .iter()
                .filter(|e| !e.pod.is_empty())
                .map(|e| e.pod.clone()),
        ),
        nodes: sorted(failing.iter().map(|f| f.node.clone())),
        destinations: sorted(failing.iter().map(|f| f.destination.clone())),
        category: v.category,
    };
    let capture = examples.iter().find_map(|e| {
        let filter = words::capture_filter(&e.record)?;
        (!e.pod.is_empty()).then(|| CaptureHint {
            pod: e.pod.clone(),
            filter,
        })
    });
    Diagnosis {
        id: format!("{}:{}", v.kind.as_str(), v.key),
        kind: v.kind,
        summary: v.words.summary,
        fault: v.words.fault,
        scope,
        since: rfc3339(since),
        last_seen: rfc3339(last),
        state,
        evidence: DiagnosisEvidence {
            counts,
            examples: examples
                .iter()
                .take(MAX_EXAMPLES)
                .map(|e| words::example_line(e))
                .collect(),
            capture,
        },
        next_checks: v.words.next_checks,
    }
}
