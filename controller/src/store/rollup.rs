//! What one report adds to the rollups and the evidence: the rows, worked out before any
//! database work so the writing is one batch and the rules can be tested alone.
//!
//! A rollup row counts one outcome of one (namespace, workload, node, kind, category,
//! destination) in one minute bucket. Destinations are bounded per report: every destination
//! with a failure is kept by name, then the busiest [`KEPT_DESTINATIONS`], and the rest are
//! folded into [`OTHER_DESTINATIONS`]. Evidence rows keep the latest failing record of each
//! (pod, destination, outcome) and each finding, for the drill-down and the diagnoses.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use outflow_core::category::Category;
use outflow_core::report::{ConnectionRecord, DnsRecord, Latency};
use outflow_core::wire::view::{HOST_NAMESPACE, OTHER_DESTINATIONS, UNKNOWN_NAMESPACE};
use outflow_core::wire::{NodeReport, Scope};
use outflow_core::{DnsOutcome, Outcome};

/// Healthy destinations kept by name per (workload, kind, category) and report.
pub const KEPT_DESTINATIONS: usize = 8;
/// The width of the buckets reports are written to (seconds).
pub const FINE_BUCKET_S: u64 = 60;

/// Which records a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKind {
    /// Connection attempts.
    Connection,
    /// DNS lookups.
    Dns,
}

impl RowKind {
    /// The spelling in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Connection => "connection",
            RowKind::Dns => "dns",
        }
    }
}

/// Who a row is about: the namespace and workload of the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// The pod's namespace, or [`HOST_NAMESPACE`] / [`UNKNOWN_NAMESPACE`].
    pub namespace: String,
    /// `deployment/web`, `pod/NAME` for a pod no controller runs, `host` or `unknown`.
    pub workload: String,
}

impl Subject {
    /// The subject of a record's scope.
    pub fn of(scope: &Scope) -> Subject {
        let (namespace, workload) = match (&scope.namespace, &scope.pod) {
            (Some(ns), Some(pod)) => (
                ns.clone(),
                scope
                    .workload
                    .clone()
                    .unwrap_or_else(|| format!("pod/{pod}")),
            ),
            _ if scope.host => (HOST_NAMESPACE.to_string(), "host".to_string()),
            _ => (UNKNOWN_NAMESPACE.to_string(), "unknown".to_string()),
        };
        Subject {
            namespace,
            workload,
        }
    }
}

/// One counter of a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    /// Who.
    pub subject: Subject,
    /// Connections or lookups.
    pub kind: RowKind,
    /// Where the destination sits.
    pub category: Category,
    /// The destination (see [`outflow_core::wire::view::DestinationHealth::destination`]).
    pub destination: String,
    /// The outcome's contract spelling.
    pub outcome: &'static str,
    /// How many.
    pub count: u64,
    /// Latency of those that had one: sum and largest (ms), and how many.
    pub latency: LatencySum,
}

/// Latencies added up, so buckets merge by addition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySum {
    /// Sum of the samples (ms).
    pub sum_ms: f64,
    /// Samples.
    pub count: u64,
    /// Largest sample (ms).
    pub max_ms: f64,
}

impl LatencySum {
    fn of(l: &Option<Latency>) -> LatencySum {
        match l {
            Some(l) => LatencySum {
                sum_ms: l.avg * l.count as f64,
                count: l.count,
                max_ms: l.max,
            },
            None => LatencySum::default(),
        }
    }

    fn add(&mut self, o: LatencySum) {
        self.sum_ms += o.sum_ms;
        self.count += o.count;
        self.max_ms = self.max_ms.max(o.max_ms);
    }
}

/// A telling record kept beside the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceRow {
    /// Who.
    pub subject: Subject,
    /// The pod, `NAMESPACE/NAME`; empty for sources that are no pod.
    pub pod: String,
    /// `connection`, `dns` or `finding`.
    pub kind: &'static str,
    /// The destination's category; none for findings without one.
    pub category: Option<Category>,
    /// The destination, spelled as in the rollups (a finding's target for findings).
    pub destination: String,
    /// The failing outcome (a finding's kind for findings).
    pub outcome: String,
    /// How many in this report.
    pub count: u64,
    /// The record as the records API serves it.
    pub json: String,
}

/// Everything one report adds.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    /// The bucket's start (seconds since the epoch).
    pub bucket_s: u64,
    /// Counters.
    pub rows: Vec<RollupRow>,
    /// Evidence.
    pub evidence: Vec<EvidenceRow>,
}

/// How a connection's destination is named: who the cluster says it is, else a name the
/// traffic gave (DNS answer, SNI, Host), else a platform label, else its address.
pub fn connection_destination(c: &ConnectionRecord) -> String {
    let port = c.dst_port;
    if let Some(d) = &c.destination {
        return format!("{d}, port {port}");
    }
    match c.names.first().or(c.label.as_ref()) {
        Some(n) => format!("{n}:{port}"),
        None => SocketAddr::new(c.dst, port).to_string(),
    }
}

/// The category of a lookup: that of the connections made to its answers in the same report,
/// else internal for names in the cluster's domain, else public.
fn dns_category(
    d: &DnsRecord,
    answered: &HashMap<IpAddr, Category>,
    cluster_domain: &str,
) -> Category {
    if let Some(c) = d.answers.iter().find_map(|a| answered.get(a)) {
        return *c;
    }
    let in_cluster = |n: &str| {
        let n = n.trim_end_matches('.');
        n.ends_with(&format!(".{cluster_domain}")) || n.contains(".svc.")
    };
    if in_cluster(&d.name) || d.resolved_as.as_deref().is_some_and(in_cluster) {
        Category::Internal
    } else {
        Category::Public
    }
}

type Counters = BTreeMap<&'static str, (u64, LatencySum)>;
type Groups = BTreeMap<(Subject, RowKind, Category), HashMap<String, Counters>>;

/// What one connection or DNS record adds.
struct Part {
    subject: Subject,
    kind: RowKind,
    category: Category,
    destination: String,
    /// Of the successes (handshakes, answers).
    latency: LatencySum,
    /// Outcome, count, whether it failed, whether it is the success the latency is of.
    outcomes: Vec<(&'static str, u64, bool, bool)>,
}

impl Part {
    /// Adds the counters to `groups` and, for each failing outcome, the record (made by `json`)
    /// to `evidence`.
    fn add(
        self,
        groups: &mut Groups,
        evidence: &mut Vec<EvidenceRow>,
        scope: &Scope,
        json: impl Fn() -> serde_json::Result<String>,
    ) -> serde_json::Result<()> {
        let counters = groups
            .entry((self.subject.clone(), self.kind, self.category))
            .or_default()
            .entry(self.destination.clone())
            .or_default();
        for (outcome, n, failed, timed) in self.outcomes {
            let e = counters.entry(outcome).or_default();
            e.0 = e.0.saturating_add(n);
            if timed {
                e.1.add(self.latency);
            }
            if failed && n > 0 {
                evidence.push(EvidenceRow {
                    subject: self.subject.clone(),
                    pod: pod_of(scope),
                    kind: self.kind.as_str(),
                    category: Some(self.category),
                    destination: self.destination.clone(),
                    outcome: outcome.to_string(),
                    count: n,
                    json: json()?,
                });
            }
        }
        Ok(())
    }
}

/// Works out what `r` adds to the rollups and the evidence.
pub fn rollup(r: &NodeReport, cluster_domain: &str) -> anyhow::Result<Rollup> {
    let bucket_s =
        (r.window_end_ns.saturating_sub(1) / 1_000_000_000) / FINE_BUCKET_S * FINE_BUCKET_S;
    // (subject, kind, category) → destination → outcome → counters.
    let mut groups = Groups::new();
    let mut evidence = Vec::new();
    let mut answered = HashMap::new();
    for c in &r.connections {
        answered.insert(c.record.dst, c.record.category);
    }
    for c in &r.connections {
        let part = Part {
            subject: Subject::of(&c.scope),
            kind: RowKind::Connection,
            category: c.record.category,
            destination: connection_destination(&c.record),
            latency: LatencySum::of(&c.record.handshake_ms),
            outcomes: (c.record.outcomes.iter())
                .map(|(o, n)| (o.as_str(), *n, o.is_failure(), *o == Outcome::Established))
                .collect(),
        };
        part.add(&mut groups, &mut evidence, &c.scope, || {
            serde_json::to_string(c)
        })?;
    }
    for d in &r.dns {
        let part = Part {
            subject: Subject::of(&d.scope),
            kind: RowKind::Dns,
            category: dns_category(&d.record, &answered, cluster_domain),
            destination: d.record.name.clone(),
            latency: LatencySum::of(&d.record.latency_ms),
            outcomes: (d.record.outcomes.iter())
                .map(|(o, n)| (o.as_str(), *n, o.is_failure(), *o == DnsOutcome::Ok))
                .collect(),
        };
        part.add(&mut groups, &mut evidence, &d.scope, || {
            serde_json::to_string(d)
        })?;
    }
    for f in &r.findings {
        evidence.push(EvidenceRow {
            subject: Subject::of(&f.scope),
            pod: pod_of(&f.scope),
            kind: "finding",
            category: f.record.category,
            destination: f.record.target.clone().unwrap_or_default(),
            outcome: f.record.kind.clone(),
            count: f.record.count,
            json: serde_json::to_string(f)?,
        });
    }
    let mut rows = Vec::new();
    for ((subject, kind, category), destinations) in groups {
        for (destination, counters) in bounded(destinations, kind) {
            for (outcome, (count, latency)) in counters {
                rows.push(RollupRow {
                    subject: subject.clone(),
                    kind,
                    category,
                    destination: destination.clone(),
                    outcome,
                    count,
                    latency,
                });
            }
        }
    }
    Ok(Rollup {
        bucket_s,
        rows,
        evidence,
    })
}

/// Keeps every failing destination and the busiest others, folding the rest into one.
fn bounded(destinations: HashMap<String, Counters>, kind: RowKind) -> Vec<(String, Counters)> {
    let failing = |c: &Counters| c.iter().any(|(o, (n, _))| *n > 0 && is_failure(kind, o));
    let total = |c: &Counters| c.values().map(|(n, _)| *n).sum::<u64>();
    let (mut kept, mut healthy): (Vec<_>, Vec<_>) =
        destinations.into_iter().partition(|(_, c)| failing(c));
    // Busiest first; equal ones by name, so the same traffic keeps the same names.
    healthy.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let rest = healthy.split_off(healthy.len().min(KEPT_DESTINATIONS));
    kept.extend(healthy);
    if !rest.is_empty() {
        let mut other = Counters::new();
        for (_, counters) in rest {
            for (outcome, (n, l)) in counters {
                let e = other.entry(outcome).or_default();
                e.0 = e.0.saturating_add(n);
                e.1.add(l);
            }
        }
        kept.push((OTHER_DESTINATIONS.to_string(), other));
    }
    kept
}

/// Whether `outcome` (a contract spelling) of `kind` is a failure.
pub fn is_failure(kind: RowKind, outcome: &str) -> bool {
    match kind {
        RowKind::Connection => Outcome::ALL
            .iter()
            .any(|o| o.as_str() == outcome && o.is_failure()),
        RowKind::Dns => DnsOutcome::ALL
            .iter()
            .any(|o| o.as_str() == outcome && o.is_failure()),
    }
}

fn pod_of(scope: &Scope) -> String {
    match (&scope.namespace, &scope.pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
        _ => String::new(),
    }
}
