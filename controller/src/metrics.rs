//! Prometheus metrics (`GET /metrics`), counted as reports arrive.
//!
//! Counters start at zero with the controller, as Prometheus expects; the SQLite store is the
//! history. The number of series is bounded for a cluster of 5,000 nodes: connection and DNS
//! series are per namespace, category and outcome (per node and pod only when asked for,
//! `--metrics-pods`), the datapath's are per node, and series not fed for an hour go.

use std::collections::HashMap;

use outflow_core::wire::NodeReport;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    node: String,
    namespace: String,
    pod: String,
    category: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    node: String,
    namespace: String,
    pod: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    node: String,
    kind: String,
    severity: String,
}

type PerNode = Family<NodeLabels, Counter>;

/// The registry and the families fed from reports.
pub struct Metrics {
    registry: Registry,
    reports: PerNode,
    packets: PerNode,
    events: PerNode,
    event_drops: PerNode,
    flows_evicted: PerNode,
    flow_map_full: PerNode,
    attach_errors: PerNode,
    reports_dropped: PerNode,
    dns_malformed: PerNode,
    undecodable: PerNode,
    interfaces: Family<NodeLabels, Gauge>,
    last_report: Family<NodeLabels, Gauge>,
    stale: Family<NodeLabels, Gauge>,
    overloaded: Counter,
    batches: Counter,
    abandoned: Counter,
    attempts: Family<ConnectionLabels, Counter>,
    lookups: Family<DnsLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    /// Whether connection and DNS series carry node and pod labels.
    pod_labels: bool,
    /// Each node's last window end and report interval (for staleness), and when each series
    /// of the labelled families was last fed.
    nodes_last: HashMap<String, (u64, Option<u64>)>,
    nodes_seen: HashMap<String, u64>,
    attempts_seen: HashMap<ConnectionLabels, u64>,
    lookups_seen: HashMap<DnsLabels, u64>,
    findings_seen: HashMap<FindingLabels, u64>,
    next_sweep_ns: u64,
}

/// How long a series stays without being fed: an hour, so a node that stops reporting keeps
/// its series (and alerts on them fire) well past any scrape interval, then they go.
pub const SERIES_TTL_NS: u64 = 3_600 * 1_000_000_000;
/// How often expired series are looked for.
const SWEEP_EVERY_NS: u64 = 60 * 1_000_000_000;

/// Adds `n` to a counter, stopping at the largest value rather than wrapping to zero (a
/// counter that falls reads as a reset, and a hostile count must not fake one).
fn add(counter: &Counter, n: u64) {
    counter.inc_by(n.min(u64::MAX - counter.get()));
}

/// Removes the series of `family` last fed before `cutoff`.
fn expire_family<L>(family: &Family<L, Counter>, seen: &mut HashMap<L, u64>, cutoff: u64)
where
    L: Clone + std::hash::Hash + Eq,
{
    seen.retain(|labels, at| {
        let keep = *at >= cutoff;
        if !keep {
            family.remove(labels);
        }
        keep
    });
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("outflow");
        let mut per_node = |name: &str, help: &str| {
            let f = PerNode::default();
            registry.register(name, help, f.clone());
            f
        };
        let reports = per_node("reports", "Window reports received from the node's agent");
        let packets = per_node("datapath_packets", "Packets the node's datapath saw");
        let events = per_node(
            "datapath_events",
            "Control and DNS packets sent to user space",
        );
        let event_drops = per_node(
            "datapath_event_drops",
            "Events lost because the ring buffer (or libpcap's buffer) was full",
        );
        let flows_evicted = per_node(
            "datapath_flows_evicted",
            "Flow entries the kernel map pushed out before the agent read them",
        );
        let flow_map_full = per_node(
            "datapath_flow_map_full",
            "Flow entries that could not be created",
        );
        let attach_errors = per_node(
            "datapath_attach_errors",
            "Pod interfaces the agent failed to attach to",
        );
        let reports_dropped = per_node(
            "agent_reports_dropped",
            "Reports the agent dropped while the controller was unreachable",
        );
        let dns_malformed = per_node(
            "dns_malformed",
            "DNS messages the engine could not parse (malformed, or cut)",
        );
        let undecodable = per_node("undecodable_frames", "Frames whose headers were malformed");
        let interfaces = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "datapath_interfaces",
            "Pod interfaces watched",
            interfaces.clone(),
        );
        let last_report = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "last_report_timestamp_seconds",
            "End of the node's last report window (Unix seconds)",
            last_report.clone(),
        );
        let stale = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "node_stale",
            "1 when the node's agent missed several report intervals, else 0",
            stale.clone(),
        );
        let overloaded = Counter::default();
        registry.register(
            "reports_refused_overloaded",
            "Reports refused because the controller was storing as many as it may at once",
            overloaded.clone(),
        );
        let batches = Counter::default();
        registry.register(
            "store_batches",
            "Transactions that stored reports; reports over batches is how many share a commit",
            batches.clone(),
        );
        let abandoned = Counter::default();
        registry.register(
            "reports_abandoned",
            "Reports not stored because their request was gone before their turn (the agent \
             timed out and sends them again)",
            abandoned.clone(),
        );
        let attempts = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "connection_attempts",
            "Connection attempts by pod, destination category and outcome",
            attempts.clone(),
        );
        let lookups = Family::<DnsLabels, Counter>::default();
        registry.register(
            "dns_lookups",
            "DNS lookups (folded across the search list) by pod and outcome",
            lookups.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "findings",
            "Findings raised, by kind and severity",
            findings.clone(),
        );
        Metrics {
            registry,
            reports,
            packets,
            events,
            event_drops,
            flows_evicted,
            flow_map_full,
            attach_errors,
            reports_dropped,
            dns_malformed,
            undecodable,
            interfaces,
            last_report,
            stale,
            overloaded,
            batches,
            abandoned,
            attempts,
            lookups,
            findings,
            pod_labels: false,
            nodes_last: HashMap::new(),
            nodes_seen: HashMap::new(),
            attempts_seen: HashMap::new(),
            lookups_seen: HashMap::new(),
            findings_seen: HashMap::new(),
            next_sweep_ns: 0,
        }
    }
}

impl Metrics {
    /// Metrics with pod and node labels on the connection and DNS series (`--metrics-pods`):
    /// useful on a small cluster, a series per pod and outcome on a large one.
    pub fn with_pod_labels() -> Metrics {
        Metrics {
            pod_labels: true,
            ..Metrics::default()
        }
    }

    /// Adds a stored report at `now_ns` (the controller's clock); series not fed for
    /// [`SERIES_TTL_NS`] are dropped.
    pub fn count(&mut self, r: &NodeReport, now_ns: u64) {
        let node = NodeLabels {
            node: r.node.clone(),
        };
        let d = &r.datapath;
        self.reports.get_or_create(&node).inc();
        for (family, n) in [
            (&self.packets, d.packets),
            (&self.events, d.events),
            (&self.event_drops, d.event_drops),
            (&self.flows_evicted, d.flows_evicted),
            (&self.flow_map_full, d.flow_map_full),
            (&self.attach_errors, d.attach_errors),
            (&self.reports_dropped, d.reports_dropped),
            (&self.dns_malformed, r.capture.dns_malformed),
            (&self.undecodable, r.capture.undecodable),
        ] {
            add(&family.get_or_create(&node), n);
        }
        self.interfaces
            .get_or_create(&node)
            .set(d.interfaces.min(i64::MAX as u64) as i64);
        self.last_report
            .get_or_create(&node)
            .set((r.window_end_ns / 1_000_000_000) as i64);
        self.nodes_seen.insert(r.node.clone(), now_ns);
        self.nodes_last
            .insert(r.node.clone(), (r.window_end_ns, d.interval_ns));
        // Without pod labels the series are per namespace: bounded by namespaces, not pods.
        let pod_labels = self.pod_labels;
        let who = |s: &outflow_core::wire::Scope| {
            let namespace = s.namespace.clone().unwrap_or_default();
            match pod_labels {
                true => (r.node.clone(), namespace, s.pod.clone().unwrap_or_default()),
                false => (String::new(), namespace, String::new()),
            }
        };
        for c in &r.connections {
            let (node, namespace, pod) = who(&c.scope);
            for (outcome, n) in &c.record.outcomes {
                let labels = ConnectionLabels {
                    node: node.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    category: c.record.category.as_str().to_string(),
                    outcome: outcome.to_string(),
                };
                add(&self.attempts.get_or_create(&labels), *n);
                self.attempts_seen.insert(labels, now_ns);
            }
        }
        for l in &r.dns {
            let (node, namespace, pod) = who(&l.scope);
            for (outcome, n) in &l.record.outcomes {
                let labels = DnsLabels {
                    node: node.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    outcome: outcome.to_string(),
                };
                add(&self.lookups.get_or_create(&labels), *n);
                self.lookups_seen.insert(labels, now_ns);
            }
        }
        for f in &r.findings {
            let labels = FindingLabels {
                node: r.node.clone(),
                kind: f.record.kind.clone(),
                severity: f.record.severity.as_str().to_string(),
            };
            self.findings.get_or_create(&labels).inc();
            self.findings_seen.insert(labels, now_ns);
        }
        if now_ns >= self.next_sweep_ns {
            self.expire(now_ns);
            self.next_sweep_ns = now_ns + SWEEP_EVERY_NS;
        }
    }

    /// Counts a report refused because ingest was full.
    pub fn refused_overloaded(&self) {
        self.overloaded.inc();
    }

    /// Counts a transaction that stored reports.
    pub fn stored_batch(&self) {
        self.batches.inc();
    }

    /// Counts reports not stored because their request was gone.
    pub fn abandoned(&self, reports: u64) {
        self.abandoned.inc_by(reports);
    }

    /// Drops the series of nodes, pods and namespaces not reported for [`SERIES_TTL_NS`]: a
    /// gone node's series must not stay for the controller's lifetime.
    fn expire(&mut self, now_ns: u64) {
        let cutoff = now_ns.saturating_sub(SERIES_TTL_NS);
        let gone: Vec<String> = self
            .nodes_seen
            .iter()
            .filter(|(_, seen)| **seen < cutoff)
            .map(|(n, _)| n.clone())
            .collect();
        for node in gone {
            self.nodes_seen.remove(&node);
            self.nodes_last.remove(&node);
            let labels = NodeLabels { node };
            for family in [
                &self.reports,
                &self.packets,
                &self.events,
                &self.event_drops,
                &self.flows_evicted,
                &self.flow_map_full,
                &self.attach_errors,
                &self.reports_dropped,
                &self.dns_malformed,
                &self.undecodable,
            ] {
                family.remove(&labels);
            }
            self.interfaces.remove(&labels);
            self.last_report.remove(&labels);
            self.stale.remove(&labels);
        }
        expire_family(&self.attempts, &mut self.attempts_seen, cutoff);
        expire_family(&self.lookups, &mut self.lookups_seen, cutoff);
        expire_family(&self.findings, &mut self.findings_seen, cutoff);
    }

    /// The Prometheus text exposition at `now_ns`: staleness is a matter of the time of asking.
    pub fn render_at(&self, now_ns: u64) -> String {
        for (node, (last_end, interval)) in &self.nodes_last {
            let stale = outflow_core::wire::health::is_stale(*last_end, *interval, now_ns);
            self.stale
                .get_or_create(&NodeLabels { node: node.clone() })
                .set(stale as i64);
        }
        self.render()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outflow_core::report::{CaptureStats, ConnectionRecord};
    use outflow_core::wire::{DatapathStats, Scope, Scoped};
    use outflow_core::{Category, Outcome};

    fn report(node: &str, pod: &str, attempts: u64) -> NodeReport {
        let record: ConnectionRecord = serde_json::from_value(serde_json::json!({
            "src": "10.244.1.10", "dst": "203.0.113.7", "dst_port": 443, "proto": "tcp",
            "category": "public", "outcomes": {"unanswered": attempts},
            "syn_retransmissions": 0, "packets_out": 1, "packets_in": 0, "bytes_out": 60,
            "bytes_in": 0, "first_seen": "2026-12-07T10:00:00Z", "last_seen": "2026-12-07T10:00:01Z",
        }))
        .unwrap();
        assert_eq!(record.category, Category::Public);
        assert!(record.outcomes.contains_key(&Outcome::Unanswered));
        NodeReport {
            node: node.into(),
            report_id: None,
            window_start_ns: 0,
            window_end_ns: 1,
            connections: vec![Scoped {
                scope: Scope {
                    pod: Some(pod.into()),
                    namespace: Some("shop".into()),
                    node: node.into(),
                    ..Scope::default()
                },
                record,
            }],
            dns: vec![],
            findings: vec![],
            capture: CaptureStats::default(),
            datapath: DatapathStats {
                packets: u64::MAX,
                ..DatapathStats::default()
            },
            pods: vec![],
        }
    }

    fn series(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    #[test]
    fn many_pods_make_one_series_per_namespace_and_outcome() {
        let mut m = Metrics::default();
        for i in 0..500 {
            m.count(
                &report(&format!("node-{}", i % 50), &format!("web-{i}"), 1),
                0,
            );
        }
        assert_eq!(
            series(&m, "outflow_connection_attempts_total"),
            [
                r#"outflow_connection_attempts_total{node="",namespace="shop",pod="",category="public",outcome="unanswered"} 500"#
            ]
        );
    }

    #[test]
    fn a_huge_count_stops_at_the_largest_value_instead_of_wrapping() {
        let mut m = Metrics::default();
        m.count(&report("node-1", "web", u64::MAX), 0);
        m.count(&report("node-1", "web", 5), 0);
        let max = format!("{}", u64::MAX);
        for line in series(&m, "outflow_connection_attempts_total")
            .iter()
            .chain(&series(&m, "outflow_datapath_packets_total"))
        {
            assert!(line.ends_with(&max), "{line}");
        }
    }

    #[test]
    fn a_node_that_stopped_reporting_loses_its_series_after_the_ttl() {
        let mut m = Metrics::with_pod_labels();
        m.count(&report("gone", "old", 1), 0);
        m.count(&report("here", "web", 1), SERIES_TTL_NS / 2);
        assert!(m.render().contains(r#"node="gone""#));
        // The sweep comes with a report, after the TTL of the gone node's last one.
        m.count(&report("here", "web", 1), SERIES_TTL_NS + 1);
        let text = m.render();
        assert!(!text.contains(r#"node="gone""#), "{text}");
        assert!(
            text.contains(r#"outflow_reports_total{node="here"} 2"#),
            "{text}"
        );
    }
}
