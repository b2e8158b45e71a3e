//! Connection and DNS records as columns, and findings as blocks: one definition of each, used by
//! `analyze` (records of one capture) and by the query commands (records with the pod, node and
//! window they came from).

use std::io::{self, Write};
use std::net::IpAddr;

use outflow_core::report::{ConnectionRecord, DnsRecord, Finding, Latency};
use outflow_core::wire::{Scope, Scoped};

use super::Pick::{All, Wide};
use super::{human, listed, or_dash, outcomes, write_view, Column};

/// How many names or answers a table cell shows before `+N`.
const DIGEST: usize = 3;

/// Every column a connection record has.
pub fn connection_columns() -> Vec<Column<ConnectionRecord>> {
    vec![
        Column::new("SRC", |c: &ConnectionRecord, _| c.src.to_string()),
        Column::new("DST", |c: &ConnectionRecord, _| c.dst.to_string()),
        Column::new("PORT", |c: &ConnectionRecord, _| c.dst_port.to_string()),
        Column::new("PROTO", |c: &ConnectionRecord, _| c.proto.clone()),
        Column::new("DESTINATION", |c: &ConnectionRecord, _| {
            format!("{}/{}", endpoint(c.dst, c.dst_port), c.proto)
        }),
        Column::new("CATEGORY", |c: &ConnectionRecord, _| match &c.label {
            Some(l) => format!("{}({l})", c.category.as_str()),
            None => c.category.as_str().to_string(),
        }),
        Column::new("OUTCOMES", |c: &ConnectionRecord, _| {
            let mut oc = outcomes(&c.outcomes);
            if !c.unreachable_codes.is_empty() {
                let codes: Vec<&str> = c.unreachable_codes.keys().map(String::as_str).collect();
                oc += &format!(" ({})", codes.join(","));
            }
            oc
        }),
        Column::new("SYN-RTX", |c: &ConnectionRecord, _| {
            c.syn_retransmissions.to_string()
        }),
        Column::new("HANDSHAKE", |c: &ConnectionRecord, wide| {
            latency(c.handshake_ms.as_ref(), wide)
        }),
        Column::new("PKTS OUT/IN", |c: &ConnectionRecord, _| {
            format!("{}/{}", c.packets_out, c.packets_in)
        }),
        Column::new("BYTES OUT/IN", |c: &ConnectionRecord, _| {
            format!("{}/{}", human(c.bytes_out), human(c.bytes_in))
        }),
        Column::new("EGRESS", |c: &ConnectionRecord, _| {
            or_dash(c.egress.as_deref())
        }),
        Column::new("ICMP FROM", |c: &ConnectionRecord, wide| {
            listed(&c.icmp_from, DIGEST, wide)
        }),
        Column::new("FIRST SEEN", |c: &ConnectionRecord, _| c.first_seen.clone()),
        Column::new("LAST SEEN", |c: &ConnectionRecord, _| c.last_seen.clone()),
        Column::new("TUNNEL", |c: &ConnectionRecord, _| match &c.tunnel {
            // Which node sent the client's packets to which: "vxlan 42 10.224.0.4→10.224.0.5".
            Some(t) => {
                let id = t.id.map(|id| format!(" {id}")).unwrap_or_default();
                format!("{}{id} {}→{}", t.kind, t.outer_src, t.outer_dst)
            }
            None => "-".into(),
        }),
        Column::new("NAMES / APP", |c: &ConnectionRecord, wide| {
            // Who the destination is in the cluster first, then what DNS called it.
            let mut app: Vec<String> = c.destination.iter().cloned().collect();
            if !c.names.is_empty() {
                app.push(listed(&c.names, DIGEST, wide));
            }
            if !c.http_statuses.is_empty() {
                app.push(format!("http {}", outcomes(&c.http_statuses)));
            }
            for p in &c.proxy_connects {
                app.push(format!("CONNECT {} {}", p.target, outcomes(&p.statuses)));
            }
            if app.is_empty() {
                "-".into()
            } else {
                app.join(" ")
            }
        }),
    ]
}

/// Every column a DNS lookup record has.
pub fn dns_columns() -> Vec<Column<DnsRecord>> {
    vec![
        Column::new("CLIENT", |d: &DnsRecord, _| d.client.to_string()),
        Column::new("NAME", |d: &DnsRecord, _| d.name.clone()),
        Column::new("TYPE", |d: &DnsRecord, _| d.qtype.clone()),
        Column::new("OUTCOMES", |d: &DnsRecord, _| outcomes(&d.outcomes)),
        Column::new("SERVERS", |d: &DnsRecord, _| {
            listed(&d.servers, usize::MAX, true)
        }),
        Column::new("LATENCY", |d: &DnsRecord, wide| {
            latency(d.latency_ms.as_ref(), wide)
        }),
        Column::new("EXPANSIONS", |d: &DnsRecord, _| d.expansions.to_string()),
        Column::new("QUERIES", |d: &DnsRecord, _| d.queries.to_string()),
        Column::new("RESOLVED AS", |d: &DnsRecord, _| {
            or_dash(d.resolved_as.as_deref())
        }),
        Column::new("TRANSPORT", |d: &DnsRecord, _| d.transport.clone()),
        Column::new("FIRST SEEN", |d: &DnsRecord, _| d.first_seen.clone()),
        Column::new("LAST SEEN", |d: &DnsRecord, _| d.last_seen.clone()),
        Column::new("ANSWERS", |d: &DnsRecord, wide| {
            listed(&d.answers, DIGEST, wide)
        }),
    ]
}

/// A latency summary: the average in a table; min/avg/max and how many in wide output.
fn latency(l: Option<&Latency>, wide: bool) -> String {
    match l {
        None => "-".into(),
        Some(l) if wide => format!("{:.2}/{:.2}/{:.2}ms×{}", l.min, l.avg, l.max, l.count),
        Some(l) => format!("{:.2}ms", l.avg),
    }
}

/// `ADDR:PORT`, with brackets around an IPv6 address as in a URL.
fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `NAMESPACE/POD`, or `-` when the source is no known pod.
fn pod(s: &Scope) -> String {
    match (&s.namespace, &s.pod) {
        (Some(ns), Some(p)) => format!("{ns}/{p}"),
        _ => "-".to_string(),
    }
}

/// The scope columns, then the record's own.
fn scoped<T: 'static>(record: Vec<Column<T>>) -> Vec<Column<Scoped<T>>> {
    let mut cols = vec![
        Column::new("WINDOW END", |r: &Scoped<T>, _| r.scope.window_end.clone()),
        Column::new("WINDOW START", |r: &Scoped<T>, _| {
            r.scope.window_start.clone()
        }),
        Column::new("POD", |r: &Scoped<T>, _| pod(&r.scope)),
        Column::new("NODE", |r: &Scoped<T>, _| r.scope.node.clone()),
    ];
    cols.extend(record.into_iter().map(|c| c.map(|r: &Scoped<T>| &r.record)));
    cols
}

/// `outflow connections`: where each pod connected, and how that went.
pub fn write_connections(
    out: &mut impl Write,
    rows: &[Scoped<ConnectionRecord>],
    wide: bool,
) -> io::Result<()> {
    let view = [
        All("WINDOW END"),
        All("POD"),
        All("NODE"),
        Wide("SRC"),
        All("DESTINATION"),
        All("CATEGORY"),
        All("OUTCOMES"),
        All("SYN-RTX"),
        All("HANDSHAKE"),
        Wide("PKTS OUT/IN"),
        Wide("BYTES OUT/IN"),
        Wide("EGRESS"),
        Wide("ICMP FROM"),
        Wide("FIRST SEEN"),
        Wide("LAST SEEN"),
        All("NAMES / APP"),
    ];
    write_view(out, &scoped(connection_columns()), &view, rows, wide)
}

/// `outflow dns`: what each pod looked up, and what it got.
pub fn write_dns(out: &mut impl Write, rows: &[Scoped<DnsRecord>], wide: bool) -> io::Result<()> {
    let view = [
        All("WINDOW END"),
        All("POD"),
        Wide("NODE"),
        Wide("CLIENT"),
        All("NAME"),
        All("TYPE"),
        All("OUTCOMES"),
        All("SERVERS"),
        All("LATENCY"),
        Wide("EXPANSIONS"),
        Wide("QUERIES"),
        Wide("RESOLVED AS"),
        Wide("TRANSPORT"),
        Wide("FIRST SEEN"),
        Wide("LAST SEEN"),
        All("ANSWERS"),
    ];
    write_view(out, &scoped(dns_columns()), &view, rows, wide)
}

/// `outflow findings`: each finding as `analyze` writes it, under the pod, node and window it
/// came from.
pub fn write_findings(
    out: &mut impl Write,
    rows: &[Scoped<Finding>],
    wide: bool,
) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "FINDINGS: none");
    }
    writeln!(out, "FINDINGS ({})", rows.len())?;
    for r in rows {
        let s = &r.scope;
        let whence = format!("{} on {}, window ending {}", pod(s), s.node, s.window_end);
        write_finding(out, &r.record, Some(&whence), wide)?;
    }
    Ok(())
}

/// One finding: its severity and sentence, then its evidence and next checks, numbered.
/// `whence` says where it was seen, when that is not the whole input; wide output adds the
/// finding's kind, target and count (what a script would match on).
pub fn write_finding(
    out: &mut impl Write,
    f: &Finding,
    whence: Option<&str>,
    wide: bool,
) -> io::Result<()> {
    let severity = f.severity.as_str().to_uppercase();
    match whence {
        Some(w) => writeln!(out, "  [{severity}] {w}:\n      {}", f.message)?,
        None => writeln!(out, "  [{severity}] {}", f.message)?,
    }
    if wide {
        writeln!(
            out,
            "      kind: {}, target: {}, category: {}, count: {}",
            f.kind,
            or_dash(f.target.as_deref()),
            f.category.map_or("-", |c| c.as_str()),
            f.count
        )?;
    }
    for e in &f.evidence {
        writeln!(out, "      evidence: {e}")?;
    }
    for (i, n) in f.next_checks.iter().enumerate() {
        writeln!(out, "      next {}: {n}", i + 1)?;
    }
    Ok(())
}
