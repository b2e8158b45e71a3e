//! States problems for a person: what fails, from where, to what, how often, the evidence, and
//! the next check to make.
//!
//! The next checks follow the AKS egress troubleshooting checklist: compare DNS from the pod, the
//! node and the upstream resolver (168.63.129.16); reach the destination by IP from the node; try
//! other destinations; then NetworkPolicy, NSG, route tables and firewall, proxy, and SNAT.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::category::Category;
use crate::decode::bits_ip;
use crate::dns::transaction::ServerStats;
use crate::report::{CaptureStats, ConnectionRecord, DnsRecord, Finding, Severity};

/// Builds the findings of a report, most severe first.
pub fn build(
    conns: &[ConnectionRecord],
    dns: &[DnsRecord],
    servers: &FxHashMap<u128, ServerStats>,
    stats: &CaptureStats,
) -> Vec<Finding> {
    let mut out = Vec::new();
    // Which sources reach something: "the pod's own networking works" is evidence.
    let mut reaches: FxHashMap<IpAddr, u64> = FxHashMap::default();
    for c in conns {
        *reaches.entry(c.src).or_default() += c.outcomes.get("established").copied().unwrap_or(0);
    }
    for c in conns {
        connection_findings(c, reaches.get(&c.src).copied().unwrap_or(0), &mut out);
    }
    // Records come sorted by (client, name, qtype): one group per client and name.
    for group in dns.chunk_by(|a, b| a.client == b.client && a.name == b.name) {
        let group: Vec<&DnsRecord> = group.iter().collect();
        dns_findings(&group, servers, &mut out);
    }
    for (server, s) in servers {
        if s.answered == 0 && s.timeouts > 0 {
            out.push(Finding {
                kind: "dns_server_unresponsive".into(),
                severity: if s.timeouts >= 2 { Severity::Error } else { Severity::Warning },
                message: format!(
                    "DNS server {} answered none of {} queries",
                    bits_ip(*server),
                    s.queries
                ),
                src: None,
                target: Some(bits_ip(*server).to_string()),
                category: None,
                count: s.queries,
                evidence: vec![format!("{} queries timed out, {} answered", s.timeouts, s.answered)],
                next_checks: vec![
                    "Is this the right server? Compare the pod's /etc/resolv.conf nameserver with the kube-dns service IP".into(),
                    format!("From the node: `dig @{} kubernetes.default.svc.cluster.local`; if the node gets an answer, a NetworkPolicy blocks the pod's UDP/TCP 53", bits_ip(*server)),
                    "CoreDNS pods ready? `kubectl -n kube-system get pods -l k8s-app=kube-dns`".into(),
                    "For the VNet resolver 168.63.129.16 or a custom DNS server: NSG and route table allow UDP/TCP 53 from the node subnet".into(),
                ],
            });
        }
    }
    capture_findings(stats, &mut out);
    out.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(b.count.cmp(&a.count))
            .then(a.message.cmp(&b.message))
    });
    out
}

fn target(c: &ConnectionRecord) -> String {
    let dst = match c.dst {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    format!("{dst}:{}/{}", c.dst_port, c.proto)
}

fn described(c: &ConnectionRecord) -> String {
    let mut s = format!("{} ({}", target(c), c.category.as_str());
    if let Some(l) = &c.label {
        s += &format!(", {l}");
    }
    if let Some(n) = c.names.first() {
        s += &format!(", {n}");
    }
    s + ")"
}

/// The next checks for a destination that does not answer, by where it sits.
fn unanswered_checks(c: &ConnectionRecord) -> Vec<String> {
    let t = format!("{}:{}", c.dst, c.dst_port);
    let mut v = vec![format!(
        "From the node: `curl -v telnet://{t}`. If the node connects, look at the pod's side (NetworkPolicy egress, the pod's routes); if it fails too, the block is below the node"
    )];
    match c.category {
        Category::Internal => v.extend([
            format!("Is something ready behind {}? `kubectl get endpoints`, `kubectl get pods -o wide`", c.dst),
            "NetworkPolicy: ingress rules of the destination's namespace and egress rules of the source's".into(),
            "For a node address: the NSG between node subnets, and that the port listens on the node".into(),
        ]),
        Category::Peered => v.extend([
            "VNet peering is Connected on both sides (and 'allow forwarded traffic' if a virtual appliance is in the path)".into(),
            "The NSG of the destination subnet allows the cluster's node and pod ranges".into(),
            "Route tables: a UDR may send peered traffic through a firewall that drops it".into(),
        ]),
        Category::OnPrem => v.extend([
            "VPN / ExpressRoute: the on-prem prefix is in the node NIC's effective routes, and the cluster's range is advertised back".into(),
            "The on-prem firewall allows the source: node IPs (kubenet SNATs pods) or pod IPs (Azure CNI)".into(),
            "NSG outbound rules of the node subnet".into(),
        ]),
        Category::Public => {
            match c.egress.as_deref() {
                Some("firewall") => v.push("Firewall (UDR egress): an application or network rule must allow this destination; its logs show the deny".into()),
                Some("proxy") => v.push("Egress is through a proxy: this connection went direct. Set HTTPS_PROXY/HTTP_PROXY in the pod, and NO_PROXY for cluster names".into()),
                Some("natGateway") => v.push("NAT gateway: associated with the node subnet, and not out of SNAT ports (metric 'SNAT Connection Count', state Failed)".into()),
                _ => v.push("Load balancer outbound rules: SNAT ports not exhausted (metric 'SNAT Connection Count', state Failed) and the outbound IP is allowed by the destination".into()),
            }
            v.push("NSG outbound rules of the node subnet, and any route table sending 0.0.0.0/0 elsewhere".into());
        }
    }
    v
}

fn connection_findings(c: &ConnectionRecord, src_established: u64, out: &mut Vec<Finding>) {
    let n = |k: &str| c.outcomes.get(k).copied().unwrap_or(0);
    let (est, refused, unreach, unans) = (
        n("established"),
        n("refused"),
        n("unreachable"),
        n("unanswered"),
    );
    let total: u64 = c.outcomes.values().sum();
    let sev = |failed: u64| {
        if failed > 0 && est == 0 {
            Severity::Error
        } else {
            Severity::Warning
        }
    };
    let mut base_evidence = Vec::new();
    if c.syn_retransmissions > 0 {
        base_evidence.push(format!("{} SYN retransmissions", c.syn_retransmissions));
    }
    if src_established > est {
        base_evidence.push(format!(
            "{} reached other destinations ({} established connections), so its own networking works",
            c.src,
            src_established - est
        ));
    }
    if unans > 0 {
        let mut evidence = vec![format!("{unans} of {total} attempts: SYN sent, no SYN-ACK, RST or ICMP error within the SYN timeout")];
        evidence.extend(base_evidence.clone());
        out.push(Finding {
            kind: "syn_unanswered".into(),
            severity: sev(unans),
            message: format!("{} → {}: {unans} of {total} connection attempts unanswered (SYNs dropped on the way or at the destination)", c.src, described(c)),
            src: Some(c.src),
            target: Some(target(c)),
            category: Some(c.category),
            count: unans,
            evidence,
            next_checks: unanswered_checks(c),
        });
    }
    if refused > 0 {
        let mut evidence = vec![format!("{refused} of {total} attempts answered by RST")];
        evidence.extend(base_evidence.clone());
        let checks = if c.category == Category::Internal {
            vec![
                format!("Nothing listens on {}:{}: `kubectl get endpoints`, and the Service's targetPort matches the container port", c.dst, c.dst_port),
                "The server listens on 0.0.0.0 (not 127.0.0.1) inside its pod".into(),
            ]
        } else {
            vec![
                format!("Nothing listens on {}:{} at the destination, or a firewall in the path answers with RST: check its logs", c.dst, c.dst_port),
                format!("From the node: `curl -v telnet://{}:{}` to see whether the node gets the same answer", c.dst, c.dst_port),
            ]
        };
        out.push(Finding {
            kind: "connection_refused".into(),
            severity: sev(refused),
            message: format!(
                "{} → {}: {refused} of {total} connection attempts refused (RST)",
                c.src,
                described(c)
            ),
            src: Some(c.src),
            target: Some(target(c)),
            category: Some(c.category),
            count: refused,
            evidence,
            next_checks: checks,
        });
    }
    if unreach > 0 {
        let codes: Vec<String> = c
            .unreachable_codes
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        let from: Vec<String> = c.icmp_from.iter().map(|a| a.to_string()).collect();
        let prohibited = c
            .unreachable_codes
            .keys()
            .any(|k| k.contains("prohibited") || k.contains("policy") || k == "reject-route");
        let mut evidence = vec![format!(
            "ICMP destination unreachable ({}) from {}",
            codes.join(", "),
            from.join(", ")
        )];
        evidence.extend(base_evidence.clone());
        let checks = if prohibited {
            vec![
                format!("A policy rejects it: find what {} is (a node: iptables/nftables REJECT or a NetworkPolicy that rejects; a router or appliance: its deny rules)", from.join(", ")),
                "Routes of type prohibit or a firewall rule with reject-with: `ip route get DST` and `iptables -S | grep REJECT` on that hop".into(),
            ]
        } else if c.proto == "udp" {
            vec![format!(
                "Nothing listens on UDP port {} at {}",
                c.dst_port, c.dst
            )]
        } else {
            vec![
                format!("No route to {}: `ip route get {}` on the node and on {}", c.dst, c.dst, from.join(", ")),
                "Effective routes of the node NIC; a missing VPN/peering route or a UDR to a dead next hop".into(),
            ]
        };
        out.push(Finding {
            kind: if c.proto == "udp" {
                "udp_unreachable"
            } else {
                "destination_unreachable"
            }
            .into(),
            severity: sev(unreach),
            message: format!(
                "{} → {}: {unreach} of {total} attempts rejected by ICMP ({})",
                c.src,
                described(c),
                codes.join(", ")
            ),
            src: Some(c.src),
            target: Some(target(c)),
            category: Some(c.category),
            count: unreach,
            evidence,
            next_checks: checks,
        });
    }
    if c.syn_retransmissions > 0 && est > 0 && unans + refused + unreach == 0 {
        let max = c.handshake_ms.map_or(0.0, |h| h.max);
        out.push(Finding {
            kind: "syn_retransmitted".into(),
            severity: Severity::Warning,
            message: format!("{} → {}: connections succeed but needed {} SYN retransmissions (slowest handshake {max} ms)", c.src, described(c), c.syn_retransmissions),
            src: Some(c.src),
            target: Some(target(c)),
            category: Some(c.category),
            count: c.syn_retransmissions,
            evidence: vec![format!("{est} established, handshake up to {max} ms")],
            next_checks: vec![
                "Packet loss on the path: SNAT port exhaustion (load balancer or NAT gateway metrics), an overloaded firewall, or conntrack table full on the node (`conntrack -S`, dmesg 'table full')".into(),
            ],
        });
    }
    http_findings(c, out);
}

fn http_findings(c: &ConnectionRecord, out: &mut Vec<Finding>) {
    for (status, &count) in &c.http_statuses {
        let code: u16 = status.parse().unwrap_or(0);
        let (kind, sev, what, checks): (&str, Severity, &str, Vec<String>) = match code {
            407 => ("http_proxy_auth_required", Severity::Error, "a proxy demands authentication (407)", vec![
                "The proxy wants credentials: set them in HTTP(S)_PROXY (user:password@host:port) or allow the cluster's egress IPs without authentication".into(),
            ]),
            403 => ("http_forbidden", Severity::Warning, "requests are forbidden (403)", vec![
                "A proxy or web firewall may deny the URL: its logs name the rule; otherwise the application refuses these credentials".into(),
                "From the node: `curl -I` the same URL to compare".into(),
            ]),
            500..=599 => ("http_server_error", Severity::Warning, "the server fails (5xx)", vec![
                "The destination (or a gateway before it: 502/503/504) fails: check its health and logs".into(),
            ]),
            _ => continue,
        };
        out.push(Finding {
            kind: kind.into(),
            severity: sev,
            message: format!("{} → {}: {what}: HTTP {code} ×{count}", c.src, described(c)),
            src: Some(c.src),
            target: Some(target(c)),
            category: Some(c.category),
            count,
            evidence: vec![format!(
                "HTTP responses: {}",
                c.http_statuses
                    .iter()
                    .map(|(k, v)| format!("{k} ×{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            next_checks: checks,
        });
    }
    for pc in &c.proxy_connects {
        let ok: u64 = pc
            .statuses
            .iter()
            .filter(|(s, _)| s.starts_with('2'))
            .map(|(_, n)| *n)
            .sum();
        let failed: Vec<String> = pc
            .statuses
            .iter()
            .filter(|(s, _)| !s.starts_with('2'))
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        let failed_count: u64 = pc
            .statuses
            .iter()
            .filter(|(s, _)| !s.starts_with('2'))
            .map(|(_, n)| *n)
            .sum();
        if failed_count == 0 {
            continue;
        }
        let all: Vec<String> = pc
            .statuses
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        out.push(Finding {
            kind: "proxy_connect_failed".into(),
            severity: if ok == 0 { Severity::Error } else { Severity::Warning },
            message: format!(
                "{} → proxy {}: {failed_count} of {} CONNECTs to {} rejected ({})",
                c.src,
                target(c),
                failed_count + ok,
                pc.target,
                failed.join(", ")
            ),
            src: Some(c.src),
            target: Some(pc.target.clone()),
            category: Some(c.category),
            count: failed_count,
            evidence: vec![format!("proxy answers to CONNECT {}: {}", pc.target, all.join(", "))],
            next_checks: vec![
                "407: the proxy wants credentials (user:password in HTTPS_PROXY); 403: its policy denies this host; none: the proxy did not answer (is it up, and does it allow the cluster's source IPs?)".into(),
                format!("Check the proxy's allow-list and logs for {}", pc.target),
            ],
        });
    }
}

/// Findings for the lookups of one name by one client, all query types together (a name that
/// does not exist fails for A and AAAA alike: one finding, not two).
fn dns_findings(
    records: &[&DnsRecord],
    server_stats: &FxHashMap<u128, ServerStats>,
    out: &mut Vec<Finding>,
) {
    let first = records[0];
    let n = |k: &str| -> u64 {
        records
            .iter()
            .map(|r| r.outcomes.get(k).copied().unwrap_or(0))
            .sum()
    };
    let ok = n("ok");
    let total: u64 = records.iter().flat_map(|r| r.outcomes.values()).sum();
    let most_expansions = records.iter().map(|r| r.expansions).max().unwrap_or(0);
    // Expansions explain a lookup that failed every time; with some successes they are noise.
    let expansions = if most_expansions > 0 && ok == 0 {
        format!(", after {most_expansions} search expansions")
    } else {
        String::new()
    };
    let sev = if ok == 0 {
        Severity::Error
    } else {
        Severity::Warning
    };
    let compare = format!(
        "Compare: `nslookup {0}` from the pod, from the node, and `nslookup {0} 168.63.129.16` (Azure DNS)",
        first.name
    );
    let cases: [(&str, &str, &str, Vec<String>); 5] = [
        ("nxdomain", "dns_nxdomain", "the name does not exist (NXDOMAIN)", vec![
            compare.clone(),
            "Spelling, and for a cluster name the namespace: `kubectl get svc -A | grep NAME`".into(),
            "A private endpoint: its privatelink DNS zone must be linked to the cluster's VNet".into(),
            "A custom DNS server on the VNet must forward to 168.63.129.16 or host the zone".into(),
        ]),
        ("servfail", "dns_servfail", "the resolver failed (SERVFAIL)", vec![
            "CoreDNS logs: `kubectl -n kube-system logs -l k8s-app=kube-dns`".into(),
            compare.clone(),
            "The upstream: custom DNS servers' forwarders, or the zone's authoritative servers (DNSSEC?)".into(),
        ]),
        ("timeout", "dns_timeout", "no answer (timeout)", vec![
            "A NetworkPolicy must allow UDP and TCP 53 from the pod to kube-dns in kube-system".into(),
            "CoreDNS pods ready? `kubectl -n kube-system get pods -l k8s-app=kube-dns`".into(),
            compare.clone(),
            "Intermittent UDP timeouts: conntrack races on the node; NodeLocal DNSCache or `single-request-reopen`".into(),
        ]),
        ("refused", "dns_refused", "the server refused to answer (REFUSED)", vec![
            "The server does not serve this client or zone: its ACL / recursion settings, or the wrong server in resolv.conf".into(),
        ]),
        ("unreachable", "dns_server_unreachable", "the server is unreachable (ICMP)", vec![
            "Nothing listens on port 53 at the server, or a firewall rejects it: check the server address in resolv.conf".into(),
        ]),
    ];
    for (outcome, kind, what, checks) in cases {
        let failed = n(outcome);
        if failed == 0 {
            continue;
        }
        let qtypes: Vec<&str> = records
            .iter()
            .filter(|r| r.outcomes.contains_key(outcome))
            .map(|r| r.qtype.as_str())
            .collect();
        let queries: u64 = records.iter().map(|r| r.queries).sum();
        let mut servers: Vec<std::net::IpAddr> = records
            .iter()
            .flat_map(|r| r.servers.iter().copied())
            .collect();
        servers.sort();
        servers.dedup();
        out.push(Finding {
            kind: kind.into(),
            severity: sev,
            message: format!(
                "{} cannot resolve {} ({}): {what} in {failed} of {total} lookups{expansions}",
                first.client,
                first.name,
                qtypes.join(", ")
            ),
            src: Some(first.client),
            target: Some(first.name.clone()),
            category: None,
            count: failed,
            evidence: server_evidence(queries, &servers, server_stats),
            next_checks: checks,
        });
    }
}

/// What each server the lookups went to did overall.
fn server_evidence(
    queries: u64,
    servers: &[std::net::IpAddr],
    stats: &FxHashMap<u128, ServerStats>,
) -> Vec<String> {
    let mut v = vec![format!("{queries} queries for these lookups")];
    for s in servers {
        if let Some(st) = stats.get(&crate::decode::ip_bits(*s)) {
            v.push(format!(
                "server {s}: answered {} of {} queries in the capture, {} timed out, {} SERVFAIL",
                st.answered, st.queries, st.timeouts, st.servfails
            ));
        }
    }
    v
}

fn capture_findings(stats: &CaptureStats, out: &mut Vec<Finding>) {
    for f in &stats.truncated_files {
        out.push(Finding {
            kind: "capture_truncated".into(),
            severity: Severity::Info,
            message: format!("{f} ends in the middle of a packet (the capture was cut off); everything before it was analysed"),
            src: None,
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
            target: None,
            category: None,
            count: 1,
            evidence: vec![],
            next_checks: vec![
                "Check the file with `capinfos`; `editcap` may recover the readable part".into(),
            ],
        });
    }
    let lost = stats.flows_evicted + stats.groups_dropped + stats.dns_dropped;
    if lost > 0 {
        out.push(Finding {
            kind: "state_limit_reached".into(),
            severity: Severity::Warning,
            message: format!(
                "state limits were reached: {} flows evicted, {} connection groups and {} DNS lookups not recorded; counts may be low",
                stats.flows_evicted, stats.groups_dropped, stats.dns_dropped
            ),
            src: None,
            target: None,
            category: None,
            count: lost,
            evidence: vec![],
            next_checks: vec!["Raise the limits (--max-flows) or analyse a narrower capture".into()],
        });
    }
}
