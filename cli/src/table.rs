//! The human-readable report: three tables and the findings. For people; the JSON is the contract.

use std::io::{self, Write};

use outflow_core::report::{ConnectionRecord, DnsRecord, Report};

/// Writes the whole report as text.
pub fn write_report(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let c = &r.capture;
    writeln!(
        out,
        "capture: {} packets ({} IP, {} duplicates, {} not IP, {} undecodable){}",
        c.packets,
        c.ip_packets,
        c.duplicates,
        c.non_ip,
        c.undecodable + c.truncated_frames + c.unsupported_link,
        match (&c.first_seen, &c.last_seen) {
            (Some(a), Some(b)) => format!(", {a} → {b}"),
            _ => String::new(),
        }
    )?;
    writeln!(out)?;
    write_findings(out, r)?;
    write_connections(out, &r.connections)?;
    writeln!(out)?;
    write_dns(out, &r.dns)
}

fn write_findings(out: &mut impl Write, r: &Report) -> io::Result<()> {
    if r.findings.is_empty() {
        writeln!(out, "FINDINGS: none\n")?;
        return Ok(());
    }
    writeln!(out, "FINDINGS ({})", r.findings.len())?;
    for f in &r.findings {
        writeln!(
            out,
            "  [{}] {}",
            f.severity.as_str().to_uppercase(),
            f.message
        )?;
        for e in &f.evidence {
            writeln!(out, "      evidence: {e}")?;
        }
        for (i, n) in f.next_checks.iter().enumerate() {
            writeln!(out, "      next {}: {n}", i + 1)?;
        }
    }
    writeln!(out)
}

pub fn outcomes(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_connections(out: &mut impl Write, conns: &[ConnectionRecord]) -> io::Result<()> {
    writeln!(out, "CONNECTIONS ({})", conns.len())?;
    let header = [
        "SRC",
        "DST",
        "PORT",
        "PROTO",
        "CATEGORY",
        "OUTCOMES",
        "SYN-RTX",
        "HANDSHAKE",
        "PKTS OUT/IN",
        "BYTES OUT/IN",
        "NAMES / APP",
    ];
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            let mut oc = outcomes(&c.outcomes);
            if !c.unreachable_codes.is_empty() {
                oc += &format!(
                    " ({})",
                    c.unreachable_codes
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            let mut app: Vec<String> = c.names.iter().take(3).cloned().collect();
            if !c.http_statuses.is_empty() {
                app.push(format!("http {}", outcomes(&c.http_statuses)));
            }
            for p in &c.proxy_connects {
                app.push(format!("CONNECT {} {}", p.target, outcomes(&p.statuses)));
            }
            let mut category = c.category.as_str().to_string();
            if let Some(l) = &c.label {
                category += &format!("({l})");
            }
            vec![
                c.src.to_string(),
                c.dst.to_string(),
                c.dst_port.to_string(),
                c.proto.clone(),
                category,
                oc,
                c.syn_retransmissions.to_string(),
                c.handshake_ms
                    .map_or("-".into(), |h| format!("{:.2}ms", h.avg)),
                format!("{}/{}", c.packets_out, c.packets_in),
                format!("{}/{}", human(c.bytes_out), human(c.bytes_in)),
                if app.is_empty() {
                    "-".into()
                } else {
                    app.join(" ")
                },
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

fn write_dns(out: &mut impl Write, dns: &[DnsRecord]) -> io::Result<()> {
    writeln!(out, "DNS LOOKUPS ({})", dns.len())?;
    let header = [
        "CLIENT",
        "NAME",
        "TYPE",
        "OUTCOMES",
        "SERVERS",
        "LATENCY",
        "EXPANSIONS",
        "QUERIES",
        "ANSWERS",
    ];
    let rows: Vec<Vec<String>> = dns
        .iter()
        .map(|d| {
            vec![
                d.client.to_string(),
                d.name.clone(),
                d.qtype.clone(),
                outcomes(&d.outcomes),
                joined(&d.servers),
                d.latency_ms
                    .map_or("-".into(), |l| format!("{:.2}ms", l.avg)),
                d.expansions.to_string(),
                d.queries.to_string(),
                if d.answers.is_empty() {
                    "-".into()
                } else {
                    d.answers
                        .iter()
                        .take(3)
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

pub fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s += cell;
            } else {
                s += &format!("{cell:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / 1024.0),
        b => b.to_string(),
    }
}

/// Items separated by commas (DNS servers, answers).
pub fn joined<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The captures a controller holds, newest first.
pub fn write_captures(
    out: &mut impl Write,
    captures: &[outflow_core::wire::captures::CaptureInfo],
) -> io::Result<()> {
    let header = [
        "ID",
        "STATE",
        "NODE",
        "POD / INTERFACE",
        "FILTER",
        "PACKETS",
        "SIZE",
        "CREATED",
        "REASON",
    ];
    let rows: Vec<Vec<String>> = captures
        .iter()
        .map(|c| {
            let what = match (&c.spec.pod, &c.spec.interface) {
                (Some(p), Some(i)) => format!("{p} ({i})"),
                (Some(p), None) => p.clone(),
                (None, Some(i)) => i.clone(),
                (None, None) => "-".into(),
            };
            vec![
                c.id.to_string(),
                c.state.to_string(),
                c.node.clone(),
                what,
                if c.spec.filter.is_empty() {
                    "-".into()
                } else {
                    c.spec.filter.clone()
                },
                c.packets.to_string(),
                human(c.bytes),
                outflow_core::report::rfc3339(c.created_ns),
                c.reason
                    .clone()
                    .or_else(|| c.warning.clone())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}
