//! The engine on captures of real lab traffic (`core/tests/fixtures/README.md` says how each was
//! made and what it holds, counted with tshark). Every capture of the same traffic must give the
//! same answers: pcap and pcapng, µs and ns, Ethernet and Linux cooked v1/v2 with every forwarded
//! packet captured three times.

use outflow_tests::{
    analyze_fixtures as analyze, assert_lab_results, assert_tunnel_results, count, dns,
};

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

#[test]
fn tls_sni_names_the_destination() {
    // Two curl HTTPS requests to one address under two names (see fixtures/README.md).
    let (r, _) = analyze(&["tls-sni.pcap"]);
    assert_eq!(r.connections.len(), 1);
    let c = &r.connections[0];
    assert_eq!((c.dst_port, count(&c.outcomes, "established")), (443, 2));
    assert_eq!(c.names, ["api.example.com", "billing.example.com"]);
}

#[test]
fn snapshot_length_cuts_dns_but_not_connection_outcomes() {
    let (full, _) = analyze(&["lab-pod.pcap"]);
    let (cut, _) = analyze(&["lab-pod-snap96.pcap"]);
    let outcomes = |r: &outflow_core::Report| {
        r.connections
            .iter()
            .map(|c| (c.dst, c.dst_port, c.outcomes.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(outcomes(&full), outcomes(&cut));
    // `tshark -r lab-pod.pcap -Y "frame.len > 96"` counts 63.
    assert_eq!(cut.capture.snapped_frames, 63);
    assert!(cut.capture.dns_malformed > 0);
    assert!(
        cut.findings.iter().any(|f| f.kind == "capture_snaplen"),
        "{:#?}",
        cut.findings
    );
    assert!(full.findings.iter().all(|f| f.kind != "capture_snaplen"));
    // Responses cut short still close their queries: the only timeout is the lab's dead server.
    let timeouts = |r: &outflow_core::Report| -> u64 {
        r.dns.iter().map(|d| count(&d.outcomes, "timeout")).sum()
    };
    assert_eq!((timeouts(&full), timeouts(&cut)), (1, 1));
}

#[test]
fn vxlan_underlay_is_reported_as_the_pods_traffic() {
    let (r, _) = analyze(&["vxlan-underlay.pcap"]);
    assert_eq!((r.capture.packets, r.capture.tunnelled), (20, 20));
    assert_tunnel_results("vxlan", &r);
}

#[test]
fn vxlan_underlay_cut_at_96_bytes_counts_the_cut_inner_packets() {
    // 96 bytes hold the outer headers, the VXLAN header, the inner Ethernet and IP headers and
    // 12 bytes more: every inner TCP header is cut, the inner UDP headers are whole.
    let (r, _) = analyze(&["vxlan-underlay-snap96.pcap"]);
    assert_eq!(
        (
            r.capture.tunnel_truncated,
            r.capture.tunnelled,
            r.capture.ip_packets
        ),
        (16, 4, 4)
    );
    assert!(r
        .connections
        .iter()
        .all(|c| c.proto == "udp" && c.dst_port == 53));
    assert!(r.connections.iter().all(|c| c.tunnel.is_some()));
}
