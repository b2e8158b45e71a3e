//! States problems for a person: what fails, from where, to what, how often, the evidence, and
//! the next check to make.
//!
//! The next checks follow the AKS egress troubleshooting checklist: compare DNS from the pod, the
//! node and the upstream resolver; reach the destination by IP from the node; try other
//! destinations; then NetworkPolicy, security groups, route tables and firewall, proxy, and SNAT.
//! Azure's names for these (NSG, VNet peering, 168.63.129.16, load balancer SNAT metrics) are
//! used only when the profile says the cluster is AKS ([`Platform`]).

use std::net::IpAddr;

use rustc_hash::FxHashMap;

mod connection;
mod dns;

use connection::connection_findings;
use dns::dns_findings;

use crate::conn::Outcome;
use crate::decode::bits_ip;
use crate::dns::transaction::ServerStats;
use crate::profile::Platform;
use crate::report::{CaptureStats, ConnectionRecord, DnsRecord, Finding, Severity};

/// Builds the findings of a report, most severe first.
pub fn build(
    conns: &[ConnectionRecord],
    dns: &[DnsRecord],
    servers: &FxHashMap<u128, ServerStats>,
    stats: &CaptureStats,
    platform: Platform,
) -> Vec<Finding> {
    let mut out = Vec::new();
    // Which sources reach something: "the pod's own networking works" is evidence.
    let mut reaches: FxHashMap<IpAddr, u64> = FxHashMap::default();
    for c in conns {
        *reaches.entry(c.src).or_default() +=
            c.outcomes.get(&Outcome::Established).copied().unwrap_or(0);
    }
    for c in conns {
        connection_findings(
            c,
            reaches.get(&c.src).copied().unwrap_or(0),
            platform,
            &mut out,
        );
    }
    // Records come sorted by (client, name, qtype): one group per client and name.
    for group in dns.chunk_by(|a, b| a.client == b.client && a.name == b.name) {
        let group: Vec<&DnsRecord> = group.iter().collect();
        dns_findings(&group, servers, platform, &mut out);
    }
    for (server, s) in servers {
        if s.answered == 0 && s.timeouts > 0 {
            out.push(Finding {
                kind: "dns_server_unresponsive".into(),
                severity: if s.timeouts >= 2 { Severity::Error } else { Severity::Warning },
                // Live windows can hold a query's timeout without the query itself (sent in an
                // earlier window), so the timeouts are the count.
                message: format!(
                    "DNS server {} answered none of {} queries (all timed out)",
                    bits_ip(*server),
                    s.timeouts
                ),
                src: None,
                ingress_iface: None,
                target: Some(bits_ip(*server).to_string()),
                category: None,
                count: s.timeouts,
                evidence: vec![format!("{} queries timed out, {} answered", s.timeouts, s.answered)],
                next_checks: vec![
                    "Is this the right server? Compare the pod's /etc/resolv.conf nameserver with the kube-dns service IP".into(),
                    format!("From the node: `dig @{} kubernetes.default.svc.cluster.local`; if the node gets an answer, a NetworkPolicy blocks the pod's UDP/TCP 53", bits_ip(*server)),
                    "CoreDNS pods ready? `kubectl -n kube-system get pods -l k8s-app=kube-dns`".into(),
                    match platform {
                        Platform::Aks => "For the VNet resolver 168.63.129.16 or a custom DNS server: NSG and route table allow UDP/TCP 53 from the node subnet".into(),
                        Platform::Generic => "For an upstream or custom DNS server: security groups, firewalls and routes allow UDP/TCP 53 from the nodes".into(),
                    },
                ],
            });
        }
    }
    capture_findings(stats, &mut out);
    // Keys computed once and findings moved once: findings are large, comparisons many.
    out.sort_by_cached_key(|f| (f.severity, std::cmp::Reverse(f.count), f.message.clone()));
    out
}

fn capture_findings(stats: &CaptureStats, out: &mut Vec<Finding>) {
    for f in &stats.truncated_files {
        out.push(Finding {
            kind: "capture_truncated".into(),
            severity: Severity::Info,
            message: format!("{f} ends in the middle of a packet (the capture was cut off); everything before it was analysed"),
            src: None,
            ingress_iface: None,
            target: None,
            category: None,
            count: 1,
            evidence: vec![],
            next_checks: vec!["Stop captures with Ctrl-C or -c/-G so the last packet is written whole".into()],
        });
    }
    for e in &stats.errors {
        out.push(Finding {
            kind: "capture_unreadable".into(),
            severity: Severity::Warning,
            message: e.clone(),
            src: None,
            ingress_iface: None,
            target: None,
            category: None,
            count: 1,
            evidence: vec![],
            next_checks: vec![
                "Check the file with `capinfos`; `editcap` may recover the readable part".into(),
            ],
        });
    }
    if stats.snapped_frames > 0 && stats.dns_malformed > 0 {
        out.push(Finding {
            kind: "capture_snaplen".into(),
            severity: Severity::Warning,
            message: format!(
                "{} packets were cut at the capture's snapshot length and {} DNS messages could not be read; DNS and HTTP results are incomplete",
                stats.snapped_frames, stats.dns_malformed
            ),
            src: None,
            ingress_iface: None,
            target: None,
            category: None,
            count: stats.dns_malformed,
            evidence: vec![],
            next_checks: vec!["Capture whole packets: `tcpdump -s 0` (the default since tcpdump 4.0), or at least -s 512 for DNS".into()],
        });
    }
    let lost = stats.flows_evicted + stats.groups_dropped + stats.dns_dropped;
    if lost > 0 {
        out.push(Finding {
            kind: "state_limit_reached".into(),
            severity: Severity::Warning,
            message: format!(
                "state limits were reached: {} flows evicted, {} flows outside the connection-group limit and {} DNS lookups not recorded; counts may be low",
                stats.flows_evicted, stats.groups_dropped, stats.dns_dropped
            ),
            src: None,
            ingress_iface: None,
            target: None,
            category: None,
            count: lost,
            evidence: vec![],
            next_checks: vec!["Raise the limits (--max-flows) or analyse a narrower capture".into()],
        });
    }
}
