//! Findings about DNS lookups, one per client and name across query types.

use rustc_hash::FxHashMap;

use crate::dns::transaction::ServerStats;
use crate::dns::DnsOutcome;
use crate::profile::Platform;
use crate::report::{DnsRecord, Finding, Severity};

/// A failed outcome's finding: outcome, finding kind, what it means, the next checks, and where
/// among them the "compare resolvers" line goes.
type Case = (
    DnsOutcome,
    &'static str,
    &'static str,
    &'static [&'static str],
    Option<usize>,
);

/// Findings for the lookups of one name by one client, all query types together (a name that
/// does not exist fails for A and AAAA alike: one finding, not two).
pub(super) fn dns_findings(
    records: &[&DnsRecord],
    server_stats: &FxHashMap<u128, ServerStats>,
    platform: Platform,
    out: &mut Vec<Finding>,
) {
    let first = records[0];
    let n = |k: DnsOutcome| -> u64 {
        records
            .iter()
            .map(|r| r.outcomes.get(&k).copied().unwrap_or(0))
            .sum()
    };
    let ok = n(DnsOutcome::Ok);
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
    // Each outcome's next checks, with the place of the "compare resolvers" line among them.
    // Built only for an outcome that failed: most names resolve, and building the text for every
    // name was most of the time spent here.
    let cases: [Case; 6] = [
        (DnsOutcome::Truncated, "dns_truncated", "the answer did not fit in UDP and no retry over TCP answered", &[
            "DNS falls back to TCP for large answers: a NetworkPolicy, security group or firewall must allow TCP 53 as well as UDP 53",
        ], Some(1)),
        (DnsOutcome::NxDomain, "dns_nxdomain", "the name does not exist (NXDOMAIN)", &[
            "Spelling, and for a cluster name the namespace: `kubectl get svc -A | grep NAME`",
            "A private endpoint: its private DNS zone must be visible to the cluster's resolver",
            "A custom DNS server must forward to the upstream resolver or host the zone",
        ], Some(0)),
        (DnsOutcome::ServFail, "dns_servfail", "the resolver failed (SERVFAIL)", &[
            "CoreDNS logs: `kubectl -n kube-system logs -l k8s-app=kube-dns`",
            "The upstream: custom DNS servers' forwarders, or the zone's authoritative servers (DNSSEC?)",
        ], Some(1)),
        (DnsOutcome::Timeout, "dns_timeout", "no answer (timeout)", &[
            "A NetworkPolicy must allow UDP and TCP 53 from the pod to kube-dns in kube-system",
            "CoreDNS pods ready? `kubectl -n kube-system get pods -l k8s-app=kube-dns`",
            "Intermittent UDP timeouts: conntrack races on the node; NodeLocal DNSCache or `single-request-reopen`",
        ], Some(2)),
        (DnsOutcome::Refused, "dns_refused", "the server refused to answer (REFUSED)", &[
            "The server does not serve this client or zone: its ACL / recursion settings, or the wrong server in resolv.conf",
        ], None),
        (DnsOutcome::Unreachable, "dns_server_unreachable", "the server is unreachable (ICMP)", &[
            "Nothing listens on port 53 at the server, or a firewall rejects it: check the server address in resolv.conf",
        ], None),
    ];
    for (outcome, kind, what, checks, compare_at) in cases {
        let failed = n(outcome);
        if failed == 0 {
            continue;
        }
        let qtypes: Vec<&str> = records
            .iter()
            .filter(|r| r.outcomes.contains_key(&outcome))
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
            ingress_iface: records.iter().find_map(|r| r.ingress_iface),
            target: Some(first.name.clone()),
            category: None,
            count: failed,
            evidence: server_evidence(queries, &servers, server_stats),
            next_checks: {
                let mut v: Vec<String> = checks.iter().map(|c| c.to_string()).collect();
                if let Some(at) = compare_at {
                    if platform == Platform::Aks && outcome == DnsOutcome::NxDomain {
                        v.push("On Azure: a private endpoint's privatelink DNS zone must be linked to the cluster's VNet, and a custom DNS server on the VNet must forward to 168.63.129.16".into());
                    }
                    let upstream = match platform {
                        Platform::Aks => "168.63.129.16` (Azure DNS)",
                        Platform::Generic => "UPSTREAM` (the nameserver in the node's /etc/resolv.conf)",
                    };
                    v.insert(at, format!(
                        "Compare: `nslookup {0}` from the pod, from the node, and `nslookup {0} {upstream}",
                        first.name
                    ));
                }
                v
            },
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
