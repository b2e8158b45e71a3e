//! Prometheus metrics (`GET /metrics`), counted as reports arrive.
//!
//! Counters start at zero with the controller, as Prometheus expects; the SQLite store is the
//! history. Per-pod labels are what alerts need ("pod X: DNS failures rising"); their number is
//! bounded by the pods that made traffic.

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
    attempts: Family<ConnectionLabels, Counter>,
    lookups: Family<DnsLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
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
            attempts,
            lookups,
            findings,
        }
    }
}

impl Metrics {
    /// Adds a stored report.
    pub fn count(&self, r: &NodeReport) {
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
            family.get_or_create(&node).inc_by(n);
        }
        self.interfaces
            .get_or_create(&node)
            .set(d.interfaces.min(i64::MAX as u64) as i64);
        self.last_report
            .get_or_create(&node)
            .set((r.window_end_ns / 1_000_000_000) as i64);
        let who = |s: &outflow_core::wire::Scope| {
            (
                s.namespace.clone().unwrap_or_default(),
                s.pod.clone().unwrap_or_default(),
            )
        };
        for c in &r.connections {
            let (namespace, pod) = who(&c.scope);
            for (outcome, n) in &c.record.outcomes {
                let labels = ConnectionLabels {
                    node: r.node.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    category: c.record.category.as_str().to_string(),
                    outcome: outcome.to_string(),
                };
                self.attempts.get_or_create(&labels).inc_by(*n);
            }
        }
        for l in &r.dns {
            let (namespace, pod) = who(&l.scope);
            for (outcome, n) in &l.record.outcomes {
                let labels = DnsLabels {
                    node: r.node.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    outcome: outcome.to_string(),
                };
                self.lookups.get_or_create(&labels).inc_by(*n);
            }
        }
        for f in &r.findings {
            let labels = FindingLabels {
                node: r.node.clone(),
                kind: f.record.kind.clone(),
                severity: f.record.severity.as_str().to_string(),
            };
            self.findings.get_or_create(&labels).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
