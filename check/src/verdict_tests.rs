//! Every branch of the verdict, from made-up results.

use std::net::IpAddr;

use outflow_core::wire::check::{
    CheckTarget, ConnectCheck, DnsCheck, HttpCheck, Protocol, SideResult, TlsCheck,
};
use outflow_core::{DnsOutcome, Outcome};

use super::decide;

const ADDR: &str = "198.51.100.80";

fn target() -> CheckTarget {
    crate::target::parse("http://web.example.com/").unwrap()
}

fn dns(outcome: DnsOutcome) -> DnsCheck {
    DnsCheck {
        source: "resolv.conf".into(),
        servers: vec!["10.0.0.10".parse().unwrap()],
        outcome,
        name: "web.example.com.".into(),
        answers: if outcome == DnsOutcome::Ok {
            vec![ADDR.parse().unwrap()]
        } else {
            vec![]
        },
        queries: vec![],
        latency_ms: 1.0,
    }
}

fn side(dns_outcome: DnsOutcome, tcp: &[Outcome]) -> SideResult {
    SideResult {
        netns: "ns".into(),
        resolver: Some(dns(dns_outcome)),
        upstream: None,
        connects: tcp
            .iter()
            .map(|&outcome| ConnectCheck {
                addr: ADDR.parse::<IpAddr>().unwrap(),
                port: 80,
                outcome,
                reason: (outcome == Outcome::Unreachable)
                    .then(|| "admin-prohibited from 10.244.1.1".into()),
                latency_ms: 1.0,
            })
            .collect(),
        http: None,
        error: None,
    }
}

fn with_http(mut s: SideResult, status: Option<u16>, tls: Option<TlsCheck>) -> SideResult {
    s.http = Some(HttpCheck {
        addr: ADDR.parse().unwrap(),
        tls,
        status,
        error: status
            .is_none()
            .then(|| "no answer within the timeout".into()),
        latency_ms: 2.0,
    });
    s
}

fn with_upstream(mut s: SideResult, outcome: DnsOutcome) -> SideResult {
    s.upstream = Some(dns(outcome));
    s
}

fn kind(pod: &SideResult, node: &SideResult) -> String {
    decide(&target(), pod, node).kind
}

use DnsOutcome as D;
use Outcome as O;

#[test]
fn pod_cannot_resolve_but_node_can_is_cluster_dns() {
    let v = decide(&target(), &side(D::NxDomain, &[]), &side(D::Ok, &[]));
    assert_eq!(v.kind, "pod_dns");
    assert!(v.summary.contains("cluster DNS"), "{}", v.summary);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("pod resolver") && e.contains("nxdomain")),
        "{:?}",
        v.evidence
    );
    assert!(!v.next_checks.is_empty());
}

#[test]
fn no_resolver_resolves_but_upstream_does_is_the_resolvers_between() {
    let node = with_upstream(side(D::Timeout, &[]), D::Ok);
    assert_eq!(kind(&side(D::ServFail, &[]), &node), "resolver_dns");
}

#[test]
fn upstream_nxdomain_too_is_the_name_itself() {
    let node = with_upstream(side(D::NxDomain, &[]), D::NxDomain);
    assert_eq!(kind(&side(D::NxDomain, &[]), &node), "name_not_found");
}

#[test]
fn no_dns_answer_anywhere_is_dns_not_leaving_the_node() {
    let node = with_upstream(side(D::Timeout, &[]), D::Timeout);
    assert_eq!(kind(&side(D::Timeout, &[]), &node), "dns_unreachable");
    assert_eq!(
        kind(&side(D::Refused, &[]), &side(D::Refused, &[])),
        "dns_failed"
    );
}

#[test]
fn node_reaches_pod_does_not_is_network_policy() {
    let v = decide(
        &target(),
        &side(D::Ok, &[O::Unanswered]),
        &side(D::Ok, &[O::Established]),
    );
    assert_eq!(v.kind, "network_policy");
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("pod: TCP 198.51.100.80:80 unanswered")),
        "{:?}",
        v.evidence
    );
}

#[test]
fn unanswered_from_pod_and_node_is_beyond_the_node() {
    let v = decide(
        &target(),
        &side(D::Ok, &[O::Unanswered]),
        &side(D::Ok, &[O::Unanswered]),
    );
    assert_eq!(v.kind, "beyond_node");
    assert!(
        v.summary.contains("NSG, firewall, egress device"),
        "{}",
        v.summary
    );
}

#[test]
fn refused_and_rejected_and_mixed_failures() {
    assert_eq!(
        kind(&side(D::Ok, &[O::Refused]), &side(D::Ok, &[O::Refused])),
        "refused"
    );
    let v = decide(
        &target(),
        &side(D::Ok, &[O::Unreachable]),
        &side(D::Ok, &[O::Unreachable]),
    );
    assert_eq!(v.kind, "rejected");
    assert!(v
        .evidence
        .iter()
        .any(|e| e.contains("admin-prohibited from 10.244.1.1")));
    assert_eq!(
        kind(
            &side(D::Ok, &[O::Unanswered, O::Unreachable]),
            &side(D::Ok, &[O::Unanswered, O::Unreachable])
        ),
        "rejected"
    );
    assert_eq!(
        kind(
            &side(D::Ok, &[O::Unanswered, O::Incomplete]),
            &side(D::Ok, &[O::Unanswered])
        ),
        "unreachable"
    );
}

#[test]
fn resolved_without_addresses_says_so() {
    assert_eq!(kind(&side(D::Ok, &[]), &side(D::Ok, &[])), "no_address");
}

#[test]
fn established_with_a_status_is_reachable() {
    let pod = with_http(side(D::Ok, &[O::Established]), Some(200), None);
    let v = decide(&target(), &pod, &side(D::Ok, &[O::Established]));
    assert_eq!(v.kind, "reachable");
    assert!(v.is_reachable());
    assert!(v.summary.contains("HTTP 200"));
    let tcp = CheckTarget {
        protocol: Protocol::Tcp,
        path: None,
        ..target()
    };
    assert_eq!(
        decide(
            &tcp,
            &side(D::Ok, &[O::Established]),
            &side(D::Ok, &[O::Unanswered])
        )
        .kind,
        "reachable"
    );
}

#[test]
fn established_without_http_or_its_answer_is_http_failed() {
    assert_eq!(
        kind(
            &side(D::Ok, &[O::Established]),
            &side(D::Ok, &[O::Established])
        ),
        "http_failed"
    );
    let pod = with_http(side(D::Ok, &[O::Established]), None, None);
    let v = decide(&target(), &pod, &side(D::Ok, &[]));
    assert_eq!(v.kind, "http_failed");
    assert!(v.summary.contains("no answer within the timeout"));
}

fn tls(is_established: bool, is_trusted: bool) -> TlsCheck {
    TlsCheck {
        is_established,
        version: is_established.then(|| "TLSv1_3".into()),
        cert_names: vec!["web.example.com".into()],
        is_trusted,
        error: (!is_trusted).then(|| "certificate not trusted: UnknownIssuer".into()),
    }
}

#[test]
fn tls_failures_and_untrusted_certificates() {
    let pod = with_http(
        side(D::Ok, &[O::Established]),
        None,
        Some(tls(false, false)),
    );
    assert_eq!(kind(&pod, &side(D::Ok, &[])), "tls_failed");
    let pod = with_http(
        side(D::Ok, &[O::Established]),
        Some(200),
        Some(tls(true, false)),
    );
    let v = decide(&target(), &pod, &side(D::Ok, &[]));
    assert_eq!(v.kind, "untrusted_certificate");
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("certificate for web.example.com")),
        "{:?}",
        v.evidence
    );
    let pod = with_http(
        side(D::Ok, &[O::Established]),
        Some(204),
        Some(tls(true, true)),
    );
    assert_eq!(kind(&pod, &side(D::Ok, &[])), "reachable");
}

#[test]
fn a_side_that_could_not_run_is_said_first() {
    let mut pod = side(D::Ok, &[]);
    pod.error = Some("cannot open network namespace /run/netns/x".into());
    let v = decide(&target(), &pod, &side(D::Ok, &[]));
    assert_eq!(v.kind, "check_failed");
    assert!(v.summary.contains("/run/netns/x"));
}

#[test]
fn an_address_target_skips_dns() {
    let t = crate::target::parse("198.51.100.80:80").unwrap();
    let mut pod = side(D::Ok, &[O::Unanswered]);
    pod.resolver = None;
    let mut node = side(D::Ok, &[O::Established]);
    node.resolver = None;
    assert_eq!(decide(&t, &pod, &node).kind, "network_policy");
}
