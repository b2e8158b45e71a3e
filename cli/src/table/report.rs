//! `outflow analyze`'s text report: what was read, the findings, then the connection and DNS
//! tables.

use std::io::{self, Write};

use outflow_core::report::Report;

use super::records::{connection_columns, dns_columns, write_finding};
use super::write_view;
use super::Pick::{All, Wide};

/// Writes the whole report as text; `wide` adds columns and writes lists whole.
pub fn write_report(out: &mut impl Write, r: &Report, wide: bool) -> io::Result<()> {
    let c = &r.capture;
    writeln!(
        out,
        "capture: {} packets ({} IP{}, {} duplicates, {} not IP, {} undecodable){}",
        c.packets,
        c.ip_packets,
        match (c.tunnelled, c.tunnel_truncated) {
            (0, 0) => String::new(),
            (n, 0) => format!(", {n} of them from tunnels"),
            (n, cut) => format!(", {n} of them from tunnels, {cut} cut inside a tunnel"),
        },
        c.duplicates,
        c.non_ip,
        c.undecodable + c.truncated_frames + c.unsupported_link,
        match (&c.first_seen, &c.last_seen) {
            (Some(a), Some(b)) => format!(", {a} → {b}"),
            _ => String::new(),
        }
    )?;
    writeln!(out)?;
    if r.findings.is_empty() {
        writeln!(out, "FINDINGS: none")?;
    } else {
        writeln!(out, "FINDINGS ({})", r.findings.len())?;
        for f in &r.findings {
            write_finding(out, f, None, wide)?;
        }
    }
    writeln!(out)?;

    writeln!(out, "CONNECTIONS ({})", r.connections.len())?;
    let mut view = vec![
        All("SRC"),
        All("DST"),
        All("PORT"),
        All("PROTO"),
        All("CATEGORY"),
        All("OUTCOMES"),
        All("SYN-RTX"),
        All("HANDSHAKE"),
        All("PKTS OUT/IN"),
        All("BYTES OUT/IN"),
        Wide("EGRESS"),
        Wide("ICMP FROM"),
        Wide("FIRST SEEN"),
        Wide("LAST SEEN"),
        All("NAMES / APP"),
    ];
    if r.connections.iter().any(|c| c.tunnel.is_some()) {
        // A capture on an overlay's uplink: the nodes each connection crossed between.
        view.insert(1, All("TUNNEL"));
    }
    write_view(out, &connection_columns(), &view, &r.connections, wide)?;
    writeln!(out)?;

    writeln!(out, "DNS LOOKUPS ({})", r.dns.len())?;
    let view = [
        All("CLIENT"),
        All("NAME"),
        All("TYPE"),
        All("OUTCOMES"),
        All("SERVERS"),
        All("LATENCY"),
        All("EXPANSIONS"),
        All("QUERIES"),
        Wide("RESOLVED AS"),
        Wide("TRANSPORT"),
        Wide("FIRST SEEN"),
        Wide("LAST SEEN"),
        All("ANSWERS"),
    ];
    write_view(out, &dns_columns(), &view, &r.dns, wide)
}
