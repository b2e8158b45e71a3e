//! Each fault of the AKS egress checklist, as the rollups of a two-node cluster show it, gives
//! its one diagnosis with the right scope; a healthy cluster gives none.

use std::collections::BTreeMap;

use outflow_core::category::Category;
use outflow_core::report::{ConnectionRecord, DnsRecord};
use outflow_core::wire::diagnosis::{DiagnosisKind, DiagnosisState};
use outflow_core::wire::{Scope, Scoped};
use outflow_core::{DnsOutcome, Outcome};

use crate::*;

const S: u64 = 1_000_000_000;
const NOW: u64 = 1_800_000_000 * S;

fn fact(ns: &str, wl: &str, node: &str, cat: Category, dest: &str, o: FactOutcome, n: u64) -> Fact {
    Fact {
        namespace: ns.into(),
        workload: wl.into(),
        node: node.into(),
        category: cat,
        destination: dest.into(),
        outcome: o,
        count: n,
        first_ns: NOW - 10 * 60 * S,
        last_ns: NOW - 30 * S,
    }
}

use FactOutcome::{Connection as C, Dns as D};

/// Two namespaces on two nodes reaching two public APIs, the cluster DNS and each other.
fn healthy() -> Vec<Fact> {
    let mut f = Vec::new();
    for (ns, wl, node) in [
        ("shop", "deployment/web", "node-a"),
        ("pay", "deployment/api", "node-b"),
        ("shop", "deployment/web", "node-b"),
    ] {
        for dest in ["api.example.com:443", "cdn.example.net:443"] {
            f.push(fact(
                ns,
                wl,
                node,
                Category::Public,
                dest,
                C(Outcome::Established),
                20,
            ));
        }
        f.push(fact(
            ns,
            wl,
            node,
            Category::Internal,
            "service shop/db, port 5432",
            C(Outcome::Established),
            5,
        ));
        f.push(fact(
            ns,
            wl,
            node,
            Category::Public,
            "api.example.com",
            D(DnsOutcome::Ok),
            10,
        ));
        f.push(fact(
            ns,
            wl,
            node,
            Category::Internal,
            "db.shop.svc.cluster.local",
            D(DnsOutcome::Ok),
            10,
        ));
    }
    f.push(fact(
        "kube-system",
        "deployment/coredns",
        "node-a",
        Category::Public,
        "api.example.com",
        D(DnsOutcome::Ok),
        3,
    ));
    f
}

fn input(facts: Vec<Fact>, examples: Vec<Example>) -> Input {
    Input {
        now_ns: NOW,
        facts,
        examples,
    }
}

/// Replaces the outcome of every fact that `which` picks.
fn break_where(facts: &mut [Fact], which: impl Fn(&Fact) -> bool, to: FactOutcome) {
    for f in facts.iter_mut().filter(|f| which(f)) {
        f.outcome = to;
    }
}

fn kinds(input: &Input) -> Vec<DiagnosisKind> {
    diagnose(input).iter().map(|d| d.kind).collect()
}

fn dns_example(ns: &str, wl: &str, node: &str, name: &str, server: &str, o: DnsOutcome) -> Example {
    Example {
        namespace: ns.into(),
        workload: wl.into(),
        node: node.into(),
        pod: format!("{ns}/{}-0", wl.rsplit('/').next().unwrap()),
        destination: name.into(),
        last_ns: NOW - 30 * S,
        record: ExampleRecord::Dns(Box::new(Scoped {
            scope: Scope::default(),
            record: DnsRecord {
                client: "10.244.1.5".parse().unwrap(),
                name: name.into(),
                qtype: "A".into(),
                outcomes: BTreeMap::from([(o, 1)]),
                servers: vec![server.parse().unwrap()],
                latency_ms: None,
                expansions: 0,
                queries: 2,
                resolved_as: None,
                answers: vec![],
                transport: "udp".into(),
                first_seen: String::new(),
                last_seen: String::new(),
                ingress_iface: None,
            },
        })),
    }
}

fn conn_example(
    ns: &str,
    node: &str,
    dest: &str,
    dst: &str,
    o: Outcome,
    egress: Option<&str>,
) -> Example {
    Example {
        namespace: ns.into(),
        workload: "deployment/web".into(),
        node: node.into(),
        pod: format!("{ns}/web-1"),
        destination: dest.into(),
        last_ns: NOW - 30 * S,
        record: ExampleRecord::Connection(Box::new(Scoped {
            scope: Scope::default(),
            record: ConnectionRecord {
                src: "10.244.1.5".parse().unwrap(),
                dst: dst.parse().unwrap(),
                dst_port: 443,
                proto: "tcp".into(),
                category: Category::Public,
                label: None,
                destination: None,
                egress: egress.map(String::from),
                outcomes: BTreeMap::from([(o, 3)]),
                unreachable_codes: BTreeMap::new(),
                icmp_from: vec![],
                syn_retransmissions: 2,
                handshake_ms: None,
                packets_out: 3,
                packets_in: 0,
                bytes_out: 180,
                bytes_in: 0,
                names: vec![],
                http_statuses: BTreeMap::new(),
                proxy_connects: vec![],
                tunnel: None,
                first_seen: String::new(),
                last_seen: String::new(),
                ingress_iface: None,
            },
        })),
    }
}

#[test]
fn a_healthy_cluster_has_no_diagnosis() {
    assert_eq!(kinds(&input(healthy(), vec![])), []);
}

/// The upstream resolver is dead: the pods' lookups and the cluster DNS's own lookups of the
/// same name time out. The fault is the upstream, named from the cluster DNS's records.
#[test]
fn dead_upstream_dns_is_the_upstream_not_the_cluster_dns() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "api.example.com",
        D(DnsOutcome::Timeout),
    );
    let examples = vec![
        dns_example(
            "kube-system",
            "deployment/coredns",
            "node-a",
            "api.example.com",
            "10.99.0.53",
            DnsOutcome::Timeout,
        ),
        dns_example(
            "shop",
            "deployment/web",
            "node-a",
            "api.example.com",
            "10.0.0.10",
            DnsOutcome::ServFail,
        ),
    ];
    let i = input(f, examples);
    let d = diagnose(&i);
    assert_eq!(d.len(), 1, "{d:#?}");
    let d = &d[0];
    assert_eq!(d.kind, DiagnosisKind::DnsUpstreamDown);
    assert_eq!(d.id, "dns-upstream-down:10.99.0.53");
    assert_eq!(d.scope.namespaces, ["kube-system", "pay", "shop"]);
    assert_eq!(d.scope.nodes, ["node-a", "node-b"]);
    assert_eq!(d.scope.destinations, ["api.example.com"]);
    assert!(d.summary.contains("10.99.0.53"), "{}", d.summary);
    assert!(
        d.fault.contains("10.99.0.53") && !d.fault.contains("168.63.129.16"),
        "{}",
        d.fault
    );
    assert_eq!(d.state, DiagnosisState::Active);
    assert_eq!(d.evidence.counts["timeout"], 33);
    assert!(
        d.next_checks[0].contains("nslookup api.example.com 10.99.0.53"),
        "{:?}",
        d.next_checks
    );
}

/// Azure DNS as the upstream is named as Azure's.
#[test]
fn azure_dns_as_the_upstream_is_named() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "api.example.com",
        D(DnsOutcome::Timeout),
    );
    let examples = vec![dns_example(
        "kube-system",
        "deployment/coredns",
        "node-a",
        "api.example.com",
        "168.63.129.16",
        DnsOutcome::Timeout,
    )];
    let d = diagnose(&input(f, examples));
    assert_eq!(d.len(), 1);
    assert!(
        d[0].fault.contains("Azure DNS (168.63.129.16)"),
        "{}",
        d[0].fault
    );
}

/// Pods' lookups time out while the cluster DNS's own queries for the same name are answered:
/// the cluster DNS (or the way to it) is the fault.
#[test]
fn pods_failing_while_the_cluster_dns_gets_answers_is_the_cluster_dns() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "api.example.com" && f.namespace != "kube-system",
        D(DnsOutcome::Timeout),
    );
    let examples = vec![dns_example(
        "shop",
        "deployment/web",
        "node-a",
        "api.example.com",
        "10.0.0.10",
        DnsOutcome::Timeout,
    )];
    let d = diagnose(&input(f, examples));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].kind, DiagnosisKind::DnsCluster);
    assert_eq!(d[0].scope.namespaces, ["pay", "shop"]);
    assert!(d[0].fault.contains("10.0.0.10"), "{}", d[0].fault);
    assert_eq!(d[0].scope.pods, ["shop/web-0"]);
    assert_eq!(d[0].evidence.capture.as_ref().unwrap().filter, "port 53");
}

/// A name that does not exist is its own diagnosis.
#[test]
fn a_missing_name_is_named_alone() {
    let mut f = healthy();
    f.push(fact(
        "shop",
        "deployment/web",
        "node-a",
        Category::Public,
        "api.exmaple.com",
        D(DnsOutcome::NxDomain),
        4,
    ));
    let d = diagnose(&input(f, vec![]));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].kind, DiagnosisKind::DnsNameMissing);
    assert_eq!(d[0].id, "dns-name-missing:api.exmaple.com");
    assert_eq!(d[0].scope.workloads, ["shop/deployment/web"]);
}

/// One public destination is blackholed for everyone while the other works: that destination.
#[test]
fn one_blackholed_destination_is_that_destination() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "api.example.com:443",
        C(Outcome::Unanswered),
    );
    let d = diagnose(&input(
        f,
        vec![conn_example(
            "shop",
            "node-a",
            "api.example.com:443",
            "203.0.113.5",
            Outcome::Unanswered,
            None,
        )],
    ));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].kind, DiagnosisKind::Destination);
    assert_eq!(d[0].id, "destination:public/api.example.com:443");
    assert_eq!(d[0].scope.nodes, ["node-a", "node-b"]);
    assert!(d[0].summary.contains("unanswered"), "{}", d[0].summary);
    assert_eq!(
        d[0].evidence.capture.as_ref().unwrap().filter,
        "host 203.0.113.5 and tcp port 443"
    );
    assert!(
        d[0].evidence.examples[0].contains("10.244.1.5 → 203.0.113.5:443 tcp: unanswered ×3"),
        "{:?}",
        d[0].evidence.examples
    );
}

/// A destination refusing is said to refuse, with its own next check.
#[test]
fn a_refusing_destination_says_refused() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "cdn.example.net:443",
        C(Outcome::Refused),
    );
    let d = diagnose(&input(f, vec![]));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].summary.contains("refused (RST)"), "{}", d[0].summary);
    assert!(d[0].fault.contains("nothing listens"), "{}", d[0].fault);
}

/// All public traffic from one node is dropped while the other node's works: that node.
#[test]
fn one_node_failing_where_others_work_is_that_node() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.node == "node-a" && f.category == Category::Public && matches!(f.outcome, C(_)),
        C(Outcome::Unanswered),
    );
    let d = diagnose(&input(f, vec![]));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].kind, DiagnosisKind::Node);
    assert_eq!(d[0].id, "node:node-a/public");
    assert_eq!(d[0].scope.nodes, ["node-a"]);
    assert!(
        d[0].summary.contains("while node-b reach"),
        "{}",
        d[0].summary
    );
}

/// Every node fails to every public destination: the egress device, named by its type.
#[test]
fn every_node_failing_to_public_is_the_egress_device() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.category == Category::Public && matches!(f.outcome, C(_)),
        C(Outcome::Unanswered),
    );
    let d = diagnose(&input(
        f,
        vec![conn_example(
            "shop",
            "node-a",
            "api.example.com:443",
            "203.0.113.5",
            Outcome::Unanswered,
            Some("natGateway"),
        )],
    ));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].kind, DiagnosisKind::Egress);
    assert!(d[0].fault.contains("NAT gateway"), "{}", d[0].fault);
    assert!(
        d[0].summary.contains("every node (2 nodes)"),
        "{}",
        d[0].summary
    );
}

/// One namespace fails to reach what another namespace on the same node reaches: a policy.
#[test]
fn one_namespace_failing_where_another_reaches_the_same_is_a_policy() {
    let mut f = healthy();
    f.retain(|f| f.node == "node-a" || f.namespace == "pay");
    // pay moves to node-a too: the node is not the difference.
    for x in f.iter_mut() {
        x.node = "node-a".into();
    }
    break_where(
        &mut f,
        |f| f.namespace == "shop" && matches!(f.outcome, C(_)),
        C(Outcome::Unreachable),
    );
    let d = diagnose(&input(f, vec![]));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].kind, DiagnosisKind::NetworkPolicy);
    assert_eq!(d[0].id, "network-policy:shop");
    assert_eq!(d[0].scope.namespaces, ["shop"]);
    assert_eq!(d[0].scope.category, None, "both categories");
    assert!(d[0].summary.contains("that pay reach"), "{}", d[0].summary);
}

/// Failures that stopped leave a resolved diagnosis, after the active ones.
#[test]
fn failures_that_stopped_are_resolved() {
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "cdn.example.net:443",
        C(Outcome::Refused),
    );
    break_where(
        &mut f,
        |f| f.destination == "api.example.com:443",
        C(Outcome::Unanswered),
    );
    for x in f
        .iter_mut()
        .filter(|f| f.destination == "api.example.com:443")
    {
        x.last_ns = NOW - 10 * 60 * S;
        x.first_ns = NOW - 20 * 60 * S;
    }
    let d = diagnose(&input(f, vec![]));
    // Both destinations fail: the egress rule needs every public destination failing on
    // every node, and both are, so this is one egress diagnosis, active.
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].state, DiagnosisState::Active);
    let mut f = healthy();
    break_where(
        &mut f,
        |f| f.destination == "api.example.com:443",
        C(Outcome::Unanswered),
    );
    for x in f.iter_mut() {
        x.last_ns = NOW - 10 * 60 * S;
    }
    let d = diagnose(&input(f, vec![]));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, DiagnosisState::Resolved);
    assert_eq!(
        d[0].last_seen,
        outflow_core::report::rfc3339(NOW - 10 * 60 * S)
    );
}

/// A name that times out now and then is no diagnosis; an error answer the cluster DNS passes
/// on, with its own queries unseen, points at the upstream.
#[test]
fn sporadic_timeouts_are_quiet_and_passed_on_errors_point_upstream() {
    let mut f = healthy();
    f.retain(|f| f.namespace != "kube-system");
    f.push(fact(
        "shop",
        "deployment/web",
        "node-a",
        Category::Public,
        "api.example.com",
        D(DnsOutcome::Timeout),
        1,
    ));
    assert_eq!(kinds(&input(f.clone(), vec![])), []);
    f.push(fact(
        "shop",
        "deployment/web",
        "node-a",
        Category::Public,
        "vault.example.org",
        D(DnsOutcome::ServFail),
        3,
    ));
    assert_eq!(kinds(&input(f, vec![])), [DiagnosisKind::DnsUpstreamError]);
}

/// A failing destination with nothing else of its category to compare says so.
#[test]
fn a_destination_alone_in_its_category_does_not_claim_others_work() {
    let mut f = healthy();
    f.push(fact(
        "shop",
        "deployment/web",
        "node-a",
        Category::OnPrem,
        "192.168.50.5:8080",
        C(Outcome::Refused),
        2,
    ));
    let d = diagnose(&input(f, vec![]));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].summary.contains("no other onprem destination"),
        "{}",
        d[0].summary
    );
}
