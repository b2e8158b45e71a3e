//! `outflow check` on a lab (tests/lab/check.sh): pods with the kubelet's resolv.conf, a cluster
//! DNS forwarding to an upstream, nginx, a blackholed, a refusing and a prohibited destination,
//! and a FORWARD rule that drops one pod's web traffic but not the node's. Each scenario's check
//! must give the verdict the lab was built for, with the evidence behind it. Needs root; in CI
//! it must run.

use std::net::IpAddr;
use std::time::Duration;

use outflow_check::{Plan, SidePlan};
use outflow_core::wire::check::{CheckResult, SideResult};
use outflow_core::{DnsOutcome, Outcome};
use outflow_tests::{privileged, Lab};

const UPSTREAM: &str = "10.1.0.53";

/// Checks `target` from `pod` (`a` or `b`) with the lab node as the node side.
fn check(prefix: &str, pod: &str, target: &str) -> CheckResult {
    let plan = Plan::new(
        target,
        SidePlan::new(Some(&format!("{prefix}-pod-{pod}")), None).unwrap(),
        SidePlan::new(Some(&format!("{prefix}-node")), None).unwrap(),
        Some(UPSTREAM.parse().unwrap()),
        Duration::from_secs(1),
    )
    .unwrap();
    let result = outflow_check::run(&plan);
    eprintln!("{target} from pod-{pod}: {:#?}", result.verdict);
    result
}

fn outcomes(side: &SideResult) -> Vec<(String, Outcome, Option<String>)> {
    side.connects
        .iter()
        .map(|c| {
            (
                format!("{}:{}", c.addr, c.port),
                c.outcome,
                c.reason.clone(),
            )
        })
        .collect()
}

fn has(r: &CheckResult, text: &str) -> bool {
    r.verdict.evidence.iter().any(|e| e.contains(text))
}

#[test]
fn each_lab_scenario_gets_its_verdict_and_evidence() {
    if !privileged("each_lab_scenario_gets_its_verdict_and_evidence") {
        return;
    }
    let prefix = format!("ofk{}", std::process::id() % 10_000);
    let lab = Lab::up_from("check.sh", &prefix);
    let p = lab.prefix();

    // Reachable: the pod's libc order, three search expansions answered NXDOMAIN by the
    // cluster DNS, then the bare name forwarded to the upstream.
    let r = check(p, "a", "http://web.example.com/");
    assert_eq!(r.verdict.kind, "reachable", "{:#?}", r);
    let pod_dns = r.pod.resolver.as_ref().unwrap();
    let asked: Vec<(&str, DnsOutcome)> = pod_dns
        .queries
        .iter()
        .map(|q| (q.name.as_str(), q.outcome))
        .collect();
    assert_eq!(
        asked,
        [
            (
                "web.example.com.default.svc.cluster.local.",
                DnsOutcome::NxDomain
            ),
            ("web.example.com.svc.cluster.local.", DnsOutcome::NxDomain),
            ("web.example.com.cluster.local.", DnsOutcome::NxDomain),
            ("web.example.com.", DnsOutcome::Ok),
        ]
    );
    assert!(pod_dns
        .queries
        .iter()
        .all(|q| q.server.to_string() == "10.0.0.10"));
    assert_eq!(
        pod_dns.answers,
        ["198.51.100.80".parse::<IpAddr>().unwrap()]
    );
    let node_dns = r.node.resolver.as_ref().unwrap();
    assert_eq!(
        (node_dns.queries.len(), node_dns.servers[0].to_string()),
        (1, UPSTREAM.to_string())
    );
    assert_eq!(r.node.upstream.as_ref().unwrap().outcome, DnsOutcome::Ok);
    assert_eq!(r.pod.http.as_ref().unwrap().status, Some(200));
    assert_eq!(r.node.http.as_ref().unwrap().status, Some(200));
    assert!(
        r.verdict.summary.contains("HTTP 200"),
        "{}",
        r.verdict.summary
    );

    // A path nginx answers 503 for: reachable, and the status is the evidence.
    let r = check(p, "a", "http://web.example.com/broken");
    assert_eq!(r.pod.http.as_ref().unwrap().status, Some(503));

    // HTTPS to a self-signed certificate: the handshake, the certificate's names, and why it
    // is not trusted.
    let r = check(p, "a", "web.example.com");
    assert_eq!(r.verdict.kind, "untrusted_certificate", "{:#?}", r);
    let http = r.pod.http.as_ref().unwrap();
    let tls = http.tls.as_ref().unwrap();
    assert!(tls.is_established && !tls.is_trusted);
    assert!(
        tls.version.as_ref().unwrap().starts_with("TLSv1."),
        "{tls:?}"
    );
    assert_eq!(tls.cert_names, ["web.example.com", "www.example.com"]);
    assert!(
        tls.error.as_ref().unwrap().contains("self-signed"),
        "{tls:?}"
    );
    assert_eq!(http.status, Some(200));
    assert!(has(&r, "certificate for web.example.com, www.example.com"));

    // The cluster DNS claims corp.example and has no such name; the node asks the upstream.
    let r = check(p, "a", "db.corp.example:80");
    assert_eq!(r.verdict.kind, "pod_dns", "{:#?}", r);
    assert_eq!(
        r.pod.resolver.as_ref().unwrap().outcome,
        DnsOutcome::NxDomain
    );
    assert_eq!(r.pod.resolver.as_ref().unwrap().queries.len(), 4);
    assert_eq!(r.node.resolver.as_ref().unwrap().outcome, DnsOutcome::Ok);
    assert!(
        has(&r, "pod: TCP 198.51.100.80:80 established"),
        "reach by address: {:?}",
        r.verdict.evidence
    );

    // Nobody knows the name, the upstream included.
    let r = check(p, "a", "nx.example.com");
    assert_eq!(r.verdict.kind, "name_not_found", "{:#?}", r);
    assert_eq!(
        r.node.upstream.as_ref().unwrap().outcome,
        DnsOutcome::NxDomain
    );
    assert!(r.pod.connects.is_empty());

    // Dropped beyond the node: unanswered from both.
    let r = check(p, "a", "blackhole.example.com:80");
    assert_eq!(r.verdict.kind, "beyond_node", "{:#?}", r);
    assert_eq!(
        outcomes(&r.pod),
        [("198.51.100.20:80".into(), Outcome::Unanswered, None)]
    );
    assert_eq!(
        outcomes(&r.node),
        [("198.51.100.20:80".into(), Outcome::Unanswered, None)]
    );
    assert!(r.verdict.summary.contains("NSG, firewall, egress device"));

    // Nothing listens: RST from both.
    let r = check(p, "a", "closed.example.com:8080");
    assert_eq!(r.verdict.kind, "refused", "{:#?}", r);
    assert_eq!(
        outcomes(&r.pod),
        [("192.168.50.5:8080".into(), Outcome::Refused, None)]
    );
    assert_eq!(outcomes(&r.node)[0].1, Outcome::Refused);

    // The node's prohibit route: the pod hears ICMP 3/13 from the node's bridge address, the
    // node's own connect is refused before a packet leaves.
    let r = check(p, "a", "prohibited.example.com:80");
    assert_eq!(r.verdict.kind, "rejected", "{:#?}", r);
    assert_eq!(
        outcomes(&r.pod),
        [(
            "203.0.113.7:80".into(),
            Outcome::Unreachable,
            Some("admin-prohibited from 10.244.1.1".into())
        )]
    );
    assert_eq!(
        outcomes(&r.node),
        [(
            "203.0.113.7:80".into(),
            Outcome::Unreachable,
            Some("prohibited-locally".into())
        )]
    );

    // pod-b's web traffic is dropped on the node; pod-a and the node get through.
    let r = check(p, "b", "web.example.com:80");
    assert_eq!(r.verdict.kind, "network_policy", "{:#?}", r);
    assert_eq!(outcomes(&r.pod)[0].1, Outcome::Unanswered);
    assert_eq!(outcomes(&r.node)[0].1, Outcome::Established);
    assert!(has(&r, "pod: TCP 198.51.100.80:80 unanswered"));

    // An address target skips DNS altogether.
    let r = check(p, "b", "192.168.50.5:8080");
    assert!(r.pod.resolver.is_none() && r.pod.upstream.is_none());
    assert_eq!(r.verdict.kind, "refused");

    // A namespace that is gone is said, not guessed around.
    let plan = Plan::new(
        "web.example.com",
        SidePlan::new(Some(&format!("{p}-pod-z")), None).unwrap(),
        SidePlan::new(Some(&format!("{p}-node")), None).unwrap(),
        None,
        Duration::from_secs(1),
    )
    .unwrap();
    let r = outflow_check::run(&plan);
    assert_eq!(r.verdict.kind, "check_failed");
    assert!(
        r.verdict.summary.contains(&format!("{p}-pod-z")),
        "{}",
        r.verdict.summary
    );
    drop(lab);
}
