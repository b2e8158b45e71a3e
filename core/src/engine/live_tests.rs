//! The engine driven live: windows, time without packets, traffic counted elsewhere.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::Traffic;
use crate::decode::tcp_flags::{ACK, SYN};
use crate::dns::DnsOutcome;
use crate::report::Report;
use crate::testutil::{dns_query, dns_response, tcp, udp};
use crate::{Config, Engine, Profile};

const POD: &str = "10.244.1.10";
const MS: u64 = 1_000_000;

fn live_engine() -> Engine {
    let cfg = Config {
        count_traffic: false,
        ..Config::default()
    };
    Engine::with_config(&Profile::default(), cfg)
}

fn outcomes(r: &Report, dst: &str, port: u16) -> Vec<(String, u64)> {
    r.connections
        .iter()
        .filter(|c| c.dst.to_string() == dst && c.dst_port == port)
        .flat_map(|c| c.outcomes.iter().map(|(k, v)| (k.to_string(), *v)))
        .collect()
}

#[test]
fn an_unanswered_syn_is_reported_in_the_window_its_timeout_passes_even_with_no_packets() {
    let mut e = live_engine();
    e.observe(
        &tcp(POD, 40000, "203.0.113.7", 443, SYN, 1, 0, b"")
            .at_ms(1_000)
            .packet(),
    );
    e.advance(2_000 * MS);
    let first = e.drain();
    assert!(
        outcomes(&first, "203.0.113.7", 443).is_empty(),
        "not decided before 3 s"
    );
    e.advance(4_100 * MS);
    let second = e.drain();
    assert_eq!(
        outcomes(&second, "203.0.113.7", 443),
        vec![("unanswered".to_string(), 1)]
    );
    let third = e.drain();
    assert!(third.connections.is_empty(), "counted once, in one window");
    assert!(
        third.findings.is_empty(),
        "a quiet window has nothing to say"
    );
}

#[test]
fn an_established_flow_keeps_its_group_across_windows_and_traffic_lands_in_it() {
    let mut e = live_engine();
    e.observe(
        &tcp(POD, 40001, "10.0.0.10", 80, SYN, 1, 0, b"")
            .at_ms(0)
            .packet(),
    );
    e.observe(
        &tcp("10.0.0.10", 80, POD, 40001, SYN | ACK, 9, 2, b"")
            .at_ms(1)
            .packet(),
    );
    let first = e.drain();
    assert_eq!(
        outcomes(&first, "10.0.0.10", 80),
        vec![("established".to_string(), 1)]
    );
    // The datapath counted the data that followed; the server's direction says "in".
    let from_server = Traffic {
        src: "10.0.0.10".parse().unwrap(),
        dst: POD.parse().unwrap(),
        sport: 80,
        dport: 40001,
        proto: 6,
        packets: 10,
        ip_bytes: 14_000,
    };
    e.add_traffic(&from_server);
    let second = e.drain();
    let c = &second.connections[0];
    assert_eq!((c.src.to_string(), c.dst_port), (POD.to_string(), 80));
    assert_eq!((c.packets_in, c.bytes_in, c.packets_out), (10, 14_000, 0));
    assert!(
        c.outcomes.is_empty(),
        "the attempt was reported in the first window"
    );
}

#[test]
fn traffic_of_a_flow_the_engine_never_saw_is_oriented_by_ports() {
    let mut e = live_engine();
    e.add_traffic(&Traffic {
        src: POD.parse().unwrap(),
        dst: "198.51.100.9".parse().unwrap(),
        sport: 51000,
        dport: 123,
        proto: 17,
        packets: 2,
        ip_bytes: 152,
    });
    let r = e.drain();
    let c = &r.connections[0];
    assert_eq!(
        (c.src.to_string(), c.dst_port, c.proto.as_str()),
        (POD.to_string(), 123, "udp")
    );
    assert_eq!((c.packets_out, c.bytes_out), (2, 152));
}

#[test]
fn observed_control_packets_are_not_counted_as_traffic_when_the_datapath_counts() {
    let mut e = live_engine();
    e.observe(
        &tcp(POD, 40002, "10.0.0.10", 80, SYN, 1, 0, b"")
            .at_ms(0)
            .packet(),
    );
    e.observe(
        &tcp("10.0.0.10", 80, POD, 40002, SYN | ACK, 9, 2, b"")
            .at_ms(1)
            .packet(),
    );
    let r = e.drain();
    assert_eq!(
        (r.connections[0].packets_out, r.connections[0].packets_in),
        (0, 0)
    );
}

#[test]
fn a_dns_lookup_is_reported_once_closed_and_a_search_run_spanning_windows_is_one_lookup() {
    let mut e = live_engine();
    let q1 = dns_query(
        1,
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
    );
    let r1 = dns_response(
        1,
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
        ResponseCode::NXDomain,
        &[],
    );
    e.observe(&udp(POD, 5353, "10.0.0.10", 53, &q1).at_ms(0).packet());
    e.observe(&udp("10.0.0.10", 53, POD, 5353, &r1).at_ms(2).packet());
    let first = e.drain();
    assert!(first.dns.is_empty(), "the search run is still open");
    let q2 = dns_query(2, "api.example.com.", RecordType::A);
    let r2 = dns_response(
        2,
        "api.example.com.",
        RecordType::A,
        ResponseCode::NoError,
        &["203.0.113.5"],
    );
    e.observe(&udp(POD, 5353, "10.0.0.10", 53, &q2).at_ms(5).packet());
    e.observe(&udp("10.0.0.10", 53, POD, 5353, &r2).at_ms(7).packet());
    e.advance(3_000 * MS);
    let second = e.drain();
    assert_eq!(second.dns.len(), 1, "{:#?}", second.dns);
    let d = &second.dns[0];
    assert_eq!(d.name, "api.example.com");
    assert_eq!(d.outcomes.get(&DnsOutcome::Ok), Some(&1));
    assert_eq!(d.expansions, 1);
    assert!(e.drain().dns.is_empty(), "reported once");
}

#[test]
fn each_window_report_covers_its_own_time_span() {
    let mut e = live_engine();
    e.advance(10_000 * MS);
    let a = e.drain();
    e.advance(20_000 * MS);
    let b = e.drain();
    assert_eq!(a.capture.last_seen, b.capture.first_seen);
    assert_ne!(b.capture.first_seen, b.capture.last_seen);
}
