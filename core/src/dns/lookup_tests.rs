//! Search-list folding, from transactions to lookups.

use super::*;
use crate::dns::DnsOutcome;

const MS: u64 = 1_000_000;

fn folder() -> Folder {
    Folder::new(SearchList::new("cluster.local", &[]), 1_000 * MS, 1000)
}

#[test]
fn search_expansions_then_success_are_one_ok_lookup() {
    let mut f = folder();
    let names = [
        "api.example.com.default.svc.cluster.local",
        "api.example.com.svc.cluster.local",
        "api.example.com.cluster.local",
        "api.example.com",
    ];
    for (i, n) in names.iter().enumerate() {
        let t = i as u64 * 10 * MS;
        f.on_query(i as u64, (1, 5353, 0), 2, 1, n.to_string(), t, false);
        let o = if i == 3 {
            DnsOutcome::Ok
        } else {
            DnsOutcome::NxDomain
        };
        f.on_answer(i as u64, o, t + MS, &[]);
    }
    let (recs, _) = f.finish();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].name, "api.example.com");
    assert_eq!(recs[0].outcomes.get(&DnsOutcome::Ok), Some(&1));
    assert_eq!(recs[0].expansions, 3);
    assert_eq!(recs[0].queries, 4);
}

#[test]
fn all_expansions_failing_is_one_nxdomain_lookup() {
    let mut f = folder();
    let names = [
        "nx.example.com.default.svc.cluster.local",
        "nx.example.com.svc.cluster.local",
        "nx.example.com",
    ];
    for (i, n) in names.iter().enumerate() {
        let t = i as u64 * 10 * MS;
        f.on_query(i as u64, (1, 5353, 0), 2, 1, n.to_string(), t, false);
        f.on_answer(i as u64, DnsOutcome::NxDomain, t + MS, &[]);
    }
    let (recs, _) = f.finish();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].name, "nx.example.com");
    assert_eq!(recs[0].outcomes.get(&DnsOutcome::NxDomain), Some(&1));
}

#[test]
fn asking_again_after_a_failed_lookup_is_a_second_lookup() {
    let mut f = folder();
    let names = ["nx.example.com.default.svc.cluster.local", "nx.example.com"];
    for round in 0..2u64 {
        for (i, n) in names.iter().enumerate() {
            let tx = round * 10 + i as u64;
            let t = (round * 10 + i as u64) * MS;
            f.on_query(tx, (1, 5353, 0), 2, 1, n.to_string(), t, false);
            f.on_answer(tx, DnsOutcome::NxDomain, t + MS / 2, &[]);
        }
    }
    let (recs, _) = f.finish();
    assert_eq!(
        recs[0].outcomes.get(&DnsOutcome::NxDomain),
        Some(&2),
        "{recs:?}"
    );
}

#[test]
fn unrelated_names_are_separate_lookups() {
    let mut f = folder();
    f.on_query(1, (1, 5353, 0), 2, 1, "a.example.com".to_string(), 0, false);
    f.on_answer(1, DnsOutcome::NxDomain, MS, &[]);
    f.on_query(
        2,
        (1, 5353, 0),
        2,
        1,
        "b.example.com".to_string(),
        2 * MS,
        false,
    );
    f.on_answer(2, DnsOutcome::NxDomain, 3 * MS, &[]);
    let (recs, _) = f.finish();
    assert_eq!(recs.len(), 2);
}

#[test]
fn a_timeout_explains_more_than_nxdomain() {
    let mut f = folder();
    f.on_query(
        1,
        (1, 5353, 0),
        2,
        1,
        "x.example.com.default.svc.cluster.local".to_string(),
        0,
        false,
    );
    f.on_answer(1, DnsOutcome::NxDomain, MS, &[]);
    f.on_query(
        2,
        (1, 5353, 0),
        2,
        1,
        "x.example.com".to_string(),
        2 * MS,
        false,
    );
    f.on_answer(2, DnsOutcome::Timeout, 5_002 * MS, &[]);
    let (recs, _) = f.finish();
    assert_eq!(
        recs[0].outcomes.get(&DnsOutcome::Timeout),
        Some(&1),
        "{recs:?}"
    );
}

#[test]
fn a_retried_name_keeps_its_own_name() {
    let mut f = folder();
    let n = "redis.default.svc.cluster.local";
    f.on_query(1, (1, 5353, 0), 2, 1, n.to_string(), 0, false);
    f.on_answer(1, DnsOutcome::Timeout, 5_000 * MS, &[]);
    f.on_query(2, (1, 5353, 0), 2, 1, n.to_string(), 5_000 * MS, false);
    f.on_answer(2, DnsOutcome::Timeout, 10_000 * MS, &[]);
    let (recs, _) = f.finish();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].name, n);
    assert_eq!(recs[0].queries, 2);
}

#[test]
fn a_truncated_udp_answer_retried_over_tcp_is_one_lookup() {
    let mut f = folder();
    let n = "big.example.com";
    f.on_query(1, (1, 40000, 0), 2, 1, n.to_string(), 0, false);
    f.on_answer(1, DnsOutcome::Truncated, MS, &[]);
    f.on_query(2, (1, 40001, 0), 2, 1, n.to_string(), 2 * MS, true);
    f.on_answer(2, DnsOutcome::Ok, 3 * MS, &[]);
    let (recs, _) = f.finish();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcomes.get(&DnsOutcome::Ok), Some(&1), "{recs:?}");
    assert_eq!(
        (recs[0].queries, recs[0].transport.as_str()),
        (2, "udp+tcp")
    );
}

#[test]
fn a_truncated_answer_without_a_tcp_retry_is_reported_as_truncated() {
    let mut f = folder();
    f.on_query(
        1,
        (1, 40000, 0),
        2,
        1,
        "big.example.com".to_string(),
        0,
        false,
    );
    f.on_answer(1, DnsOutcome::Truncated, MS, &[]);
    let (recs, _) = f.finish();
    assert_eq!(recs[0].outcomes.get(&DnsOutcome::Truncated), Some(&1));
}
