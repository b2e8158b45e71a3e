//! Connection failures, widest fault first: every node failing to public destinations (the
//! egress device), one node failing where others succeed (that node), some namespaces failing
//! where others reach the same destination (a policy), and what is left by destination.

use std::collections::{BTreeMap, BTreeSet};

use outflow_core::category::Category;
use outflow_core::wire::diagnosis::{Diagnosis, DiagnosisKind};
use outflow_core::Outcome;

use crate::build::{diagnosis, Verdict};
use crate::{words, ExampleRecord, Fact, FactOutcome, Input};

/// A failure share at least this high is "failing".
const FAILING: f64 = 0.9;
/// A failure share at most this high is "working" (when something succeeded).
const WORKING: f64 = 0.5;
/// Failures fewer than this are no proof that a whole node or the egress fails.
const MIN_FAILURES: u64 = 3;

/// Failures and successes.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    failed: u64,
    ok: u64,
}

impl Tally {
    fn add(&mut self, f: &Fact) {
        if f.failed() {
            self.failed += f.count;
        } else if f.succeeded() {
            self.ok += f.count;
        }
    }

    fn share(self) -> f64 {
        match self.failed + self.ok {
            0 => 0.0,
            n => self.failed as f64 / n as f64,
        }
    }

    fn failing(self) -> bool {
        self.failed > 0 && self.share() >= FAILING
    }

    fn working(self) -> bool {
        self.ok > 0 && self.share() <= WORKING
    }
}

fn is_connection(f: &Fact) -> bool {
    matches!(f.outcome, FactOutcome::Connection(_))
}

/// The connection diagnoses; marks the facts they explain.
pub(crate) fn diagnose(input: &Input, explained: &mut [bool]) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    egress(input, explained, &mut out);
    for category in Category::ALL {
        nodes(input, category, explained, &mut out);
    }
    policies(input, explained, &mut out);
    destinations(input, explained, &mut out);
    out
}

/// Indices of unexplained failing connection facts that `keep` takes.
fn open_failures(input: &Input, explained: &[bool], keep: impl Fn(&Fact) -> bool) -> Vec<usize> {
    (0..input.facts.len())
        .filter(|&i| {
            let f = &input.facts[i];
            !explained[i] && is_connection(f) && f.failed() && keep(f)
        })
        .collect()
}

fn egress(input: &Input, explained: &mut [bool], out: &mut Vec<Diagnosis>) {
    let public = |f: &Fact| is_connection(f) && f.category == Category::Public;
    let mut by_node: BTreeMap<&str, Tally> = BTreeMap::new();
    for f in input.facts.iter().filter(|f| public(f)) {
        by_node.entry(&f.node).or_default().add(f);
    }
    let idx = open_failures(input, explained, public);
    let destinations: BTreeSet<&str> = idx
        .iter()
        .map(|&i| input.facts[i].destination.as_str())
        .collect();
    let failed: u64 = by_node.values().map(|t| t.failed).sum();
    if by_node.is_empty()
        || !by_node.values().all(|t| t.failing())
        || destinations.len() < 2
        || failed < MIN_FAILURES
    {
        return;
    }
    let facts: Vec<&Fact> = input.facts.iter().filter(|f| public(f)).collect();
    let egress = egress_type(input);
    let w = words::egress(egress.as_deref(), by_node.len(), &destinations, &facts);
    mark(explained, &idx);
    out.push(diagnosis(
        Verdict {
            kind: DiagnosisKind::Egress,
            key: "public".into(),
            category: Some(Category::Public),
            facts,
            words: w,
        },
        input,
    ));
}

/// How public traffic leaves, as the agents' records say: the most common answer.
fn egress_type(input: &Input) -> Option<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &input.examples {
        if let ExampleRecord::Connection(c) = &e.record {
            if let Some(t) = &c.record.egress {
                *seen.entry(t).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t.to_string())
}

fn nodes(input: &Input, category: Category, explained: &mut [bool], out: &mut Vec<Diagnosis>) {
    let of = |f: &Fact| is_connection(f) && f.category == category;
    let mut by_node: BTreeMap<&str, Tally> = BTreeMap::new();
    for f in input.facts.iter().filter(|f| of(f)) {
        by_node.entry(&f.node).or_default().add(f);
    }
    for (node, tally) in &by_node {
        let working: Vec<&str> = by_node
            .iter()
            .filter(|(n, t)| n != &node && t.working())
            .map(|(n, _)| *n)
            .collect();
        if !tally.failing() || tally.failed < MIN_FAILURES || working.is_empty() {
            continue;
        }
        let idx = open_failures(input, explained, |f| of(f) && f.node == *node);
        if idx.is_empty() {
            continue;
        }
        let facts: Vec<&Fact> = input
            .facts
            .iter()
            .filter(|f| of(f) && f.node == *node)
            .collect();
        let w = words::node(node, category, &working, &facts);
        mark(explained, &idx);
        out.push(diagnosis(
            Verdict {
                kind: DiagnosisKind::Node,
                key: format!("{node}/{}", category.as_str()),
                category: Some(category),
                facts,
                words: w,
            },
            input,
        ));
    }
}

/// The destinations a namespace fails to reach, and the namespaces that reach them.
type Blocked<'a> = (BTreeSet<(Category, &'a str)>, BTreeSet<&'a str>);

fn policies(input: &Input, explained: &mut [bool], out: &mut Vec<Diagnosis>) {
    // (category, destination) → namespace → tally, over every fact of the destination.
    let mut by_dest: BTreeMap<(Category, &str), BTreeMap<&str, Tally>> = BTreeMap::new();
    for f in input.facts.iter().filter(|f| is_connection(f)) {
        by_dest
            .entry((f.category, &f.destination))
            .or_default()
            .entry(&f.namespace)
            .or_default()
            .add(f);
    }
    // Failing namespace → the destinations others reach, and who reaches them.
    let mut blocked: BTreeMap<&str, Blocked> = BTreeMap::new();
    for (dest, namespaces) in &by_dest {
        let working: Vec<&str> = namespaces
            .iter()
            .filter(|(_, t)| t.working())
            .map(|(n, _)| *n)
            .collect();
        if working.is_empty() {
            continue;
        }
        for (ns, t) in namespaces {
            if t.failing() {
                let e = blocked.entry(ns).or_default();
                e.0.insert(*dest);
                e.1.extend(working.iter().copied());
            }
        }
    }
    for (ns, (dests, working)) in blocked {
        let of = |f: &Fact| {
            is_connection(f)
                && f.namespace == ns
                && dests.contains(&(f.category, f.destination.as_str()))
        };
        let idx = open_failures(input, explained, of);
        if idx.is_empty() {
            continue;
        }
        let facts: Vec<&Fact> = input.facts.iter().filter(|f| of(f)).collect();
        let categories: BTreeSet<Category> = dests.iter().map(|(c, _)| *c).collect();
        let category =
            (categories.len() == 1).then(|| *categories.first().unwrap_or(&Category::Public));
        let names: BTreeSet<&str> = dests.iter().map(|(_, d)| *d).collect();
        let w = words::policy(ns, &names, &working, &facts);
        mark(explained, &idx);
        out.push(diagnosis(
            Verdict {
                kind: DiagnosisKind::NetworkPolicy,
                key: ns.to_string(),
                category,
                facts,
                words: w,
            },
            input,
        ));
    }
}

fn destinations(input: &Input, explained: &mut [bool], out: &mut Vec<Diagnosis>) {
    let idx = open_failures(input, explained, |_| true);
    let open: BTreeSet<(Category, &str)> = idx
        .iter()
        .map(|&i| (input.facts[i].category, input.facts[i].destination.as_str()))
        .collect();
    for (category, dest) in open {
        let of = |f: &Fact| is_connection(f) && f.category == category && f.destination == dest;
        let facts: Vec<&Fact> = input.facts.iter().filter(|f| of(f)).collect();
        let mut tally = Tally::default();
        let mut by_outcome: BTreeMap<Outcome, u64> = BTreeMap::new();
        for f in &facts {
            tally.add(f);
            if let (FactOutcome::Connection(o), true) = (f.outcome, f.failed()) {
                *by_outcome.entry(o).or_default() += f.count;
            }
        }
        if tally.share() < crate::MIN_SHARE {
            continue;
        }
        let worst = by_outcome
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(o, _)| *o)
            .unwrap_or(Outcome::Unanswered);
        let others_work = input.facts.iter().any(|f| {
            is_connection(f) && f.category == category && f.destination != dest && f.succeeded()
        });
        let icmp = words::icmp_of(input, dest);
        let w = words::destination(
            dest,
            category,
            worst,
            &icmp,
            (tally.failed, tally.failed + tally.ok),
            others_work,
            &facts,
        );
        let mine = open_failures(input, explained, of);
        mark(explained, &mine);
        out.push(diagnosis(
            Verdict {
                kind: DiagnosisKind::Destination,
                key: format!("{}/{dest}", category.as_str()),
                category: Some(category),
                facts,
                words: w,
            },
            input,
        ));
    }
}

fn mark(explained: &mut [bool], idx: &[usize]) {
    for &i in idx {
        explained[i] = true;
    }
}
