//! DNS by hop: a pod's lookup goes to the cluster DNS, which asks its upstream resolver. The
//! cluster DNS's own lookups are in the rollups too (its pods are pods), so a pod's failed
//! lookup is joined with the cluster DNS's lookups of the same name in the range: they failed
//! the same way → the upstream; they were answered, or there were none → the cluster DNS.
//! Search-list NXDOMAINs that a later expansion answers never get here: the agents fold them
//! into the lookup that was answered.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use outflow_core::wire::diagnosis::{Diagnosis, DiagnosisKind};
use outflow_core::DnsOutcome;

use crate::build::{diagnosis, Verdict};
use crate::{words, ExampleRecord, Fact, FactOutcome, Input};

/// Whether a workload is the cluster's DNS: CoreDNS (`kube-dns` on older clusters) or the
/// node-local DNS cache, in `kube-system` as every distribution runs them.
pub(crate) fn is_cluster_dns(namespace: &str, workload: &str) -> bool {
    namespace == "kube-system"
        && ["coredns", "kube-dns", "node-local-dns"]
            .iter()
            .any(|n| workload.contains(n))
}

fn dns_outcome(f: &Fact) -> Option<DnsOutcome> {
    match f.outcome {
        FactOutcome::Dns(o) => Some(o),
        FactOutcome::Connection(_) => None,
    }
}

/// Which hop a failure of `outcome` points at, when the hop that asked was the cluster DNS.
fn upstream_kind(outcome: DnsOutcome) -> DiagnosisKind {
    match outcome {
        DnsOutcome::NxDomain => DiagnosisKind::DnsNameMissing,
        DnsOutcome::Timeout | DnsOutcome::Unreachable => DiagnosisKind::DnsUpstreamDown,
        _ => DiagnosisKind::DnsUpstreamError,
    }
}

/// The DNS diagnoses; marks the DNS facts they explain.
pub(crate) fn diagnose(input: &Input, explained: &mut [bool]) -> Vec<Diagnosis> {
    // How the cluster DNS's own lookups of each name went: its worst failure, if any.
    let mut upstream: HashMap<&str, Option<DnsOutcome>> = HashMap::new();
    for f in &input.facts {
        let Some(o) = dns_outcome(f) else { continue };
        if !is_cluster_dns(&f.namespace, &f.workload) || f.count == 0 {
            continue;
        }
        let seen = upstream.entry(&f.destination).or_insert(None);
        if o.is_failure() && seen.is_none_or(|s| o.weight() > s.weight()) {
            *seen = Some(o);
        }
    }
    // How the pods' lookups of each name went: a name failing now and then is no diagnosis.
    let mut pods: HashMap<&str, (u64, u64)> = HashMap::new();
    for f in input
        .facts
        .iter()
        .filter(|f| f.is_dns() && !is_cluster_dns(&f.namespace, &f.workload))
    {
        let t = pods.entry(&f.destination).or_default();
        if f.failed() {
            t.0 += f.count;
        } else if f.succeeded() {
            t.1 += f.count;
        }
    }
    let sporadic = |name: &str| {
        pods.get(name)
            .is_some_and(|(failed, ok)| (*failed as f64) < crate::MIN_SHARE * (failed + ok) as f64)
    };
    let mut groups: BTreeMap<(DiagnosisKind, String), Vec<usize>> = BTreeMap::new();
    for (i, f) in input.facts.iter().enumerate() {
        let Some(o) = dns_outcome(f) else { continue };
        if !f.failed() {
            continue;
        }
        let kind = if is_cluster_dns(&f.namespace, &f.workload) {
            upstream_kind(o)
        } else if o == DnsOutcome::NxDomain {
            DiagnosisKind::DnsNameMissing
        } else if sporadic(&f.destination) {
            continue;
        } else {
            match upstream.get(f.destination.as_str()) {
                Some(Some(up)) if *up != DnsOutcome::NxDomain => upstream_kind(*up),
                // The cluster DNS was answered, yet the pods were not.
                Some(_) => DiagnosisKind::DnsCluster,
                // Its own queries were not seen (answered from its cache, or its node has no
                // agent): silence is its own, an error answer most likely passed on from
                // upstream.
                None if matches!(o, DnsOutcome::Timeout | DnsOutcome::Unreachable) => {
                    DiagnosisKind::DnsCluster
                }
                None => DiagnosisKind::DnsUpstreamError,
            }
        };
        // A missing name is its own problem; the other kinds are one problem for every name.
        let key = match kind {
            DiagnosisKind::DnsNameMissing => f.destination.clone(),
            _ => String::new(),
        };
        groups.entry((kind, key)).or_default().push(i);
    }
    let mut out = Vec::new();
    for ((kind, key), idx) in groups {
        let names: BTreeSet<&str> = idx
            .iter()
            .map(|&i| input.facts[i].destination.as_str())
            .collect();
        // The lookups of the same names that worked, for the contrast in the counts.
        let mut facts: Vec<&Fact> = idx.iter().map(|&i| &input.facts[i]).collect();
        facts.extend(
            input
                .facts
                .iter()
                .filter(|f| f.is_dns() && f.succeeded() && names.contains(f.destination.as_str())),
        );
        for &i in &idx {
            explained[i] = true;
        }
        let servers = servers(input, &facts, kind != DiagnosisKind::DnsCluster);
        let words = words::dns(kind, &names, &servers, &facts);
        out.push(diagnosis(
            Verdict {
                kind,
                key: if key.is_empty() {
                    servers.join(",")
                } else {
                    key
                },
                category: None,
                facts,
                words,
            },
            input,
        ));
    }
    out
}

/// The servers asked in the examples of `facts`: the cluster DNS's (its upstream) when
/// `upstream`, else the pods' (the cluster DNS's address).
fn servers(input: &Input, facts: &[&Fact], upstream: bool) -> Vec<String> {
    let mut out = BTreeSet::new();
    for e in &input.examples {
        let ExampleRecord::Dns(d) = &e.record else {
            continue;
        };
        if is_cluster_dns(&e.namespace, &e.workload) != upstream {
            continue;
        }
        if facts.iter().any(|f| f.destination == e.destination) {
            out.extend(d.record.servers.iter().map(|s| s.to_string()));
        }
    }
    out.into_iter().collect()
}
