//! The health table: a line per node, and with `-o wide` a line per pod under it.

use std::io::{self, Write};

use outflow_core::wire::health::Health;

use super::write_table;

/// Writes the nodes (and with `wide` their pods) as of `now_ns`.
pub fn write_health(out: &mut impl Write, h: &Health, wide: bool, now_ns: u64) -> io::Result<()> {
    let rows: Vec<Vec<String>> = h
        .nodes
        .iter()
        .map(|n| {
            let d = &n.datapath;
            let idle = n.pods.iter().filter(|p| p.idle).count();
            let t = &n.totals;
            let losses = [
                ("drops", t.event_drops),
                ("evicted", t.flows_evicted),
                ("map-full", t.flow_map_full),
                ("attach-errors", t.attach_errors),
                ("reports-dropped", t.reports_dropped),
                ("pod-mismatches", t.attribution_mismatches),
            ]
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>();
            vec![
                n.node.clone(),
                match n.stale {
                    true => format!("{} (stale)", age(now_ns, n.last_window_end_ns)),
                    false => age(now_ns, n.last_window_end_ns),
                },
                if d.reason.is_empty() || !wide {
                    d.kind.clone()
                } else {
                    format!("{} ({})", d.kind, d.reason)
                },
                d.interfaces.to_string(),
                format!("{} ({idle} idle)", n.pods.len()),
                if losses.is_empty() {
                    "-".into()
                } else {
                    losses.join(" ")
                },
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "NODE",
            "LAST REPORT",
            "DATAPATH",
            "INTERFACES",
            "PODS",
            "LOSSES",
        ],
        &rows,
    )?;
    if !wide {
        return Ok(());
    }
    let pods: Vec<Vec<String>> = h
        .nodes
        .iter()
        .flat_map(|n| {
            n.pods.iter().map(move |p| {
                vec![
                    format!("{}/{}", p.pod.namespace, p.pod.pod),
                    n.node.clone(),
                    p.pod.workload.clone().unwrap_or_else(|| "-".into()),
                    p.pod
                        .addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    p.pod
                        .interfaces
                        .iter()
                        .map(|i| i.name.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                    match (p.idle, p.last_traffic_ns) {
                        (true, _) => "idle".into(),
                        (false, Some(t)) => age(now_ns, t),
                        (false, None) => "-".into(),
                    },
                ]
            })
        })
        .collect();
    writeln!(out)?;
    write_table(
        out,
        &[
            "POD",
            "NODE",
            "WORKLOAD",
            "ADDRESSES",
            "INTERFACES",
            "LAST TRAFFIC",
        ],
        &pods,
    )
}

/// `12s ago`, `4m ago`, `3h ago`.
fn age(now_ns: u64, then_ns: u64) -> String {
    let s = now_ns.saturating_sub(then_ns) / 1_000_000_000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}
