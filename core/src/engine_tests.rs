//! Engine behaviour, end to end from frames to report records.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::conn::Outcome;
use crate::decode::tcp_flags::{ACK, RST, SYN};
use crate::dns::DnsOutcome;
use crate::report::Report;
use crate::testutil::{dns_query, dns_response, icmp_unreachable, tcp, udp, Frame};
use crate::{Engine, Profile};

const POD: &str = "10.244.1.10";

fn run(frames: &[Frame]) -> Report {
    run_with(frames, false)
}

fn run_with(frames: &[Frame], dedup: bool) -> Report {
    let profile = Profile::from_yaml(
        "podCIDRs: [10.244.0.0/16]\nserviceCIDRs: [10.0.0.0/16]\n",
        "p",
    )
    .unwrap();
    let mut e = Engine::new(&profile);
    if dedup {
        e.enable_dedup();
    }
    for f in frames {
        e.observe(&f.packet());
    }
    e.finish()
}

/// An A query from the pod's port `sport` to the cluster resolver.
fn pod_query(sport: u16, id: u16, name: &str) -> Frame {
    udp(
        POD,
        sport,
        "10.0.0.10",
        53,
        &dns_query(id, name, RecordType::A),
    )
}

fn outcome(r: &Report, dst: &str, port: u16, kind: Outcome) -> u64 {
    let c = r
        .connections
        .iter()
        .find(|c| c.dst.to_string() == dst && c.dst_port == port)
        .unwrap_or_else(|| panic!("no group for {dst}:{port} in {:#?}", r.connections));
    c.outcomes.get(&kind).copied().unwrap_or(0)
}

#[test]
fn handshake_is_established_with_latency_and_bytes() {
    let r = run(&[
        tcp(POD, 40000, "198.51.100.80", 80, SYN, 100, 0, b"").at_ms(0),
        tcp("198.51.100.80", 80, POD, 40000, SYN | ACK, 900, 101, b"").at_ms(12),
        tcp(POD, 40000, "198.51.100.80", 80, ACK, 101, 901, b"").at_ms(13),
    ]);
    assert_eq!(outcome(&r, "198.51.100.80", 80, Outcome::Established), 1);
    let c = &r.connections[0];
    assert_eq!(c.category.as_str(), "public");
    assert_eq!((c.packets_out, c.packets_in), (2, 1));
    assert_eq!(c.handshake_ms.unwrap().max, 12.0);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn rst_answer_is_refused_with_a_finding() {
    let r = run(&[
        tcp(POD, 40001, "192.168.50.5", 8080, SYN, 5, 0, b"").at_ms(0),
        tcp("192.168.50.5", 8080, POD, 40001, RST | ACK, 0, 6, b"").at_ms(1),
    ]);
    assert_eq!(outcome(&r, "192.168.50.5", 8080, Outcome::Refused), 1);
    assert_eq!(r.findings[0].kind, "connection_refused");
}

#[test]
fn syn_without_answer_past_timeout_is_unanswered_with_retransmissions() {
    let r = run(&[
        tcp(POD, 40002, "198.51.100.20", 443, SYN, 7, 0, b"").at_ms(0),
        tcp(POD, 40002, "198.51.100.20", 443, SYN, 7, 0, b"").at_ms(1000),
        tcp(POD, 40002, "198.51.100.20", 443, SYN, 7, 0, b"").at_ms(3000),
        // Unrelated later traffic moves packet time past the timeout.
        udp(POD, 5000, "10.0.0.10", 9999, b"x").at_ms(4000),
    ]);
    assert_eq!(outcome(&r, "198.51.100.20", 443, Outcome::Unanswered), 1);
    let c = r.connections.iter().find(|c| c.dst_port == 443).unwrap();
    assert_eq!(c.syn_retransmissions, 2);
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == "syn_unanswered")
        .expect("finding");
    assert_eq!(f.severity, crate::report::Severity::Error);
}

#[test]
fn syn_at_end_of_capture_is_incomplete() {
    let r = run(&[tcp(POD, 40003, "198.51.100.20", 443, SYN, 7, 0, b"").at_ms(0)]);
    assert_eq!(outcome(&r, "198.51.100.20", 443, Outcome::Incomplete), 1);
}

#[test]
fn icmp_prohibited_is_unreachable_with_code_and_sender() {
    let syn = tcp(POD, 40004, "203.0.113.7", 80, SYN, 9, 0, b"").at_ms(0);
    let icmp = icmp_unreachable("10.244.1.1", POD, 13, &syn).at_ms(1);
    let r = run(&[syn, icmp]);
    assert_eq!(outcome(&r, "203.0.113.7", 80, Outcome::Unreachable), 1);
    let c = &r.connections[0];
    assert_eq!(c.unreachable_codes.get("admin-prohibited"), Some(&1));
    assert_eq!(c.icmp_from[0].to_string(), "10.244.1.1");
}

#[test]
fn late_syn_ack_turns_unanswered_into_established() {
    let r = run(&[
        tcp(POD, 40005, "198.51.100.9", 443, SYN, 1, 0, b"").at_ms(0),
        tcp(POD, 40005, "198.51.100.9", 443, SYN, 1, 0, b"").at_ms(3000),
        tcp("198.51.100.9", 443, POD, 40005, SYN | ACK, 50, 2, b"").at_ms(3100),
    ]);
    assert_eq!(outcome(&r, "198.51.100.9", 443, Outcome::Established), 1);
    assert_eq!(outcome(&r, "198.51.100.9", 443, Outcome::Unanswered), 0);
}

fn exchange(id: u16, name: &str, rcode: ResponseCode, answers: &[&str], ms: u64) -> [Frame; 2] {
    [
        pod_query(33000, id, name).at_ms(ms),
        udp(
            "10.0.0.10",
            53,
            POD,
            33000,
            &dns_response(id, name, RecordType::A, rcode, answers),
        )
        .at_ms(ms + 1),
    ]
}

#[test]
fn search_list_nxdomains_fold_into_one_successful_lookup_and_name_the_destination() {
    let mut frames = Vec::new();
    for (i, n) in [
        "web.example.com.default.svc.cluster.local",
        "web.example.com.svc.cluster.local",
        "web.example.com.cluster.local",
    ]
    .iter()
    .enumerate()
    {
        frames.extend(exchange(
            i as u16 + 1,
            n,
            ResponseCode::NXDomain,
            &[],
            i as u64 * 5,
        ));
    }
    frames.extend(exchange(
        9,
        "web.example.com",
        ResponseCode::NoError,
        &["198.51.100.80"],
        20,
    ));
    frames.push(tcp(POD, 40010, "198.51.100.80", 80, SYN, 1, 0, b"").at_ms(30));
    frames.push(tcp("198.51.100.80", 80, POD, 40010, SYN | ACK, 1, 2, b"").at_ms(31));
    let r = run(&frames);
    assert_eq!(r.dns.len(), 1, "{:#?}", r.dns);
    let d = &r.dns[0];
    assert_eq!(d.name, "web.example.com");
    assert_eq!(d.outcomes.get(&DnsOutcome::Ok), Some(&1));
    assert_eq!((d.expansions, d.queries), (3, 4));
    assert!(
        r.findings.iter().all(|f| !f.kind.starts_with("dns")),
        "{:#?}",
        r.findings
    );
    let c = r.connections.iter().find(|c| c.dst_port == 80).unwrap();
    assert_eq!(c.names, vec!["web.example.com".to_string()]);
}

#[test]
fn unanswered_query_is_a_timeout_lookup() {
    let r = run(&[
        udp(
            POD,
            33001,
            "10.0.0.99",
            53,
            &dns_query(5, "web.example.com", RecordType::A),
        )
        .at_ms(0),
        udp(POD, 5000, "10.0.0.10", 9999, b"x").at_ms(6000),
    ]);
    assert_eq!(r.dns[0].outcomes.get(&DnsOutcome::Timeout), Some(&1));
    assert!(r.findings.iter().any(|f| f.kind == "dns_timeout"));
}

#[test]
fn response_to_another_question_does_not_match() {
    let r = run(&[
        pod_query(33002, 5, "a.example.com").at_ms(0),
        udp(
            "10.0.0.10",
            53,
            POD,
            33002,
            &dns_response(
                5,
                "b.example.com",
                RecordType::A,
                ResponseCode::NoError,
                &["1.2.3.4"],
            ),
        )
        .at_ms(1),
    ]);
    assert_eq!(r.capture.dns_unmatched_responses, 1);
    assert_eq!(r.dns[0].outcomes.get(&DnsOutcome::Incomplete), Some(&1));
}

#[test]
fn http_status_and_host_are_recorded() {
    let r = run(&[
        tcp(POD, 40020, "198.51.100.80", 80, SYN, 1, 0, b"").at_ms(0),
        tcp("198.51.100.80", 80, POD, 40020, SYN | ACK, 1, 2, b"").at_ms(1),
        tcp(
            POD,
            40020,
            "198.51.100.80",
            80,
            ACK,
            2,
            2,
            b"GET /x HTTP/1.1\r\nHost: web.example.com\r\n\r\n",
        )
        .at_ms(2),
        tcp(
            "198.51.100.80",
            80,
            POD,
            40020,
            ACK,
            2,
            40,
            b"HTTP/1.1 403 Forbidden\r\n\r\n",
        )
        .at_ms(3),
    ]);
    let c = &r.connections[0];
    assert_eq!(c.http_statuses.get("403"), Some(&1));
    assert_eq!(c.names, vec!["web.example.com".to_string()]);
    assert!(r.findings.iter().any(|f| f.kind == "http_forbidden"));
}

#[test]
fn proxy_connect_407_is_attributed_to_its_target() {
    let r = run(&[
        tcp(POD, 40030, "10.224.0.1", 3128, SYN, 1, 0, b"").at_ms(0),
        tcp("10.224.0.1", 3128, POD, 40030, SYN | ACK, 1, 2, b"").at_ms(1),
        tcp(
            POD,
            40030,
            "10.224.0.1",
            3128,
            ACK,
            2,
            2,
            b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n",
        )
        .at_ms(2),
        tcp(
            "10.224.0.1",
            3128,
            POD,
            40030,
            ACK,
            2,
            80,
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
        )
        .at_ms(3),
    ]);
    let c = &r.connections[0];
    assert_eq!(c.proxy_connects[0].target, "api.example.com:443");
    assert_eq!(c.proxy_connects[0].statuses.get("407"), Some(&1));
    assert!(r.findings.iter().any(|f| f.kind == "proxy_connect_failed"));
}

#[test]
fn the_same_packet_on_two_interfaces_counts_once() {
    let syn = tcp(POD, 40040, "198.51.100.80", 80, SYN, 1, 0, b"").at_ms(0);
    let synack = tcp("198.51.100.80", 80, POD, 40040, SYN | ACK, 1, 2, b"").at_ms(1);
    let r = run_with(
        &[
            syn.clone(),
            syn.on_iface(1),
            synack.clone(),
            synack.on_iface(1),
        ],
        true,
    );
    assert_eq!(r.capture.duplicates, 2);
    assert_eq!(outcome(&r, "198.51.100.80", 80, Outcome::Established), 1);
    assert_eq!(r.connections[0].packets_out, 1);
}

#[test]
fn garbage_frames_are_counted_not_fatal() {
    let mut frames = vec![Frame {
        ts_ns: 0,
        iface: 0,
        link: crate::capfile::LinkType::Ethernet,
        data: vec![0xff; 7],
    }];
    let mut bad_ip = tcp(POD, 1, "1.1.1.1", 2, SYN, 1, 0, b"");
    bad_ip.data[14] = 0x41; // IPv4 with a header length of 4 bytes
    frames.push(bad_ip);
    let mut bad_dns = udp(POD, 33003, "10.0.0.10", 53, &[0xde, 0xad, 0xbe]);
    bad_dns.ts_ns = 5;
    frames.push(bad_dns);
    let r = run(&frames);
    assert_eq!(r.capture.packets, 3);
    assert_eq!(
        r.capture.truncated_frames + r.capture.undecodable,
        2,
        "{:?}",
        r.capture
    );
    assert_eq!(r.capture.dns_malformed, 1);
}

#[test]
fn timestamps_at_the_end_of_time_do_not_overflow() {
    // Found by the capfile fuzz target: a corrupt pcapng timestamp near u64::MAX.
    let mut syn = tcp(POD, 40050, "198.51.100.20", 443, SYN, 1, 0, b"");
    syn.ts_ns = u64::MAX - 1;
    let mut query = pod_query(33004, 5, "a.example.com");
    query.ts_ns = u64::MAX;
    let r = run(&[syn, query]);
    let c = r.connections.iter().find(|c| c.dst_port == 443).unwrap();
    assert_eq!(
        c.outcomes.values().sum::<u64>(),
        1,
        "one attempt, decided once: {c:?}"
    );
    assert_eq!(r.dns.len(), 1);
}

#[test]
fn closed_connections_leave_the_table_with_their_counts_kept() {
    use crate::decode::tcp_flags::FIN;
    let dst = "198.51.100.80";
    let mut e = Engine::new(&Profile::default());
    for f in [
        tcp(POD, 40060, dst, 443, SYN, 1, 0, b"").at_ms(0),
        tcp(dst, 443, POD, 40060, SYN | ACK, 9, 2, b"").at_ms(1),
        tcp(POD, 40060, dst, 443, ACK, 2, 10, b"hello").at_ms(2),
        tcp(POD, 40060, dst, 443, FIN | ACK, 7, 10, b"").at_ms(3),
        tcp(dst, 443, POD, 40060, FIN | ACK, 10, 8, b"").at_ms(4),
        tcp(POD, 40060, dst, 443, ACK, 8, 11, b"").at_ms(5),
        tcp(POD, 40061, dst, 443, SYN, 1, 0, b"").at_ms(6),
    ] {
        e.observe(&f.packet());
    }
    assert_eq!(e.tracked_flows(), 2);
    // Past the linger the closed connection leaves; the open attempt stays.
    e.observe(
        &udp(POD, 5000, "10.0.0.10", 9999, b"x")
            .at_ms(10_000)
            .packet(),
    );
    assert_eq!(
        e.tracked_flows(),
        2,
        "the closed flow left, the UDP flow came"
    );
    let r = e.finish();
    let c = r.connections.iter().find(|c| c.dst_port == 443).unwrap();
    assert_eq!(c.outcomes.get(&Outcome::Established), Some(&1));
    assert_eq!(c.outcomes.get(&Outcome::Unanswered), Some(&1));
    assert_eq!(
        (c.packets_out, c.packets_in),
        (5, 2),
        "counts of the removed flow are kept"
    );
}

#[test]
fn answered_dns_flows_leave_the_table_after_the_linger_with_their_counts_kept() {
    let mut e = Engine::new(&Profile::default());
    let [q, a] = exchange(7, "web.example.com", ResponseCode::NoError, &["1.2.3.4"], 0);
    let unanswered = pod_query(33001, 8, "slow.example.com").at_ms(2);
    for f in [q, a, unanswered] {
        e.observe(&f.packet());
    }
    assert_eq!(e.tracked_flows(), 2);
    // 3 s later, past the linger but well inside the UDP idle time, a query from a new port:
    // the answered flow has left, the one still waiting for its answer stays.
    let next = pod_query(33002, 9, "web.example.com").at_ms(3_000);
    e.observe(&next.packet());
    assert_eq!(
        e.tracked_flows(),
        2,
        "the answered flow left, the new one came"
    );
    let r = e.finish();
    let c = r.connections.iter().find(|c| c.dst_port == 53).unwrap();
    assert_eq!((c.packets_out, c.packets_in), (3, 1), "{c:?}");
    assert_eq!(r.dns.iter().map(|d| d.queries).sum::<u64>(), 3);
}

#[test]
fn a_pods_icmp_about_a_late_reply_does_not_blame_the_server() {
    // The resolver gave up; the late answer arrives and the pod's kernel answers port-unreachable.
    let query = pod_query(33010, 6, "a.example.com").at_ms(0);
    let late = udp(
        "10.0.0.10",
        53,
        POD,
        33010,
        &dns_response(
            6,
            "a.example.com",
            RecordType::A,
            ResponseCode::NoError,
            &["1.2.3.4"],
        ),
    )
    .at_ms(6000);
    let icmp = icmp_unreachable(POD, "10.0.0.10", 3, &late).at_ms(6001);
    let r = run(&[query, late, icmp]);
    let c = r.connections.iter().find(|c| c.dst_port == 53).unwrap();
    assert!(c.outcomes.is_empty(), "{c:?}");
    assert!(
        r.findings.iter().all(|f| f.kind != "udp_unreachable"),
        "{:#?}",
        r.findings
    );
}

#[test]
fn icmp_for_a_closed_udp_port_is_unreachable() {
    let probe = udp(POD, 33011, "192.168.50.5", 514, b"syslog line").at_ms(0);
    let icmp = icmp_unreachable("192.168.50.5", POD, 3, &probe).at_ms(1);
    let r = run(&[probe, icmp]);
    assert_eq!(outcome(&r, "192.168.50.5", 514, Outcome::Unreachable), 1);
    assert!(r.findings.iter().any(|f| f.kind == "udp_unreachable"));
}

/// Frames of an unanswered SYN to `dst`, a lookup that times out, and later traffic that moves
/// packet time past both timeouts.
fn unanswered_to(dst: &str) -> Vec<Frame> {
    vec![
        tcp(POD, 40010, dst, 443, SYN, 7, 0, b"").at_ms(0),
        udp(
            POD,
            33010,
            "10.0.0.10",
            53,
            &dns_query(9, "api.example.com", RecordType::A),
        )
        .at_ms(0),
        udp(POD, 5000, "10.0.0.10", 9999, b"x").at_ms(6000),
    ]
}

/// The next checks of every finding, or of the findings of one kind.
fn next_checks(profile: &str, frames: &[Frame], kind: Option<&str>) -> String {
    let profile = Profile::from_yaml(profile, "p").unwrap();
    let mut e = Engine::new(&profile);
    for f in frames {
        e.observe(&f.packet());
    }
    let r = e.finish();
    assert!(
        r.findings.iter().any(|f| f.kind == "syn_unanswered"),
        "{:#?}",
        r.findings
    );
    r.findings
        .iter()
        .filter(|f| kind.is_none_or(|k| f.kind == k))
        .flat_map(|f| f.next_checks.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn azure_words_only_when_the_profile_says_aks() {
    let base = "podCIDRs: [10.244.0.0/16]\nserviceCIDRs: [10.0.0.0/16]\n";
    let generic = next_checks(base, &unanswered_to("198.51.100.20"), None);
    for azure in [
        "NSG",
        "168.63.129.16",
        "Azure",
        "VNet",
        "ExpressRoute",
        "SNAT Connection Count",
    ] {
        assert!(
            !generic.contains(azure),
            "{azure} without a platform:\n{generic}"
        );
    }
    assert!(generic.contains("security group"), "{generic}");
    assert!(generic.contains("UPSTREAM"), "{generic}");
    let aks = next_checks(
        &format!("{base}platform: aks\n"),
        &unanswered_to("198.51.100.20"),
        None,
    );
    assert!(aks.contains("NSG outbound rules"), "{aks}");
    assert!(
        aks.contains("nslookup api.example.com 168.63.129.16"),
        "{aks}"
    );
    assert!(aks.contains("SNAT Connection Count"), "{aks}");
    // `azure` is the same platform.
    let azure = next_checks(
        &format!("{base}platform: azure\n"),
        &unanswered_to("198.51.100.20"),
        None,
    );
    assert_eq!(azure, aks);
}

#[test]
fn loopback_attempts_point_at_the_local_listener_not_the_network() {
    let checks = next_checks(
        "platform: aks\n",
        &unanswered_to("127.0.0.1"),
        Some("syn_unanswered"),
    );
    assert!(checks.contains("ss -ltnp"), "{checks}");
    assert!(
        !checks.contains("NSG") && !checks.contains("NetworkPolicy egress"),
        "{checks}"
    );
}
