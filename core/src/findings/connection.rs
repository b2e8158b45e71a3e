//! Findings about connections: unanswered, refused and rejected attempts, slow handshakes, and
//! what HTTP servers and proxies answered.

use std::net::IpAddr;

use crate::category::Category;
use crate::conn::Outcome;
use crate::profile::Platform;
use crate::report::{ConnectionRecord, Finding, Severity};

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

/// The next checks for a destination that does not answer, by where it sits and, for the
/// network's parts, in the words of the platform the profile names.
fn unanswered_checks(c: &ConnectionRecord, platform: Platform) -> Vec<String> {
    let t = format!("{}:{}", c.dst, c.dst_port);
    if c.dst.is_loopback() {
        // Loopback never leaves the host: no network, policy or cloud part is involved.
        return vec![format!(
            "Nothing answers on {t} on this host: is the process listening there? `ss -ltnp`, and whether it listens on 127.0.0.1 or another address"
        )];
    }
    let aks = platform == Platform::Aks;
    let mut v = vec![format!(
        "From the node: `curl -v telnet://{t}`. If the node connects, look at the pod's side (NetworkPolicy egress, the pod's routes); if it fails too, the block is below the node"
    )];
    match c.category {
        Category::Internal => v.extend([
            format!("Is something ready behind {}? `kubectl get endpoints`, `kubectl get pods -o wide`", c.dst),
            "NetworkPolicy: ingress rules of the destination's namespace and egress rules of the source's".into(),
            if aks {
                "For a node address: the NSG between node subnets, and that the port listens on the node".into()
            } else {
                "For a node address: security groups or host firewalls between the nodes, and that the port listens on the node".into()
            },
        ]),
        Category::Peered if aks => v.extend([
            "VNet peering is Connected on both sides (and 'allow forwarded traffic' if a virtual appliance is in the path)".into(),
            "The NSG of the destination subnet allows the cluster's node and pod ranges".into(),
            "Route tables: a UDR may send peered traffic through a firewall that drops it".into(),
        ]),
        Category::Peered => v.extend([
            "The peering or route to that network is up in both directions".into(),
            "Security groups or firewalls of the destination network allow the cluster's node and pod ranges".into(),
            "Routes: a route may send this traffic through a firewall or appliance that drops it".into(),
        ]),
        Category::OnPrem if aks => v.extend([
            "VPN / ExpressRoute: the on-prem prefix is in the node NIC's effective routes, and the cluster's range is advertised back".into(),
            "The on-prem firewall allows the source: node IPs (kubenet SNATs pods) or pod IPs (Azure CNI)".into(),
            "NSG outbound rules of the node subnet".into(),
        ]),
        Category::OnPrem => v.extend([
            "VPN or interconnect: the node has a route to the on-prem prefix, and the cluster's range is routed back".into(),
            "The on-prem firewall allows the source: node IPs (when pods are SNATed) or pod IPs (when they are routable)".into(),
            "Security group or firewall outbound rules of the node network".into(),
        ]),
        Category::Public if !aks => {
            match c.egress.as_deref() {
                Some("firewall") => v.push("Egress firewall: a rule must allow this destination; its logs show the deny".into()),
                Some("proxy") => v.push("Egress is through a proxy: this connection went direct. Set HTTPS_PROXY/HTTP_PROXY in the pod, and NO_PROXY for cluster names".into()),
                _ => v.push("The egress NAT (load balancer, NAT gateway or the node's SNAT): not out of SNAT ports, and its outbound IP is allowed by the destination".into()),
            }
            v.push("Security group or firewall outbound rules of the node network, and any route sending 0.0.0.0/0 elsewhere".into());
        }
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

pub(super) fn connection_findings(
    c: &ConnectionRecord,
    src_established: u64,
    platform: Platform,
    out: &mut Vec<Finding>,
) {
    let n = |k: Outcome| c.outcomes.get(&k).copied().unwrap_or(0);
    let (est, refused, unreach, unans) = (
        n(Outcome::Established),
        n(Outcome::Refused),
        n(Outcome::Unreachable),
        n(Outcome::Unanswered),
    );
    let total: u64 = c.outcomes.values().sum();
    let sev = |failed: u64| {
        if failed > 0 && est == 0 {
            Severity::Error
        } else {
            Severity::Warning
        }
    };
    // Built only for a record that has a finding: most records are healthy, and formatting this
    // for each of them was most of the time spent on findings.
    let base_evidence = || {
        let mut v = Vec::new();
        if c.syn_retransmissions > 0 {
            v.push(format!("{} SYN retransmissions", c.syn_retransmissions));
        }
        if let Some(t) = &c.tunnel {
            // Captured on an overlay's underlay: the tunnel between the nodes is on the path.
            let id = t.id.map(|id| format!(" {id}")).unwrap_or_default();
            v.push(format!(
                "carried in {}{id} from node {} to node {}",
                t.kind, t.outer_src, t.outer_dst
            ));
        }
        if src_established > est {
            v.push(format!(
                "{} reached other destinations ({} established connections), so its own networking works",
                c.src,
                src_established - est
            ));
        }
        v
    };
    if unans > 0 {
        let mut evidence = vec![format!("{unans} of {total} attempts: SYN sent, no SYN-ACK, RST or ICMP error within the SYN timeout")];
        evidence.extend(base_evidence());
        out.push(Finding {
            kind: "syn_unanswered".into(),
            severity: sev(unans),
            message: format!("{} → {}: {unans} of {total} connection attempts unanswered (SYNs dropped on the way or at the destination)", c.src, described(c)),
            src: Some(c.src),
            ingress_iface: c.ingress_iface,
            target: Some(target(c)),
            category: Some(c.category),
            count: unans,
            evidence,
            next_checks: unanswered_checks(c, platform),
        });
    }
    if refused > 0 {
        let mut evidence = vec![format!("{refused} of {total} attempts answered by RST")];
        evidence.extend(base_evidence());
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
            ingress_iface: c.ingress_iface,
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
        evidence.extend(base_evidence());
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
            ingress_iface: c.ingress_iface,
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
            ingress_iface: c.ingress_iface,
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
            ingress_iface: c.ingress_iface,
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
            ingress_iface: c.ingress_iface,
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
