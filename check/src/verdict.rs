//! The conclusion of a check, in the AKS egress checklist's words: compares what the pod's
//! namespace found with what the node's found, DNS first, then TCP, then HTTP(S).
//!
//! Pure: the same results always give the same verdict, so every branch is tested here with
//! made-up results, and the controller may redraw a verdict from stored results later.

use std::net::IpAddr;

use outflow_core::wire::check::{
    CheckTarget, ConnectCheck, DnsCheck, Protocol, SideResult, Verdict,
};
use outflow_core::{DnsOutcome, Outcome};

fn verdict(kind: &str, summary: String, evidence: Vec<String>, next: &[&str]) -> Verdict {
    Verdict {
        kind: kind.to_string(),
        summary,
        evidence,
        next_checks: next.iter().map(|s| s.to_string()).collect(),
    }
}

/// "nxdomain via 10.0.0.10 (4 queries, 1.2 ms)", "ok: 198.51.100.80 via 10.0.0.10".
fn dns_fact(who: &str, d: &DnsCheck) -> String {
    let servers: Vec<String> = d.servers.iter().map(IpAddr::to_string).collect();
    let answers: Vec<String> = d.answers.iter().map(IpAddr::to_string).collect();
    let outcome = serde_json::to_value(d.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut s = format!("{who}: {} {outcome}", d.name.trim_end_matches('.'));
    if !answers.is_empty() {
        s.push_str(&format!(" {}", answers.join(", ")));
    }
    s.push_str(&format!(
        " via {} ({} in {} ms)",
        servers.join(", "),
        plural(d.queries.len(), "query", "queries"),
        d.latency_ms
    ));
    s
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "unanswered to 198.51.100.20:443 (3000 ms)".
fn connect_fact(who: &str, c: &ConnectCheck) -> String {
    let outcome = outcome_word(c.outcome);
    let reason = c
        .reason
        .as_ref()
        .map(|r| format!(", {r}"))
        .unwrap_or_default();
    let addr = match c.addr {
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    format!(
        "{who}: TCP {addr}:{} {outcome}{reason} ({} ms)",
        c.port, c.latency_ms
    )
}

/// The contract spelling of an outcome.
pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Established => "established",
        Outcome::Refused => "refused",
        Outcome::Unreachable => "unreachable",
        Outcome::Unanswered => "unanswered",
        Outcome::Incomplete => "incomplete",
    }
}

fn resolved(d: Option<&DnsCheck>) -> bool {
    d.is_none_or(|d| d.outcome == DnsOutcome::Ok)
}

fn established(side: &SideResult) -> bool {
    side.connects
        .iter()
        .any(|c| c.outcome == Outcome::Established)
}

/// All the side's connects ended alike: that outcome.
fn common_outcome(side: &SideResult) -> Option<Outcome> {
    let first = side.connects.first()?.outcome;
    side.connects
        .iter()
        .all(|c| c.outcome == first)
        .then_some(first)
}

/// Some connect of the side ended so.
fn any(side: &SideResult, outcome: Outcome) -> bool {
    side.connects.iter().any(|c| c.outcome == outcome)
}

/// Draws the verdict from both sides' results.
pub fn decide(target: &CheckTarget, pod: &SideResult, node: &SideResult) -> Verdict {
    let host = &target.host;
    for (who, side) in [("pod", pod), ("node", node)] {
        if let Some(e) = &side.error {
            return verdict(
                "check_failed",
                format!(
                    "the check could not run from the {who} ({}): {e}",
                    side.netns
                ),
                vec![format!("{who}: {e}")],
                &["fix what the error names and run the check again"],
            );
        }
    }
    let mut evidence = Vec::new();
    for (who, side) in [("pod", pod), ("node", node)] {
        if let Some(d) = &side.resolver {
            evidence.push(dns_fact(&format!("{who} resolver"), d));
        }
        if let Some(d) = &side.upstream {
            evidence.push(dns_fact(&format!("{who} → upstream"), d));
        }
    }
    // Reach by address is evidence for the DNS verdicts too: the pod connects to what the node
    // resolved, so DNS alone is to blame.
    for (who, side) in [("pod", pod), ("node", node)] {
        evidence.extend(side.connects.iter().map(|c| connect_fact(who, c)));
    }
    let upstream = node.upstream.as_ref().or(pod.upstream.as_ref());
    let (pod_dns, node_dns) = (
        resolved(pod.resolver.as_ref()),
        resolved(node.resolver.as_ref()),
    );
    if !pod_dns && node_dns {
        return verdict(
            "pod_dns",
            format!("the pod cannot resolve {host} but the node can → cluster DNS (or the pod's DNS config)"),
            evidence,
            &[
                "is the cluster DNS (the pod's nameserver) up and answering? kubectl -n kube-system get pods -l k8s-app=kube-dns",
                "does a network policy block the pod's UDP/TCP 53 to the cluster DNS?",
                "does the cluster DNS forward this zone (CoreDNS custom config, stub domains)?",
            ],
        );
    }
    if !pod_dns && !node_dns {
        return match upstream.map(|u| u.outcome) {
            Some(DnsOutcome::Ok) => verdict(
                "resolver_dns",
                format!("neither the pod nor the node resolves {host}, but the upstream answers → the resolvers in between (cluster DNS forwarding, the node's DNS server)"),
                evidence,
                &[
                    "which server does the node's resolv.conf name, and does it forward to the upstream?",
                    "the cluster DNS's forward target (CoreDNS `forward . /etc/resolv.conf`)",
                ],
            ),
            Some(DnsOutcome::NxDomain) | Some(DnsOutcome::NoData) => verdict(
                "name_not_found",
                format!("{host} does not resolve anywhere, the upstream has no address for it either → the name itself (a typo, a private zone not linked to this network)"),
                evidence,
                &[
                    "is the name spelled right, and public?",
                    "for a private zone: is it linked to the cluster's virtual network?",
                ],
            ),
            Some(DnsOutcome::Timeout) | Some(DnsOutcome::Unreachable) => verdict(
                "dns_unreachable",
                format!("no DNS answer for {host} from the pod, the node or the upstream → DNS traffic does not leave the node (NSG, firewall, egress device)"),
                evidence,
                &[
                    "do NSG or firewall rules allow UDP/TCP 53 from the node to its DNS servers?",
                    "capture the node's DNS: outflow capture --node NODE port 53",
                ],
            ),
            _ => verdict(
                "dns_failed",
                format!("{host} does not resolve from the pod or the node"),
                evidence,
                &["the DNS servers' logs for this name"],
            ),
        };
    }
    let port = target.port;
    if pod.connects.is_empty() {
        return verdict(
            "no_address",
            format!("{host} resolves but has no IPv4 address to connect to"),
            evidence,
            &["does the name have A records (AAAA is not checked yet)?"],
        );
    }
    let (pod_tcp, node_tcp) = (established(pod), established(node));
    if !pod_tcp && node_tcp {
        return verdict(
            "network_policy",
            format!("the node reaches {host}:{port}, the pod does not → network policy (or a firewall rule for pod addresses)"),
            evidence,
            &[
                "kubectl get networkpolicy -A: which policies select this pod, do they allow this egress?",
                "host firewall or CNI rules that match the pod's address (iptables-save | grep the pod's IP)",
            ],
        );
    }
    if !pod_tcp {
        return match (common_outcome(pod), common_outcome(node)) {
            (Some(Outcome::Unanswered), Some(Outcome::Unanswered)) => verdict(
                "beyond_node",
                format!("{host} resolves, TCP to {port} unanswered from pod and node → beyond the node (NSG, firewall, egress device)"),
                evidence,
                &[
                    "NSG rules on the node's subnet and NIC for this destination and port",
                    "the egress path: firewall (UDR) rules and logs, NAT gateway or load balancer outbound rules, SNAT port exhaustion",
                    "is the destination up and listening on this port?",
                ],
            ),
            _ if any(pod, Outcome::Refused) || any(node, Outcome::Refused) => verdict(
                "refused",
                format!("{host}:{port} refuses connections (TCP RST) → nothing listens there, or a firewall answers for it"),
                evidence,
                &["is the service listening on this port (and on this address)?"],
            ),
            _ if any(pod, Outcome::Unreachable) || any(node, Outcome::Unreachable) => verdict(
                "rejected",
                format!("connections to {host}:{port} are rejected with ICMP errors → a route or firewall on the path refuses them"),
                evidence,
                &[
                    "who sent the ICMP error (in the evidence): the node's routes and firewall, or a router beyond",
                    "the node's routing table for this destination (ip route get ADDRESS)",
                ],
            ),
            _ => verdict(
                "unreachable",
                format!("{host}:{port} cannot be reached from the pod or the node"),
                evidence,
                &["compare the outcomes per address in the evidence"],
            ),
        };
    }
    if target.protocol == Protocol::Tcp {
        return verdict(
            "reachable",
            format!("{host}:{port} is reachable from the pod (TCP established)"),
            evidence,
            &[],
        );
    }
    let Some(http) = &pod.http else {
        return verdict(
            "http_failed",
            format!(
                "TCP to {host}:{port} is established from the pod, but no HTTP request was made"
            ),
            evidence,
            &["run the check again"],
        );
    };
    if let Some(tls) = &http.tls {
        let names = if tls.cert_names.is_empty() {
            "none".to_string()
        } else {
            tls.cert_names.join(", ")
        };
        evidence.push(format!(
            "pod: TLS {} with {}, certificate for {names}{}",
            if tls.is_established {
                "established"
            } else {
                "failed"
            },
            http.addr,
            tls.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        if !tls.is_established {
            return verdict(
                "tls_failed",
                format!("TCP to {host}:{port} connects from the pod but the TLS handshake fails → the server's TLS, or a device on the path that intercepts it"),
                evidence,
                &["does the node's handshake fail the same way? a TLS-inspecting firewall or proxy on the egress path"],
            );
        }
    }
    match http.status {
        Some(status) => {
            evidence.push(format!(
                "pod: HTTP {status} from {} in {} ms",
                http.addr, http.latency_ms
            ));
            if let Some(tls) = http.tls.as_ref().filter(|t| !t.is_trusted) {
                return verdict(
                    "untrusted_certificate",
                    format!("{host} answers HTTP {status}, but its certificate is not trusted here ({}) → a TLS-inspecting proxy or firewall, or a private CA the pod must trust", tls.error.clone().unwrap_or_default()),
                    evidence,
                    &["who issued the certificate: the egress firewall's inspection CA, or the server's own?"],
                );
            }
            verdict(
                "reachable",
                format!("{host} is reachable from the pod: TCP {port} established, HTTP {status}"),
                evidence,
                &[],
            )
        }
        None => {
            let error = http.error.clone().unwrap_or_default();
            evidence.push(format!("pod: HTTP to {} failed: {error}", http.addr));
            verdict(
                "http_failed",
                format!("TCP to {host}:{port} connects from the pod, but HTTP gets no answer ({error}) → the server, or a proxy or firewall that inspects traffic"),
                evidence,
                &["the server's logs; a proxy or firewall on the egress path that holds or drops requests"],
            )
        }
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
