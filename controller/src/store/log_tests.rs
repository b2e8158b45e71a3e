//! The record log's blocks: queries find exactly the records a row per record found, and a
//! store of the older layout keeps its records.

use outflow_core::wire::NodeReport;
use outflow_core::{Category, DnsOutcome, Outcome};
use rusqlite::params;

use super::tests::{conn, lookup, report, scope, store, S, T0};
use super::{Filter, Kind, Store};

fn all(since_ns: u64) -> Filter {
    Filter {
        since_ns,
        limit: 1_000,
        ..Filter::default()
    }
}

fn dsts(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["dst"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Two pods' connections in two reports: 4 blocks.
fn two_reports() -> Vec<NodeReport> {
    let web = scope("shop", "web-1", "deployment/web");
    let db = scope("data", "db-0", "statefulset/db");
    (0..2u64)
        .map(|i| {
            let mut r = report("node-a", &format!("i-{i}"), T0 + i * 60 * S);
            r.connections = vec![
                conn(
                    &web,
                    &format!("203.0.113.{i}"),
                    None,
                    Category::Public,
                    &[(Outcome::Refused, 1)],
                ),
                conn(
                    &web,
                    &format!("10.1.0.{i}"),
                    None,
                    Category::Peered,
                    &[(Outcome::Established, 2)],
                ),
                conn(
                    &db,
                    &format!("192.168.0.{i}"),
                    None,
                    Category::OnPrem,
                    &[(Outcome::Unanswered, 1), (Outcome::Established, 1)],
                ),
            ];
            r.dns = vec![lookup(
                &web,
                "api.example.com",
                &[],
                &[(DnsOutcome::NxDomain, 1)],
            )];
            r
        })
        .collect()
}

#[test]
fn filters_match_records_inside_a_block_exactly_newest_first() {
    let mut s = store();
    for r in two_reports() {
        s.insert(&r).unwrap();
    }
    let q = |f: Filter| dsts(&s.query(Kind::Connection, &f).unwrap());
    assert_eq!(
        q(all(T0)),
        [
            "192.168.0.1",
            "203.0.113.1",
            "10.1.0.1",
            "192.168.0.0",
            "203.0.113.0",
            "10.1.0.0"
        ],
        "newest report first; in a report, by namespace, pod and then the report's order"
    );
    // The block of web-1 holds a refused and an established record: only the refused one.
    let refused = Filter {
        outcome: Some("refused".into()),
        ..all(T0)
    };
    assert_eq!(q(refused), ["203.0.113.1", "203.0.113.0"]);
    let peered = Filter {
        category: Some("peered".into()),
        ..all(T0)
    };
    assert_eq!(q(peered), ["10.1.0.1", "10.1.0.0"]);
    let onprem_established = Filter {
        category: Some("onprem".into()),
        outcome: Some("established".into()),
        ..all(T0)
    };
    assert_eq!(q(onprem_established), ["192.168.0.1", "192.168.0.0"]);
    let none = Filter {
        category: Some("public".into()),
        outcome: Some("established".into()),
        ..all(T0)
    };
    assert!(q(none).is_empty());
    let pod = Filter {
        pod: Some("web-1".into()),
        namespace: Some("shop".into()),
        ..all(T0)
    };
    assert_eq!(
        q(pod),
        ["203.0.113.1", "10.1.0.1", "203.0.113.0", "10.1.0.0"]
    );
    // The limit cuts inside a block and across blocks.
    assert_eq!(
        q(Filter {
            limit: 2,
            ..all(T0)
        }),
        ["192.168.0.1", "203.0.113.1"]
    );
    assert_eq!(
        q(Filter {
            limit: 4,
            ..all(T0)
        })
        .len(),
        4
    );
    // Since: the older report's window ends before.
    assert_eq!(q(all(T0 + 1)).len(), 3);
    // A key is matched whole: a prefix of an outcome matches nothing.
    assert!(q(Filter {
        outcome: Some("refuse".into()),
        ..all(T0)
    })
    .is_empty());
    let dns = s.query(Kind::Dns, &all(T0)).unwrap();
    assert_eq!(dns.len(), 2);
    assert_eq!(dns[0]["name"], "api.example.com");
    assert_eq!(dns[0]["pod"], "web-1");
}

#[test]
fn a_report_is_a_block_per_kind_and_pod_and_expires_whole() {
    let mut s = store();
    for r in two_reports() {
        s.insert(&r).unwrap();
    }
    let blocks: i64 =
        s.db.query_row("SELECT count(*) FROM record_blocks", [], |r| r.get(0))
            .unwrap();
    assert_eq!(
        blocks,
        2 * 3,
        "per report: web-1 and db-0 connections, web-1 DNS"
    );
    let store_with_retention = |s: &mut Store| {
        s.retention_ns = 30 * S;
        s.expire(T0 + 60 * S + 10 * S).unwrap()
    };
    assert_eq!(
        store_with_retention(&mut s),
        4,
        "the older report's 3 connections and lookup"
    );
    assert_eq!(s.query(Kind::Connection, &all(0)).unwrap().len(), 3);
}

/// A store written as a row per record gains its blocks when opened, with every record and
/// filter as before, and loses the old table.
#[test]
fn a_store_of_rows_per_record_moves_into_blocks() {
    let dir = std::env::temp_dir().join(format!("outflow-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    let _ = std::fs::remove_file(&path);
    let reports = two_reports();
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE records (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, node TEXT NOT NULL,
                 namespace TEXT, pod TEXT, category TEXT, outcomes TEXT NOT NULL,
                 window_end_ns INTEGER NOT NULL, json TEXT NOT NULL);",
        )
        .unwrap();
        for r in &reports {
            for c in &r.connections {
                let outcomes: String = c
                    .record
                    .outcomes
                    .keys()
                    .map(|o| format!(" {}", o.as_ref()))
                    .collect::<String>()
                    + " ";
                db.execute(
                    "INSERT INTO records (kind, node, namespace, pod, category, outcomes, window_end_ns, json)
                     VALUES ('connection', ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![r.node, c.scope.namespace, c.scope.pod, c.record.category.as_str(), outcomes, r.window_end_ns as i64, serde_json::to_string(c).unwrap()],
                )
                .unwrap();
            }
        }
    }
    let moved = Store::open(&path, u64::MAX).unwrap();
    let mut fresh = store();
    for r in &reports {
        fresh.insert(r).unwrap();
    }
    for f in [
        all(T0),
        Filter {
            outcome: Some("refused".into()),
            ..all(T0)
        },
        Filter {
            category: Some("onprem".into()),
            outcome: Some("unanswered".into()),
            ..all(T0)
        },
    ] {
        assert_eq!(
            moved.query(Kind::Connection, &f).unwrap(),
            fresh.query(Kind::Connection, &f).unwrap(),
            "{f:?}"
        );
    }
    let old_left: bool = moved
        .db
        .prepare("SELECT 1 FROM sqlite_master WHERE name = 'records'")
        .unwrap()
        .exists([])
        .unwrap();
    assert!(!old_left);
    drop(moved);
    // Opened again: nothing to move, nothing lost.
    let again = Store::open(&path, u64::MAX).unwrap();
    assert_eq!(again.query(Kind::Connection, &all(T0)).unwrap().len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A block that does not decompress is an error naming the log, not a panic.
#[test]
fn a_damaged_block_is_a_clear_error() {
    let mut s = store();
    s.insert(&two_reports()[0]).unwrap();
    s.db.execute("UPDATE record_blocks SET body = x'00ff00ff'", [])
        .unwrap();
    let e = s.query(Kind::Connection, &all(T0)).unwrap_err();
    assert!(e.to_string().contains("record log is damaged"), "{e}");
}
