//! The view's storage: what reports add to the rollups, what a range reads back, and what
//! ageing keeps.

use std::collections::BTreeMap;
use std::path::Path;

use outflow_core::report::{ConnectionRecord, DnsRecord, Latency};
use outflow_core::wire::view::{GroupBy, OTHER_DESTINATIONS};
use outflow_core::wire::{NodeReport, Scope, Scoped};
use outflow_core::{Category, DnsOutcome, Outcome};

use super::rollup::KEPT_DESTINATIONS;
use super::*;

pub(super) const S: u64 = 1_000_000_000;
/// A minute boundary well in the past, so tests choose every time themselves.
pub(super) const T0: u64 = 1_800_000_000 / 60 * 60 * S;

pub(super) fn scope(ns: &str, pod: &str, workload: &str) -> Scope {
    Scope {
        pod: Some(pod.into()),
        namespace: Some(ns.into()),
        workload: Some(workload.into()),
        node: String::new(),
        ..Default::default()
    }
}

pub(super) fn conn(
    scope: &Scope,
    dst: &str,
    name: Option<&str>,
    category: Category,
    outcomes: &[(Outcome, u64)],
) -> Scoped<ConnectionRecord> {
    Scoped {
        scope: scope.clone(),
        record: ConnectionRecord {
            src: "10.244.1.10".parse().unwrap(),
            dst: dst.parse().unwrap(),
            dst_port: 443,
            proto: "tcp".into(),
            category,
            label: None,
            destination: None,
            egress: None,
            outcomes: outcomes.iter().copied().collect(),
            unreachable_codes: BTreeMap::new(),
            icmp_from: vec![],
            syn_retransmissions: 0,
            handshake_ms: Some(Latency {
                min: 1.0,
                avg: 2.0,
                max: 3.0,
                count: 1,
            }),
            packets_out: 1,
            packets_in: 1,
            bytes_out: 60,
            bytes_in: 60,
            names: name.into_iter().map(String::from).collect(),
            http_statuses: BTreeMap::new(),
            proxy_connects: vec![],
            tunnel: None,
            first_seen: String::new(),
            last_seen: String::new(),
            ingress_iface: None,
        },
    }
}

pub(super) fn lookup(
    scope: &Scope,
    name: &str,
    answers: &[&str],
    outcomes: &[(DnsOutcome, u64)],
) -> Scoped<DnsRecord> {
    Scoped {
        scope: scope.clone(),
        record: DnsRecord {
            client: "10.244.1.10".parse().unwrap(),
            name: name.into(),
            qtype: "A".into(),
            outcomes: outcomes.iter().copied().collect(),
            servers: vec!["10.0.0.10".parse().unwrap()],
            latency_ms: None,
            expansions: 0,
            queries: 1,
            resolved_as: None,
            answers: answers.iter().map(|a| a.parse().unwrap()).collect(),
            transport: "udp".into(),
            first_seen: String::new(),
            last_seen: String::new(),
            ingress_iface: None,
        },
    }
}

pub(super) fn report(node: &str, id: &str, end_ns: u64) -> NodeReport {
    NodeReport {
        report_id: Some(id.into()),
        ..NodeReport::empty(node, (end_ns - 10 * S, end_ns), "ebpf")
    }
}

pub(super) fn store() -> Store {
    Store::open(Path::new(":memory:"), u64::MAX).unwrap()
}

fn matrix(s: &Store, from_ns: u64, to_ns: u64, by: GroupBy) -> outflow_core::wire::view::FlowView {
    s.matrix(&MatrixQuery {
        from_ns,
        to_ns,
        by,
        namespace: None,
        search: None,
    })
    .unwrap()
}

fn cell_of(
    s: &Store,
    namespace: &str,
    category: Category,
    from_ns: u64,
    to_ns: u64,
) -> Vec<outflow_core::wire::view::DestinationHealth> {
    s.destinations(&CellQuery {
        from_ns,
        to_ns,
        namespace: namespace.into(),
        workload: None,
        category,
    })
    .unwrap()
}

/// Two nodes report a namespace reaching a public API that fails and one that works, and its
/// lookups: the matrix sums both nodes into one cell, with failures in the right time slot,
/// and the cell's destinations name the failing one first with its nodes and a pod to capture.
#[test]
fn reports_from_two_nodes_become_one_cell_with_its_failing_destination_first() {
    let mut s = store();
    let web = scope("shop", "web-1", "deployment/web");
    for (node, t) in [("node-a", T0 + 30 * S), ("node-b", T0 + 90 * S)] {
        let web = Scope {
            node: node.into(),
            ..web.clone()
        };
        let mut r = report(node, "i-1", t);
        r.connections = vec![
            conn(
                &web,
                "203.0.113.5",
                Some("api.example.com"),
                Category::Public,
                &[(Outcome::Unanswered, 3)],
            ),
            conn(
                &web,
                "203.0.113.6",
                Some("ok.example.com"),
                Category::Public,
                &[(Outcome::Established, 7)],
            ),
        ];
        r.dns = vec![lookup(
            &web,
            "ok.example.com",
            &["203.0.113.6"],
            &[(DnsOutcome::Ok, 2)],
        )];
        assert_eq!(s.insert(&r).unwrap(), Stored::New);
    }
    let view = matrix(&s, T0, T0 + 15 * 60 * S, GroupBy::Namespace);
    assert_eq!(view.rows.len(), 1, "{view:?}");
    let row = &view.rows[0];
    assert_eq!(
        (row.namespace.as_str(), row.workload.as_deref()),
        ("shop", None)
    );
    assert_eq!(row.cells.len(), 1);
    let cell = &row.cells[0];
    assert_eq!(cell.category, Category::Public);
    assert_eq!(cell.connections[&Outcome::Unanswered], 6);
    assert_eq!(cell.connections[&Outcome::Established], 14);
    // The lookup's answer is an address the report connected to: it is public too.
    assert_eq!(cell.dns[&DnsOutcome::Ok], 4);
    assert_eq!((cell.failures, cell.total, cell.nodes), (6, 24, 2));
    assert!((cell.failure_share - 0.25).abs() < 1e-9);
    // 15 minutes in 30 slots of 30 s: the first minute's failures in slot 0, the second's in 2.
    assert_eq!(view.slot_ns, 30 * S);
    assert_eq!(cell.timeline[0], 3);
    assert_eq!(cell.timeline[2], 3);
    assert_eq!(cell.timeline.iter().sum::<u64>(), 6);

    let dests = cell_of(&s, "shop", Category::Public, T0, T0 + 15 * 60 * S);
    let names: Vec<_> = dests.iter().map(|d| d.destination.as_str()).collect();
    assert_eq!(
        names,
        [
            "api.example.com:443",
            "ok.example.com:443",
            "ok.example.com"
        ]
    );
    let bad = &dests[0];
    assert_eq!(bad.failures, 6);
    assert_eq!(bad.nodes, ["node-a", "node-b"]);
    assert_eq!(bad.pods, ["shop/web-1"]);
    assert_eq!(bad.first_failure_ns, Some(T0));
    assert_eq!(bad.last_failure_ns, Some(T0 + 120 * S));
    let example = bad.example_connection.as_ref().expect("an example record");
    assert_eq!(example.scope.node, "node-b", "the latest failing record");
    assert_eq!(dests[1].failures, 0);
    assert!(dests[1].example_connection.is_none());
}

/// Rows by workload keep workloads apart; a search keeps the rows that hold its text.
#[test]
fn rows_by_workload_and_a_search_narrow_the_matrix() {
    let mut s = store();
    let mut r = report("node-a", "i-1", T0 + 30 * S);
    r.connections = vec![
        conn(
            &scope("shop", "web-1", "deployment/web"),
            "10.0.0.5",
            None,
            Category::Internal,
            &[(Outcome::Refused, 1)],
        ),
        conn(
            &scope("shop", "db-0", "statefulset/db"),
            "10.0.0.6",
            None,
            Category::Internal,
            &[(Outcome::Established, 1)],
        ),
        conn(
            &scope("pay", "api-1", "deployment/api"),
            "10.0.0.6",
            None,
            Category::Internal,
            &[(Outcome::Established, 1)],
        ),
    ];
    s.insert(&r).unwrap();
    let view = matrix(&s, T0, T0 + 60 * S, GroupBy::Workload);
    let rows: Vec<_> = view
        .rows
        .iter()
        .map(|r| {
            (
                r.namespace.as_str(),
                r.workload.as_deref().unwrap(),
                r.cells[0].failures,
            )
        })
        .collect();
    // Failing rows first, then by name.
    assert_eq!(
        rows,
        [
            ("shop", "deployment/web", 1),
            ("pay", "deployment/api", 0),
            ("shop", "statefulset/db", 0)
        ]
    );
    let found = s
        .matrix(&MatrixQuery {
            from_ns: T0,
            to_ns: T0 + 60 * S,
            by: GroupBy::Workload,
            namespace: None,
            search: Some("STATEFUL".into()),
        })
        .unwrap();
    assert_eq!(found.rows.len(), 1);
    assert_eq!(found.rows[0].workload.as_deref(), Some("statefulset/db"));
}

/// A pod reaching many healthy destinations keeps the busiest by name and folds the rest; a
/// failing destination is always kept, however quiet.
#[test]
fn destinations_are_bounded_but_a_failing_one_is_always_kept() {
    let mut s = store();
    let web = scope("shop", "web-1", "deployment/web");
    let mut r = report("node-a", "i-1", T0 + 30 * S);
    for i in 0..(KEPT_DESTINATIONS + 5) {
        r.connections.push(conn(
            &web,
            &format!("203.0.113.{}", 10 + i),
            None,
            Category::Public,
            &[(Outcome::Established, 100 + i as u64)],
        ));
    }
    r.connections.push(conn(
        &web,
        "198.51.100.1",
        None,
        Category::Public,
        &[(Outcome::Unanswered, 1)],
    ));
    s.insert(&r).unwrap();
    let dests = cell_of(&s, "shop", Category::Public, T0, T0 + 60 * S);
    assert_eq!(
        dests.len(),
        KEPT_DESTINATIONS + 2,
        "kept, other, and the failing one"
    );
    assert_eq!(dests[0].destination, "198.51.100.1:443");
    let other = dests
        .iter()
        .find(|d| d.destination == OTHER_DESTINATIONS)
        .expect("other");
    // The five quietest (100..=104 attempts) are folded.
    assert_eq!(
        other.connections[&Outcome::Established],
        100 + 101 + 102 + 103 + 104
    );
    let view = matrix(&s, T0, T0 + 60 * S, GroupBy::Namespace);
    let total: u64 = (0..(KEPT_DESTINATIONS as u64 + 5))
        .map(|i| 100 + i)
        .sum::<u64>()
        + 1;
    assert_eq!(view.rows[0].cells[0].total, total, "folding loses no count");
}

/// The same report sent twice counts once in the view too.
#[test]
fn a_report_sent_again_counts_once_in_the_view() {
    let mut s = store();
    let web = scope("shop", "web-1", "deployment/web");
    let mut r = report("node-a", "i-7", T0 + 30 * S);
    r.connections = vec![conn(
        &web,
        "203.0.113.5",
        None,
        Category::Public,
        &[(Outcome::Refused, 2)],
    )];
    assert_eq!(s.insert(&r).unwrap(), Stored::New);
    assert_eq!(s.insert(&r).unwrap(), Stored::Again);
    let view = matrix(&s, T0, T0 + 60 * S, GroupBy::Namespace);
    assert_eq!(view.rows[0].cells[0].connections[&Outcome::Refused], 2);
}

/// Lookups without answers are placed by name: the cluster's own names are internal, others
/// public; a failing lookup's name is a destination with evidence.
#[test]
fn a_lookup_without_answers_is_placed_by_its_name() {
    let mut s = store();
    s.set_cluster_domain("corp.cluster.");
    let web = scope("shop", "web-1", "deployment/web");
    let mut r = report("node-a", "i-1", T0 + 30 * S);
    r.dns = vec![
        lookup(
            &web,
            "registry.corp.cluster",
            &[],
            &[(DnsOutcome::NxDomain, 1)],
        ),
        lookup(&web, "api.example.com", &[], &[(DnsOutcome::Timeout, 4)]),
    ];
    s.insert(&r).unwrap();
    let view = matrix(&s, T0, T0 + 60 * S, GroupBy::Namespace);
    let cells: Vec<_> = view.rows[0]
        .cells
        .iter()
        .map(|c| (c.category, c.failures))
        .collect();
    assert_eq!(cells, [(Category::Internal, 1), (Category::Public, 4)]);
    let dests = cell_of(&s, "shop", Category::Public, T0, T0 + 60 * S);
    assert_eq!(dests[0].destination, "api.example.com");
    assert_eq!(dests[0].dns[&DnsOutcome::Timeout], 4);
    assert_eq!(
        dests[0].example_dns.as_ref().unwrap().record.servers[0].to_string(),
        "10.0.0.10"
    );
}

/// Ageing merges whole hours of minutes into hour buckets without losing a count, a range
/// still finds them, and what is past the retention goes.
#[test]
fn old_minutes_become_hours_and_the_retention_drops_whole_buckets() {
    let keep = ViewRetention {
        fine_ns: 3600 * S,
        rollups_ns: 24 * 3600 * S,
        evidence_ns: 24 * 3600 * S,
    };
    let mut s = store().with_view_retention(keep);
    let web = scope("shop", "web-1", "deployment/web");
    let hour0 = T0 / (3600 * S) * (3600 * S);
    // Three reports in three minutes of one hour.
    for (i, m) in [1u64, 20, 59].into_iter().enumerate() {
        let mut r = report("node-a", &format!("i-{i}"), hour0 + m * 60 * S);
        r.connections = vec![conn(
            &web,
            "203.0.113.5",
            None,
            Category::Public,
            &[(Outcome::Unanswered, 2)],
        )];
        s.insert(&r).unwrap();
    }
    // The rollups and the matrix's cells age alike.
    let rows = |s: &Store, width: i64| -> i64 {
        let n = |table: &str| -> i64 {
            s.db.query_row(
                &format!("SELECT count(*) FROM {table} WHERE width_s = ?1"),
                [width],
                |r| r.get(0),
            )
            .unwrap()
        };
        // Minutes are in the rollups; hours in their tier, which the matrix's cells match.
        let rollups = n(if width == 60 {
            "rollups"
        } else {
            "rollup_tiers"
        });
        assert_eq!(rollups, n("cells"), "one destination, one node: alike");
        rollups
    };
    assert_eq!((rows(&s, 60), rows(&s, 3600)), (3, 0));
    // Two hours later the whole hour is past the minutes' retention.
    s.expire(hour0 + 2 * 3600 * S + S).unwrap();
    assert_eq!((rows(&s, 60), rows(&s, 3600)), (0, 1));
    let day = matrix(
        &s,
        hour0 - 3600 * S,
        hour0 + 23 * 3600 * S,
        GroupBy::Namespace,
    );
    assert_eq!(day.rows[0].cells[0].failures, 6, "merged without loss");
    // A range starting inside the hour still sees the hour bucket.
    let inside = matrix(
        &s,
        hour0 + 30 * 60 * S,
        hour0 + 90 * 60 * S,
        GroupBy::Namespace,
    );
    assert_eq!(inside.rows[0].cells[0].failures, 6);
    // Past the retention: gone, and the evidence with it.
    s.expire(hour0 + 26 * 3600 * S).unwrap();
    assert_eq!((rows(&s, 60), rows(&s, 3600)), (0, 0));
    let nodes: i64 =
        s.db.query_row("SELECT count(*) FROM cell_nodes", [], |r| r.get(0))
            .unwrap();
    assert_eq!(nodes, 0, "the cells' nodes go with them");
    let evidence: i64 =
        s.db.query_row("SELECT count(*) FROM evidence", [], |r| r.get(0))
            .unwrap();
    assert_eq!(evidence, 0);
}

/// Counts near the integer limit stop at the limit instead of wrapping or failing the insert.
#[test]
fn huge_counts_saturate_instead_of_failing() {
    let mut s = store();
    let web = scope("shop", "web-1", "deployment/web");
    for i in 0..2 {
        let mut r = report("node-a", &format!("i-{i}"), T0 + 30 * S);
        r.connections = vec![conn(
            &web,
            "203.0.113.5",
            None,
            Category::Public,
            &[(Outcome::Refused, u64::MAX)],
        )];
        assert_eq!(s.insert(&r).unwrap(), Stored::New);
    }
    let view = matrix(&s, T0, T0 + 60 * S, GroupBy::Namespace);
    assert_eq!(view.rows[0].cells[0].failures, 1 << 53);
}

/// A report that ends just after a minute began is in a range that ends in that same second:
/// the view right after a report shows it.
#[test]
fn a_bucket_begun_in_the_ranges_last_second_is_in_it() {
    let mut s = store();
    let web = scope("shop", "web-1", "deployment/web");
    let end = T0 + 60 * S + 5_000_000;
    let mut r = report("node-a", "i-1", end);
    r.connections = vec![conn(
        &web,
        "203.0.113.5",
        None,
        Category::Public,
        &[(Outcome::Refused, 1)],
    )];
    s.insert(&r).unwrap();
    let view = matrix(&s, end - 15 * 60 * S, end + 1_000_000, GroupBy::Namespace);
    assert_eq!(view.rows.len(), 1, "{view:?}");
    let input = s
        .diagnosis_input(end - 15 * 60 * S, end + 1_000_000, end)
        .unwrap();
    assert_eq!(input.facts.len(), 1);
}

/// Past its size bound the store deletes its oldest records first, keeping the newest and the
/// view; with no records left to take, the oldest buckets go.
#[test]
fn past_its_size_bound_the_store_drops_the_oldest_first() {
    let mut s = store();
    let web = scope("shop", "web-1", "deployment/web");
    for i in 0..200u64 {
        let mut r = report("node-a", &format!("i-{i}"), T0 + i * 60 * S);
        r.connections = (0..20)
            .map(|j| {
                conn(
                    &web,
                    &format!("203.0.113.{j}"),
                    None,
                    Category::Public,
                    &[(Outcome::Established, 1)],
                )
            })
            .collect();
        s.insert(&r).unwrap();
    }
    let full = s.used_bytes().unwrap();
    // The log is compressed: a tenth less is all records, not yet the view.
    let bound = full / 10 * 9;
    s.trim_to(bound).unwrap();
    assert!(
        s.used_bytes().unwrap() <= bound,
        "{} > {bound}",
        s.used_bytes().unwrap()
    );
    let windows = |s: &Store| -> (i64, i64) {
        s.db.query_row(
            "SELECT min(window_end_ns), max(window_end_ns) FROM reports",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (oldest, newest) = windows(&s);
    assert_eq!(
        newest as u64,
        T0 + 199 * 60 * S,
        "the newest report is kept"
    );
    assert!(oldest as u64 > T0, "the oldest went first");
    // The view still spans everything: records go before buckets.
    // (The first report ended at T0: its bucket is the minute before.)
    let view = matrix(&s, T0 - 60 * S, T0 + 200 * 60 * S, GroupBy::Namespace);
    assert_eq!(view.rows[0].cells[0].total, 200 * 20);
    // Nothing but buckets left to take: the oldest buckets go.
    s.trim_to(0).unwrap();
    let view = matrix(&s, T0 - 60 * S, T0 + 200 * 60 * S, GroupBy::Namespace);
    assert!(view.rows.is_empty() || view.rows[0].cells[0].total < 200 * 20);
}

/// Sums of `table` by (bucket, width, namespace, workload, kind, category, outcome).
/// A bucket's sum: bucket, width, namespace, workload, kind, category, outcome, count.
type Sum = (i64, i64, String, String, String, String, String, i64);

fn sums(s: &Store, table: &str) -> Vec<Sum> {
    let mut stmt =
        s.db.prepare(&format!(
            "SELECT bucket_s, width_s, namespace, workload, kind, category, outcome, sum(count)
             FROM {table} GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7"
        ))
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Three nodes, two namespaces, many destinations, lookups, over two hours: the matrix's cells
/// hold exactly the rollups' sums without node and destination, before and after ageing, and a
/// cell's node count is the nodes its traffic came from.
#[test]
fn the_matrix_cells_are_the_rollups_without_node_and_destination() {
    let keep = ViewRetention {
        fine_ns: 3600 * S,
        ..ViewRetention::default()
    };
    let mut s = store().with_view_retention(keep);
    let hour0 = T0 / (3600 * S) * (3600 * S);
    let shop = scope("shop", "web-1", "deployment/web");
    let pay = scope("pay", "api-1", "deployment/api");
    for (i, minute) in [3u64, 17, 42, 65, 90, 118].into_iter().enumerate() {
        for (n, node) in ["node-a", "node-b", "node-c"].into_iter().enumerate() {
            let mut r = report(node, &format!("{node}-{i}"), hour0 + minute * 60 * S);
            // pay only on node-a; shop everywhere, failing on node-c.
            r.connections = (0..20)
                .map(|d| {
                    let outcome = if n == 2 && d % 4 == 0 {
                        Outcome::Unanswered
                    } else {
                        Outcome::Established
                    };
                    conn(
                        &shop,
                        &format!("203.0.113.{d}"),
                        None,
                        Category::Public,
                        &[(outcome, 1 + d as u64 % 3)],
                    )
                })
                .collect();
            if n == 0 {
                r.connections.push(conn(
                    &pay,
                    "10.0.5.5",
                    None,
                    Category::Internal,
                    &[(Outcome::Refused, 2)],
                ));
            }
            r.dns = vec![lookup(
                &shop,
                "api.example.com",
                &[],
                &[(DnsOutcome::Ok, 3)],
            )];
            s.insert(&r).unwrap();
        }
    }
    assert!(sums(&s, "rollups").len() > 10);
    assert_eq!(sums(&s, "rollups"), sums(&s, "cells"));
    s.expire(hour0 + 3 * 3600 * S).unwrap();
    let aged = sums(&s, "cells");
    assert!(aged.iter().all(|r| r.1 == 3600), "all hours now: {aged:?}");
    assert_eq!(
        sums(&s, "(SELECT * FROM rollup_tiers WHERE width_s = 3600)"),
        aged
    );

    let m = matrix(&s, hour0, hour0 + 2 * 3600 * S, GroupBy::Namespace);
    let cell = |ns: &str, c: Category| {
        let row = m.rows.iter().find(|r| r.namespace == ns).unwrap();
        row.cells.iter().find(|x| x.category == c).unwrap().clone()
    };
    assert_eq!(cell("shop", Category::Public).nodes, 3);
    assert_eq!(cell("pay", Category::Internal).nodes, 1);
    assert_eq!(cell("pay", Category::Internal).failures, 12);
}

/// A store written before the matrix had cells gains them from its rollups when opened.
#[test]
fn a_store_from_before_the_cells_gains_them_from_its_rollups() {
    let dir = std::env::temp_dir().join(format!("outflow-cells-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let _ = std::fs::remove_file(&path);
    let web = scope("shop", "web-1", "deployment/web");
    let mut s = Store::open(&path, u64::MAX).unwrap();
    for node in ["node-a", "node-b"] {
        let mut r = report(node, "1", T0 + 30 * S);
        r.connections = vec![conn(
            &web,
            "203.0.113.5",
            None,
            Category::Public,
            &[(Outcome::Unanswered, 2), (Outcome::Established, 5)],
        )];
        s.insert(&r).unwrap();
    }
    let before = matrix(&s, T0, T0 + 60 * S, GroupBy::Workload);
    s.db.execute_batch("DROP TABLE cells; DROP TABLE cell_nodes;")
        .unwrap();
    drop(s);
    let s = Store::open(&path, u64::MAX).unwrap();
    let after = matrix(&s, T0, T0 + 60 * S, GroupBy::Workload);
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&before).unwrap()
    );
    assert_eq!(after.rows[0].cells[0].nodes, 2);
    assert_eq!(after.rows[0].cells[0].failures, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sums per (namespace, node, destination, outcome) of the rollup rows a range reads at
/// `width`.
fn read_at(
    s: &Store,
    width: u64,
    from_ns: u64,
    to_ns: u64,
) -> Vec<(String, String, String, String, i64)> {
    let (from_s, to_s) = view::range_secs(from_ns, to_ns);
    let mut stmt =
        s.db.prepare(&format!(
            "SELECT namespace, node, destination, outcome, sum(count)
             FROM {} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            tiers::rows_in_range(width)
        ))
        .unwrap();
    let rows = stmt
        .query_map(rusqlite::params![from_s, to_s], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Three days of reports from two nodes, aged by the timer as they come: each tier, read over
/// whole days, counts what the minutes count; a report that comes late for a folded minute is
/// counted once in every tier; a long range is read from the days.
#[test]
fn every_tier_counts_what_the_minutes_count_and_a_late_report_once() {
    let keep = ViewRetention {
        fine_ns: 8 * 24 * 3600 * S,
        ..ViewRetention::default()
    };
    let mut s = store().with_view_retention(keep);
    let day0 = T0 / (86_400 * S) * (86_400 * S);
    let web = scope("shop", "web-1", "deployment/web");
    let mut seq = 0;
    let mut send = |s: &mut Store, node: &str, end_ns: u64, outcome: Outcome| {
        seq += 1;
        let mut r = report(node, &format!("r-{seq}"), end_ns);
        r.connections = vec![
            conn(&web, "203.0.113.5", None, Category::Public, &[(outcome, 2)]),
            conn(
                &web,
                "198.51.100.9",
                None,
                Category::Public,
                &[(Outcome::Established, 1)],
            ),
        ];
        s.insert(&r).unwrap();
    };
    for step in 0..(3 * 24 * 2) {
        let end = day0 + step * 1800 * S + 45 * S;
        for node in ["node-a", "node-b"] {
            let outcome = if step % 3 == 0 {
                Outcome::Unanswered
            } else {
                Outcome::Established
            };
            send(&mut s, node, end, outcome);
        }
        // Every other time a tier at a time first, as the retention timer does.
        if step % 2 == 0 {
            let mut folds = 0;
            while s.fold_step(end + 61 * S).unwrap() {
                folds += 1;
            }
            assert!((1..=tiers::TIERS.len()).contains(&folds), "{folds} folds");
        }
        s.expire(end + 61 * S).unwrap();
    }
    let (from, to) = (day0, day0 + 3 * 86_400 * S);
    let minutes = read_at(&s, 60, from, to);
    assert!(!minutes.is_empty());
    for w in tiers::TIERS {
        assert_eq!(read_at(&s, w, from, to), minutes, "the {w} s tier");
    }
    // Late: a report for the first day, after it was folded.
    send(&mut s, "node-a", day0 + 600 * S + 10 * S, Outcome::Refused);
    let minutes = read_at(&s, 60, from, to);
    assert!(minutes.iter().any(|r| r.3 == "refused" && r.4 == 2));
    for w in tiers::TIERS {
        assert_eq!(
            read_at(&s, w, from, to),
            minutes,
            "the {w} s tier, late report"
        );
    }
    assert_eq!(tiers::width_for(7 * 86_400, &keep), 86_400);
    assert_eq!(tiers::width_for(86_400, &keep), 3_600);
    assert_eq!(tiers::width_for(3_600, &keep), 600);
    assert_eq!(tiers::width_for(900, &keep), 60);
}

/// Over a week read from the day tier, a failure that stopped half an hour ago is not taken
/// for one still happening, and one failing this minute keeps its last time to the minute, in
/// the diagnoses' facts and in the drill-down.
#[test]
fn a_long_range_tells_a_failure_that_stopped_from_one_still_failing() {
    let mut s = store();
    let now = T0 + 12 * 3600 * S + 30 * S;
    let web = scope("shop", "web-1", "deployment/web");
    for (id, end, dst) in [
        ("old", now - 1800 * S, "203.0.113.5"),
        ("new", now - 20 * S, "203.0.113.6"),
    ] {
        let mut r = report("node-a", id, end);
        r.connections = vec![conn(
            &web,
            dst,
            None,
            Category::Public,
            &[(Outcome::Unanswered, 3)],
        )];
        s.insert(&r).unwrap();
    }
    s.expire(now).unwrap();
    let input = s.diagnosis_input(now - 7 * 86_400 * S, now, now).unwrap();
    let last = |dst: &str| {
        input
            .facts
            .iter()
            .find(|f| f.destination.starts_with(dst))
            .map(|f| (f.last_ns, f.count))
            .unwrap()
    };
    let (old_last, old_count) = last("203.0.113.5");
    let (new_last, new_count) = last("203.0.113.6");
    assert_eq!((old_count, new_count), (3, 3));
    assert!(
        old_last <= now - 600 * S,
        "stopped: {}",
        (now - old_last) / S
    );
    assert!(
        new_last >= now - 120 * S,
        "still failing: {}",
        (now - new_last) / S
    );
    assert!(new_last <= now);
    // The drill-down over the week says the same.
    let cell = cell_of(&s, "shop", Category::Public, now - 7 * 86_400 * S, now);
    let last_failure = |dst: &str| {
        cell.iter()
            .find(|d| d.destination.starts_with(dst))
            .and_then(|d| d.last_failure_ns)
            .unwrap()
    };
    assert!(last_failure("203.0.113.5") <= now - 600 * S);
    assert!(last_failure("203.0.113.6") >= now - 120 * S);
}
