//! A window's engine report becomes a node report: each record gets its pod, node and window,
//! and the report lists the node's pods.

use outflow_core::report::{rfc3339, Report};
use std::collections::HashMap;

use outflow_core::wire::{DatapathStats, NodePod, NodeReport, PodLink, Scope, Scoped};

use crate::inventory::Inventory;

/// Attributes every record of `report` to the pod holding its source (the client).
pub fn node_report(
    node: &str,
    (start_ns, end_ns): (u64, u64),
    report: Report,
    inventory: &dyn Inventory,
    datapath: DatapathStats,
    pods: Vec<NodePod>,
) -> NodeReport {
    let (window_start, window_end) = (rfc3339(start_ns), rfc3339(end_ns));
    let scope = |ip: Option<std::net::IpAddr>| {
        let pod = ip.and_then(|ip| inventory.pod_of(ip));
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
    NodeReport {
        node: node.to_string(),
        report_id: None,
        window_start_ns: start_ns,
        window_end_ns: end_ns,
        connections: report
            .connections
            .into_iter()
            .map(|c| Scoped {
                scope: scope(Some(c.src)),
                record: c,
            })
            .collect(),
        dns: report
            .dns
            .into_iter()
            .map(|d| Scoped {
                scope: scope(Some(d.client)),
                record: d,
            })
            .collect(),
        findings: report
            .findings
            .into_iter()
            .map(|f| Scoped {
                scope: scope(f.src),
                record: f,
            })
            .collect(),
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
