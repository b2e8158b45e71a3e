//! The engine on captures of real lab traffic (`fixtures/README.md` says how each was made and
//! what it holds, counted with tshark). Every capture of the same traffic must give the same
//! answers: pcap and pcapng, µs and ns, Ethernet and Linux cooked v1/v2 with every forwarded
//! packet captured three times.

use std::path::Path;

use outflow_core::capfile::{CaptureReader, MergedReader};
use outflow_core::report::{ConnectionRecord, DnsRecord};
use outflow_core::{Engine, Profile, Report};

fn analyze(names: &[&str]) -> (Report, Vec<usize>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let profile_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab-profile.yaml");
    let profile = Profile::from_yaml(
        &std::fs::read_to_string(profile_path).unwrap(),
        "lab-profile.yaml",
    )
    .unwrap();
    let readers = names
        .iter()
        .map(|n| CaptureReader::new(std::fs::File::open(dir.join(n)).unwrap()).unwrap())
        .collect();
    let mut merged = MergedReader::new(readers);
    let mut engine = Engine::new(&profile);
    if merged.may_hold_duplicates() {
        engine.enable_dedup();
    }
    while merged.advance() {
        engine.observe(&merged.packet().unwrap());
    }
    assert!(merged.errors().is_empty(), "{:?}", merged.errors());
    let truncated = merged.truncated_files();
    (engine.finish(), truncated)
}

fn conn<'a>(r: &'a Report, dst: &str, port: u16, proto: &str) -> &'a ConnectionRecord {
    r.connections
        .iter()
        .find(|c| c.dst.to_string() == dst && c.dst_port == port && c.proto == proto)
        .unwrap_or_else(|| panic!("no {dst}:{port}/{proto} in {:#?}", r.connections))
}

fn dns<'a>(r: &'a Report, client: &str, name: &str, qtype: &str) -> &'a DnsRecord {
    r.dns
        .iter()
        .find(|d| d.client.to_string() == client && d.name == name && d.qtype == qtype)
        .unwrap_or_else(|| panic!("no lookup {client} {name} {qtype} in {:#?}", r.dns))
}

fn count(map: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

/// What the lab did, as the fixture README records it.
fn assert_lab_results(r: &Report) {
    let web6 = conn(r, "fd00:80::80", 80, "tcp");
    assert_eq!(count(&web6.outcomes, "established"), 4);
    assert_eq!(web6.category.as_str(), "public");
    assert_eq!(
        (
            count(&web6.http_statuses, "200"),
            count(&web6.http_statuses, "403"),
            count(&web6.http_statuses, "503")
        ),
        (2, 1, 1)
    );
    assert!(
        web6.names.contains(&"web.example.com".to_string()),
        "{:?}",
        web6.names
    );

    let internal = conn(r, "10.244.2.20", 80, "tcp");
    assert_eq!(
        (
            count(&internal.outcomes, "established"),
            internal.category.as_str()
        ),
        (1, "internal")
    );
    let peered = conn(r, "10.10.0.5", 80, "tcp");
    assert_eq!(
        (
            count(&peered.outcomes, "established"),
            peered.category.as_str()
        ),
        (1, "peered")
    );

    let blackhole = conn(r, "198.51.100.20", 80, "tcp");
    assert_eq!(blackhole.outcomes.len(), 1);
    assert_eq!(count(&blackhole.outcomes, "unanswered"), 1);
    assert_eq!(blackhole.syn_retransmissions, 4, "5 SYNs with one ISN");

    let prohibited = conn(r, "203.0.113.7", 80, "tcp");
    assert_eq!(count(&prohibited.outcomes, "unreachable"), 1);
    assert_eq!(count(&prohibited.unreachable_codes, "admin-prohibited"), 1);
    assert_eq!(
        prohibited
            .icmp_from
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["10.244.1.1"]
    );

    let closed = conn(r, "192.168.50.5", 8080, "tcp");
    assert_eq!(
        (count(&closed.outcomes, "refused"), closed.category.as_str()),
        (1, "onprem")
    );

    assert_eq!(
        count(&conn(r, "10.0.0.10", 53, "tcp").outcomes, "established"),
        1
    );

    let proxy = conn(r, "10.224.0.1", 3128, "tcp");
    assert_eq!(count(&proxy.outcomes, "established"), 2);
    assert_eq!(proxy.proxy_connects.len(), 1);
    assert_eq!(proxy.proxy_connects[0].target, "198.51.100.80:80");
    assert_eq!(count(&proxy.proxy_connects[0].statuses, "407"), 1);
    assert_eq!(count(&proxy.proxy_connects[0].statuses, "200"), 1);
    assert_eq!(
        count(&proxy.http_statuses, "200"),
        1,
        "the GET inside the tunnel"
    );

    // Three lookups through the search list (3 expansions each), one over TCP without search,
    // and one to the dead server 10.0.0.99.
    let web_a = dns(r, "10.244.1.10", "web.example.com", "A");
    assert_eq!(
        (
            count(&web_a.outcomes, "ok"),
            count(&web_a.outcomes, "timeout")
        ),
        (4, 1),
        "{web_a:?}"
    );
    assert_eq!((web_a.expansions, web_a.queries), (3, 14));
    assert_eq!(web_a.transport, "udp+tcp");
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "web.example.com", "AAAA").outcomes,
            "ok"
        ),
        3
    );
    assert_eq!(
        count(
            &dns(r, "fd00:244:1::10", "web.example.com", "AAAA").outcomes,
            "ok"
        ),
        1
    );
    for qtype in ["A", "AAAA"] {
        let nx = dns(r, "10.244.1.10", "nx.example.com", qtype);
        assert_eq!(
            (count(&nx.outcomes, "nxdomain"), nx.expansions, nx.queries),
            (1, 3, 4)
        );
    }
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "api.default.svc.cluster.local", "A").outcomes,
            "ok"
        ),
        1
    );
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "api.default.svc.cluster.local", "AAAA").outcomes,
            "nodata"
        ),
        1
    );
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "peer.example.com", "A").outcomes,
            "ok"
        ),
        1
    );
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "servfail.dead.example", "A").outcomes,
            "refused"
        ),
        1
    );
    assert_eq!(r.dns.len(), 10, "{:#?}", r.dns);

    let kinds: Vec<&str> = r.findings.iter().map(|f| f.kind.as_str()).collect();
    for kind in [
        "syn_unanswered",
        "destination_unreachable",
        "connection_refused",
        "dns_nxdomain",
        "dns_refused",
        "dns_timeout",
        "dns_server_unresponsive",
        "http_forbidden",
        "http_server_error",
        "proxy_connect_failed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        !kinds.contains(&"dns_nodata"),
        "AAAA without data is normal, not a finding"
    );
}

#[test]
fn ethernet_pcap_of_the_pod_veth() {
    let (r, truncated) = analyze(&["lab-pod.pcap"]);
    assert!(truncated.is_empty());
    assert_eq!((r.capture.packets, r.capture.duplicates), (207, 0));
    assert_lab_results(&r);
}

#[test]
fn nanosecond_pcap_gives_the_same_report() {
    let (micro, _) = analyze(&["lab-pod.pcap"]);
    let (nano, _) = analyze(&["lab-pod-ns.pcap"]);
    assert_eq!(micro, nano);
}

#[test]
fn node_any_pcapng_counts_each_forwarded_packet_once() {
    let (r, _) = analyze(&["lab-node-any.pcapng"]);
    assert_eq!(r.capture.packets, 620);
    // 620 frames are 217 distinct packets (196 seen three times, 11 twice, 10 once); the 6 ARP
    // frames are not IP, so 213 distinct IP packets and 401 IP copies.
    assert_eq!(
        (r.capture.ip_packets, r.capture.duplicates, r.capture.non_ip),
        (213, 401, 6)
    );
    assert_lab_results(&r);
}

#[test]
fn node_any_sll2_counts_each_forwarded_packet_once() {
    let (r, _) = analyze(&["lab-node-sll2.pcap"]);
    assert_eq!((r.capture.ip_packets, r.capture.duplicates), (213, 401));
    assert_lab_results(&r);
}

#[test]
fn truncated_capture_is_reported_and_the_rest_analysed() {
    let (r, truncated) = analyze(&["lab-pod-truncated.pcap"]);
    assert_eq!(truncated, vec![0]);
    assert_eq!(r.capture.packets, 206);
    assert_lab_results(&r);
}

#[test]
fn dns_over_tcp_alone() {
    let (r, _) = analyze(&["dns-tcp.pcap"]);
    let d = dns(&r, "10.244.1.10", "web.example.com", "A");
    assert_eq!((count(&d.outcomes, "ok"), d.transport.as_str()), (1, "tcp"));
    assert_eq!(
        d.answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["198.51.100.80"]
    );
}

#[test]
fn pod_and_node_captures_merged_are_one_capture() {
    let (r, _) = analyze(&["lab-pod.pcap", "lab-node-sll2.pcap"]);
    assert_eq!(r.capture.packets, 827);
    assert_lab_results(&r);
}
