//! A window's engine report becomes a node report: each record gets its pod, node and window,
//! and the report lists the node's pods.
//!
//! A record's pod is the one behind the node-side interface its client's packets came through
//! (DESIGN.md §4.5); the source address only cross-checks it, and decides alone when the
//! interface is no pod's (the uplink, a bridge, or not known). An address can be spoofed or
//! still be routed to a pod that gave it up; the interface a packet entered the node by cannot.
//! Records of clients that are neither this node's pods nor the node, seen only on their way
//! into a pod here (a pod on another node asking this node's DNS pod), are left out: they are
//! the client's egress, which the client's own node reports.

use outflow_core::report::{rfc3339, Report};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use outflow_core::wire::{DatapathStats, NodePod, NodeReport, PodLink, Scope, Scoped};
use tracing::warn;

use crate::inventory::{Inventory, PodRef};

/// Pairs of pods already warned about: the interface named the first, the address the second.
/// Kept across windows, so a lasting disagreement is warned once and counted every window.
#[derive(Debug, Default)]
pub struct Mismatches {
    warned: HashSet<(PodRef, PodRef)>,
}

/// Most pairs remembered; past that, warnings repeat rather than memory grow.
const MAX_WARNED: usize = 1_024;

/// The pod a record is about: the one behind `iface` when it is a pod's, else the one holding
/// `ip`. Returns it and, when both name a pod and they differ, the address's pod.
pub fn attribute(
    inventory: &dyn Inventory,
    ip: Option<IpAddr>,
    iface: Option<u32>,
) -> (Option<&PodRef>, Option<&PodRef>) {
    let by_iface = iface.and_then(|i| inventory.pod_on_interface(i));
    let by_addr = ip.and_then(|ip| inventory.pod_of(ip));
    match (by_iface, by_addr) {
        (Some(i), Some(a)) if i != a => (Some(i), Some(a)),
        (Some(i), _) => (Some(i), None),
        (None, a) => (a, None),
    }
}

/// Attributes every record of `report` to its client's pod: by the interface its packets came
/// through, else by its source address. Records where the two disagree are counted in the
/// report's `attribution_mismatches`, and each new pair of pods is warned about once.
pub fn node_report(
    node: &str,
    (start_ns, end_ns): (u64, u64),
    report: Report,
    inventory: &dyn Inventory,
    mut datapath: DatapathStats,
    pods: Vec<NodePod>,
    mismatches: &mut Mismatches,
) -> NodeReport {
    let (window_start, window_end) = (rfc3339(start_ns), rfc3339(end_ns));
    let mut disagreed = 0u64;
    let warned = &mut mismatches.warned;
    // Findings repeat what their records said: they take the same pod, but are not counted
    // again.
    let mut scope = |ip: Option<IpAddr>, iface: Option<u32>, count: bool| {
        let (pod, other) = attribute(inventory, ip, iface);
        if let (Some(pod), Some(other), true) = (pod, other, count) {
            disagreed += 1;
            let pair = (pod.clone(), other.clone());
            if !warned.contains(&pair) {
                warn!(
                    interface = iface.unwrap_or_default(),
                    address = %ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    pod = %format!("{}/{}", pod.namespace, pod.name),
                    address_owner = %format!("{}/{}", other.namespace, other.name),
                    "packets came through one pod's interface with another pod's address: \
                     counted as the interface's pod (an address taken over, or spoofed)"
                );
                if warned.len() >= MAX_WARNED {
                    warned.clear();
                }
                warned.insert(pair);
            }
        }
        let details = pod.map(|p| inventory.details(p)).unwrap_or_default();
        Scope {
            pod: pod.map(|p| p.name.clone()),
            namespace: pod.map(|p| p.namespace.clone()),
            pod_uid: details.uid,
            workload: details.workload,
            host: pod.is_none() && ip.is_some_and(|ip| inventory.is_host(ip)),
            node: node.to_string(),
            window_start: window_start.clone(),
            window_end: window_end.clone(),
        }
    };
    let foreign = |ip: Option<IpAddr>, iface: Option<u32>| {
        iface.is_none()
            && ip.is_some_and(|ip| inventory.pod_of(ip).is_none() && !inventory.is_host(ip))
    };
    let connections = report
        .connections
        .into_iter()
        .filter(|c| !foreign(Some(c.src), c.ingress_iface))
        .map(|c| Scoped {
            scope: scope(Some(c.src), c.ingress_iface, true),
            record: c,
        })
        .collect();
    let dns = report
        .dns
        .into_iter()
        .filter(|d| !foreign(Some(d.client), d.ingress_iface))
        .map(|d| Scoped {
            scope: scope(Some(d.client), d.ingress_iface, true),
            record: d,
        })
        .collect();
    let findings = report
        .findings
        .into_iter()
        .filter(|f| !foreign(f.src, f.ingress_iface))
        .map(|f| Scoped {
            scope: scope(f.src, f.ingress_iface, false),
            record: f,
        })
        .collect();
    datapath.attribution_mismatches += disagreed;
    NodeReport {
        node: node.to_string(),
        report_id: None,
        window_start_ns: start_ns,
        window_end_ns: end_ns,
        connections,
        dns,
        findings,
        capture: report.capture,
        datapath,
        pods,
    }
}

/// The node's pods for a report: each with its addresses and node-side interfaces, and when the
/// datapath attached to each (`attached`: interface name → ns since the epoch).
pub fn node_pods(inventory: &dyn Inventory, attached: &HashMap<String, u64>) -> Vec<NodePod> {
    inventory
        .pods()
        .into_iter()
        .map(|(pod, addresses)| {
            // A pod whose interface cannot be found still counts: it is on the node.
            let interfaces = inventory
                .interfaces_of(&pod)
                .unwrap_or_default()
                .into_iter()
                .map(|i| PodLink {
                    attached_ns: attached.get(&i.node_side).copied(),
                    name: i.node_side,
                })
                .collect();
            let details = inventory.details(&pod);
            NodePod {
                uid: details.uid,
                workload: details.workload,
                namespace: pod.namespace,
                pod: pod.name,
                addresses,
                interfaces,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use outflow_core::conn::Outcome;
    use outflow_core::report::{ConnectionRecord, DnsRecord, Finding, Severity};

    use super::*;
    use crate::inventory::{PodInterface, PodRef};
    use crate::netlink::Link;

    /// Pods by address and by node-side interface index, as a test sets them.
    #[derive(Default)]
    struct Pods {
        by_addr: HashMap<IpAddr, PodRef>,
        by_iface: HashMap<u32, PodRef>,
        host: Vec<IpAddr>,
    }

    impl Inventory for Pods {
        fn refresh(&mut self, _node_links: &[Link]) {}
        fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
            self.by_addr.get(&ip)
        }
        fn pod_on_interface(&self, ifindex: u32) -> Option<&PodRef> {
            self.by_iface.get(&ifindex)
        }
        fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)> {
            Vec::new()
        }
        fn interfaces_of(&self, _pod: &PodRef) -> Result<Vec<PodInterface>, String> {
            Err("none".into())
        }
        fn is_host(&self, ip: IpAddr) -> bool {
            self.host.contains(&ip)
        }
    }

    fn pod(name: &str) -> PodRef {
        PodRef {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const WEB: &str = "10.244.1.5";
    const DB: &str = "10.244.1.6";
    /// web's node-side veth.
    const WEB_VETH: u32 = 7;
    /// db's node-side veth.
    const DB_VETH: u32 = 8;
    /// The node's uplink.
    const UPLINK: u32 = 2;

    fn pods() -> Pods {
        Pods {
            by_addr: [(ip(WEB), pod("web")), (ip(DB), pod("db"))].into(),
            by_iface: [(WEB_VETH, pod("web")), (DB_VETH, pod("db"))].into(),
            host: vec![ip("10.224.0.4")],
        }
    }

    fn conn(src: &str, iface: Option<u32>) -> ConnectionRecord {
        ConnectionRecord {
            src: ip(src),
            dst: ip("203.0.113.7"),
            dst_port: 443,
            proto: "tcp".into(),
            category: outflow_core::category::Category::Public,
            label: None,
            destination: None,
            egress: None,
            outcomes: BTreeMap::from([(Outcome::Unanswered, 1)]),
            unreachable_codes: BTreeMap::new(),
            icmp_from: vec![],
            syn_retransmissions: 0,
            handshake_ms: None,
            packets_out: 1,
            packets_in: 0,
            bytes_out: 60,
            bytes_in: 0,
            names: vec![],
            http_statuses: BTreeMap::new(),
            proxy_connects: vec![],
            tunnel: None,
            first_seen: String::new(),
            last_seen: String::new(),
            ingress_iface: iface,
        }
    }

    fn lookup(client: &str, iface: Option<u32>) -> DnsRecord {
        DnsRecord {
            client: ip(client),
            name: "api.example.com".into(),
            qtype: "A".into(),
            outcomes: BTreeMap::new(),
            servers: vec![],
            latency_ms: None,
            expansions: 0,
            queries: 1,
            resolved_as: None,
            answers: vec![],
            transport: "udp".into(),
            first_seen: String::new(),
            last_seen: String::new(),
            ingress_iface: iface,
        }
    }

    fn finding(src: &str, iface: Option<u32>) -> Finding {
        Finding {
            kind: "syn_unanswered".into(),
            severity: Severity::Error,
            message: String::new(),
            src: Some(ip(src)),
            target: None,
            category: None,
            count: 1,
            evidence: vec![],
            next_checks: vec![],
            ingress_iface: iface,
        }
    }

    fn scoped(inv: &Pods, report: Report, mismatches: &mut Mismatches) -> NodeReport {
        node_report(
            "node-1",
            (0, 1),
            report,
            inv,
            DatapathStats::default(),
            vec![],
            mismatches,
        )
    }

    fn names<T>(records: &[Scoped<T>]) -> Vec<Option<&str>> {
        records.iter().map(|r| r.scope.pod.as_deref()).collect()
    }

    #[test]
    fn the_interface_decides_when_it_is_a_pods() {
        let inv = Pods {
            by_addr: HashMap::new(),
            ..pods()
        };
        // The address is no pod's (not known yet): the veth still says whose the record is.
        let report = Report {
            connections: vec![conn(WEB, Some(WEB_VETH))],
            dns: vec![lookup(DB, Some(DB_VETH))],
            ..Report::default()
        };
        let r = scoped(&inv, report, &mut Mismatches::default());
        assert_eq!(names(&r.connections), [Some("web")]);
        assert_eq!(r.connections[0].scope.namespace.as_deref(), Some("shop"));
        assert_eq!(names(&r.dns), [Some("db")]);
        assert_eq!(r.datapath.attribution_mismatches, 0);
    }

    #[test]
    fn the_interface_wins_over_another_pods_address_and_the_disagreement_is_counted() {
        let inv = pods();
        // Through web's veth with db's address: db's address taken over, or spoofed.
        let report = Report {
            connections: vec![conn(DB, Some(WEB_VETH)), conn(WEB, Some(WEB_VETH))],
            dns: vec![lookup(DB, Some(WEB_VETH))],
            findings: vec![finding(DB, Some(WEB_VETH))],
            ..Report::default()
        };
        let mut mismatches = Mismatches::default();
        let r = scoped(&inv, report.clone(), &mut mismatches);
        assert_eq!(names(&r.connections), [Some("web"), Some("web")]);
        assert_eq!(names(&r.dns), [Some("web")]);
        assert_eq!(names(&r.findings), [Some("web")]);
        // Records counted, findings about them not again.
        assert_eq!(r.datapath.attribution_mismatches, 2);
        assert_eq!(mismatches.warned.len(), 1);
        // Counted again in the next window, warned once.
        let r = scoped(&inv, report, &mut mismatches);
        assert_eq!(r.datapath.attribution_mismatches, 2);
        assert_eq!(mismatches.warned.len(), 1);
    }

    #[test]
    fn the_address_decides_when_the_interface_is_no_pods() {
        let inv = pods();
        let report = Report {
            // The uplink, no interface known, and an address no pod holds.
            connections: vec![
                conn(WEB, Some(UPLINK)),
                conn(DB, None),
                conn("10.244.1.99", Some(UPLINK)),
            ],
            dns: vec![lookup(DB, Some(UPLINK))],
            findings: vec![finding(WEB, None)],
            ..Report::default()
        };
        let r = scoped(&inv, report, &mut Mismatches::default());
        assert_eq!(names(&r.connections), [Some("web"), Some("db"), None]);
        assert_eq!(names(&r.dns), [Some("db")]);
        assert_eq!(names(&r.findings), [Some("web")]);
        assert_eq!(r.datapath.attribution_mismatches, 0);
    }

    #[test]
    fn host_network_traffic_stays_the_nodes() {
        let inv = pods();
        let report = Report {
            connections: vec![conn("10.224.0.4", Some(UPLINK)), conn("10.224.0.4", None)],
            ..Report::default()
        };
        let r = scoped(&inv, report, &mut Mismatches::default());
        assert!(r
            .connections
            .iter()
            .all(|c| c.scope.host && c.scope.pod.is_none()));
    }

    #[test]
    fn a_client_from_elsewhere_seen_only_going_into_a_pod_is_left_out() {
        let inv = pods();
        // A pod on another node asks db: its packets came through no pod's interface here.
        let report = Report {
            connections: vec![conn("10.244.2.10", None), conn(WEB, None)],
            dns: vec![
                lookup("10.244.2.10", None),
                lookup("10.244.2.11", Some(UPLINK)),
            ],
            findings: vec![finding("10.244.2.10", None)],
            ..Report::default()
        };
        let r = scoped(&inv, report, &mut Mismatches::default());
        assert_eq!(names(&r.connections), [Some("web")]);
        assert_eq!(names(&r.dns), [None], "seen coming in by the uplink: kept");
        assert!(r.findings.is_empty());
    }
}
