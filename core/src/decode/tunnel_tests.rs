//! Tunnels from frames to report records: each encapsulation, nesting, and what is not followed.

use etherparse::{IpNumber, PacketBuilder};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{GENEVE_PORT, MAX_DEPTH, VXLAN_LINUX_PORT, VXLAN_PORT};
use crate::conn::Outcome;
use crate::decode::tcp_flags::{ACK, RST, SYN};
use crate::dns::DnsOutcome;
use crate::report::Report;
use crate::testutil::{dns_query, dns_response, frame, tcp, udp, Frame};
use crate::{Engine, Profile};

const POD: &str = "10.244.1.10";
const PEER: &str = "10.244.2.20";
const NODE_A: [u8; 4] = [10, 224, 0, 4];
const NODE_B: [u8; 4] = [10, 224, 0, 5];

fn run(frames: &[Frame]) -> Report {
    let mut e = Engine::new(&Profile::default());
    for f in frames {
        e.observe(&f.packet());
    }
    e.finish()
}

/// Node A to node B, or back.
fn nodes(a_to_b: bool) -> ([u8; 4], [u8; 4]) {
    if a_to_b {
        (NODE_A, NODE_B)
    } else {
        (NODE_B, NODE_A)
    }
}

/// `payload` in UDP from node `src` to node `dst`, port `dport`, in Ethernet.
fn outer_udp(src: [u8; 4], dst: [u8; 4], dport: u16, payload: &[u8]) -> Frame {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4(src, dst, 64)
        .udp(51000, dport)
        .write(&mut out, payload)
        .expect("writing to a Vec");
    frame(out)
}

/// `payload` as IP protocol `proto` from node `src` to node `dst`, in Ethernet.
fn outer_ip(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Frame {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4(src, dst, 64)
        .write(&mut out, IpNumber(proto), payload)
        .expect("writing to a Vec");
    frame(out)
}

/// An inner Ethernet frame in VXLAN with `vni`, node A to node B or back.
fn vxlan(port: u16, vni: u32, inner: &Frame, a_to_b: bool) -> Frame {
    let v = vni.to_be_bytes();
    let mut payload = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    payload.extend_from_slice(&inner.data);
    let (src, dst) = nodes(a_to_b);
    outer_udp(src, dst, port, &payload).at_ms(inner.ts_ns / 1_000_000)
}

/// The IP packet of an Ethernet frame made by `testutil`.
fn ip_of(f: &Frame) -> &[u8] {
    &f.data[14..]
}

fn syn(ms: u64) -> Frame {
    tcp(POD, 40000, PEER, 80, SYN, 100, 0, b"").at_ms(ms)
}

fn rst(ms: u64) -> Frame {
    tcp(PEER, 80, POD, 40000, RST | ACK, 0, 101, b"").at_ms(ms)
}

fn outcomes(r: &Report, dst: &str, port: u16) -> Vec<(Outcome, u64)> {
    let c = r
        .connections
        .iter()
        .find(|c| c.dst.to_string() == dst && c.dst_port == port)
        .unwrap_or_else(|| panic!("no group for {dst}:{port} in {:#?}", r.connections));
    c.outcomes.iter().map(|(o, n)| (*o, *n)).collect()
}

#[test]
fn vxlan_carries_a_refused_connection_between_pods_on_two_nodes() {
    for port in [VXLAN_PORT, VXLAN_LINUX_PORT] {
        let r = run(&[
            vxlan(port, 42, &syn(0), true),
            vxlan(port, 42, &rst(1), false),
        ]);
        assert_eq!(r.connections.len(), 1, "port {port}: {:#?}", r.connections);
        assert_eq!(outcomes(&r, PEER, 80), [(Outcome::Refused, 1)]);
        let c = &r.connections[0];
        assert_eq!(c.src.to_string(), POD);
        let t = c.tunnel.as_ref().expect("the tunnel is kept");
        assert_eq!(
            (
                t.kind.as_str(),
                t.outer_src.to_string(),
                t.outer_dst.to_string(),
                t.id,
                t.depth
            ),
            (
                "vxlan",
                "10.224.0.4".into(),
                "10.224.0.5".into(),
                Some(42),
                1
            )
        );
        assert_eq!((r.capture.tunnelled, r.capture.ip_packets), (2, 2));
        let f = &r.findings[0];
        assert_eq!(f.kind, "connection_refused");
        assert!(
            f.evidence
                .contains(&"carried in vxlan 42 from node 10.224.0.4 to node 10.224.0.5".into()),
            "{f:#?}"
        );
    }
}

#[test]
fn udp_to_4789_that_is_not_vxlan_stays_an_outer_flow() {
    // No I flag; and a datagram with the flag but too short to hold a frame.
    for payload in [
        &b"hello, not a tunnel"[..],
        &[0x08, 0, 0, 0, 0, 0, 1, 0, 1, 2][..],
    ] {
        let r = run(&[outer_udp(NODE_A, NODE_B, VXLAN_PORT, payload)]);
        assert_eq!(r.capture.tunnelled, 0);
        assert_eq!(r.connections.len(), 1);
        let c = &r.connections[0];
        assert_eq!((c.dst.to_string(), c.dst_port), ("10.224.0.5".into(), 4789));
        assert!(c.tunnel.is_none());
    }
}

#[test]
fn truncated_inner_packet_is_counted_and_skipped() {
    let mut cut = vxlan(VXLAN_PORT, 42, &syn(0), true);
    // Outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet, and 10 bytes of the inner IP header.
    cut.data.truncate(14 + 20 + 8 + 8 + 14 + 10);
    let mut e = Engine::new(&Profile::default());
    let mut packet = cut.packet();
    packet.orig_len = 14 + 20 + 8 + 8 + 14 + 40;
    e.observe(&packet);
    let r = e.finish();
    assert_eq!(r.capture.tunnel_truncated, 1);
    assert_eq!(r.capture.ip_packets, 0);
    assert!(r.connections.is_empty(), "{:#?}", r.connections);
}

#[test]
fn geneve_with_options_carries_the_inner_connection() {
    let inner = syn(0);
    // Version 0, 2 words of options; protocol: transparent Ethernet bridging; VNI 7.
    let mut payload = vec![0x02, 0, 0x65, 0x58, 0, 0, 7, 0];
    // One option: class 0x0102, type 0x80 (critical), 4 bytes of data.
    payload.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]);
    payload.extend_from_slice(&inner.data);
    let r = run(&[outer_udp(NODE_A, NODE_B, GENEVE_PORT, &payload)]);
    assert_eq!(outcomes(&r, PEER, 80), [(Outcome::Incomplete, 1)]);
    let t = r.connections[0]
        .tunnel
        .as_ref()
        .expect("the tunnel is kept");
    assert_eq!((t.kind.as_str(), t.id), ("geneve", Some(7)));
}

#[test]
fn gre_with_key_carries_a_dns_lookup() {
    let query = udp(
        POD,
        33000,
        "10.0.0.10",
        53,
        &dns_query(9, "nx.example.com", RecordType::A),
    );
    let answer = udp(
        "10.0.0.10",
        53,
        POD,
        33000,
        &dns_response(
            9,
            "nx.example.com",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
    )
    .at_ms(3);
    // Checksum and key present: flags C|K, version 0, protocol IPv4; checksum field, key.
    let gre = |f: &Frame, a_to_b: bool| {
        let mut payload = vec![0xa0, 0, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        payload.extend_from_slice(ip_of(f));
        let (src, dst) = nodes(a_to_b);
        outer_ip(src, dst, 47, &payload).at_ms(f.ts_ns / 1_000_000)
    };
    let r = run(&[gre(&query, true), gre(&answer, false)]);
    assert_eq!(r.dns.len(), 1, "{:#?}", r.dns);
    let d = &r.dns[0];
    assert_eq!(
        (d.client.to_string(), d.name.as_str()),
        (POD.into(), "nx.example.com")
    );
    assert_eq!(d.outcomes.get(&DnsOutcome::NxDomain), Some(&1));
    let t = r.connections[0]
        .tunnel
        .as_ref()
        .expect("the tunnel is kept");
    assert_eq!((t.kind.as_str(), t.id), ("gre", Some(0x1234)));
}

#[test]
fn gre_version_1_is_left_as_the_outer_packet() {
    // PPTP's enhanced GRE: not a tunnel of pod traffic.
    let mut payload = vec![0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 1, 0, 0, 0, 1];
    payload.extend_from_slice(ip_of(&syn(0)));
    let r = run(&[outer_ip(NODE_A, NODE_B, 47, &payload)]);
    assert_eq!((r.capture.ip_packets, r.capture.tunnelled), (1, 0));
    assert!(r.connections.is_empty());
}

#[test]
fn ipv6_inside_ipv4_carries_the_inner_connection() {
    let inner = tcp(
        "fd00:244:1::10",
        40000,
        "fd00:244:2::20",
        443,
        SYN,
        1,
        0,
        b"",
    );
    let r = run(&[outer_ip(NODE_A, NODE_B, 41, ip_of(&inner))]);
    assert_eq!(
        outcomes(&r, "fd00:244:2::20", 443),
        [(Outcome::Incomplete, 1)]
    );
    let t = r.connections[0]
        .tunnel
        .as_ref()
        .expect("the tunnel is kept");
    assert_eq!((t.kind.as_str(), t.id, t.depth), ("ipip", None, 1));
}

#[test]
fn nested_encapsulation_reaches_the_pod_packet_with_the_innermost_tunnel() {
    // QinQ-tagged uplink, IP-in-IP between gateways, VXLAN between nodes inside it.
    let vx = vxlan(VXLAN_PORT, 5, &syn(0), true);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 5], [2, 0, 0, 0, 0, 6])
        .double_vlan(100.try_into().unwrap(), 200.try_into().unwrap())
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut out, IpNumber(4), ip_of(&vx))
        .expect("writing to a Vec");
    let r = run(&[frame(out)]);
    assert_eq!(outcomes(&r, PEER, 80), [(Outcome::Incomplete, 1)]);
    let t = r.connections[0]
        .tunnel
        .as_ref()
        .expect("the tunnel is kept");
    assert_eq!(
        (t.kind.as_str(), t.outer_src.to_string(), t.depth),
        ("vxlan", "10.224.0.4".into(), 2)
    );
}

#[test]
fn encapsulation_deeper_than_the_limit_stops_without_failing() {
    let mut ip = ip_of(&syn(0)).to_vec();
    for _ in 0..MAX_DEPTH + 2 {
        ip = ip_of(&outer_ip(NODE_A, NODE_B, 4, &ip)).to_vec();
    }
    let r = run(&[outer_ip(NODE_A, NODE_B, 4, &ip)]);
    assert_eq!((r.capture.ip_packets, r.capture.tunnelled), (1, 1));
    assert!(r.connections.is_empty(), "{:#?}", r.connections);
}

#[test]
fn arp_inside_vxlan_is_not_ip() {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let r = run(&[vxlan(VXLAN_PORT, 1, &frame(arp), true)]);
    assert_eq!((r.capture.non_ip, r.capture.ip_packets), (1, 0));
}

#[test]
fn every_cut_of_a_tunnelled_frame_decodes_without_panicking() {
    let frames = [
        vxlan(VXLAN_PORT, 42, &syn(0), true),
        outer_ip(NODE_A, NODE_B, 41, ip_of(&syn(0))),
    ];
    for f in frames {
        for len in 0..f.data.len() {
            let mut cut = f.clone();
            cut.data.truncate(len);
            let mut packet = cut.packet();
            packet.orig_len = f.data.len() as u32;
            let _ = super::super::decode(&packet);
        }
    }
}
