//! Which interface the client's packets came through, carried on its records.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::Traffic;
use crate::capfile::Direction;
use crate::decode::tcp_flags::{ACK, SYN};
use crate::testutil::{dns_query, dns_response, tcp, udp};
use crate::{Config, Engine, Profile};

const POD: &str = "10.244.1.10";
const SERVER: &str = "198.51.100.80";
/// The pod's host-side veth.
const POD_VETH: u32 = 7;
/// Where the server's packets were seen first.
const OTHER: u32 = 3;
/// The node's uplink.
const UPLINK: u32 = 2;

fn engine() -> Engine {
    let cfg = Config {
        count_traffic: false,
        ..Config::default()
    };
    let mut e = Engine::with_config(&Profile::default(), cfg);
    e.enable_dedup();
    e
}

#[test]
fn a_connection_record_carries_the_interface_of_the_clients_packets() {
    let mut e = engine();
    let syn = tcp(POD, 40000, SERVER, 443, SYN, 1, 0, b"");
    // The server's answer is seen first somewhere else, and the SYN again on the uplink: neither
    // is where the client's packets came in.
    e.observe(&syn.clone().on_iface(POD_VETH).at_ms(0).packet());
    e.observe(&syn.on_iface(UPLINK).at_ms(0).packet());
    let synack = tcp(SERVER, 443, POD, 40000, SYN | ACK, 9, 2, b"").on_iface(OTHER);
    e.observe(&synack.at_ms(5).packet());
    let r = e.drain();
    assert_eq!(r.connections.len(), 1, "{:#?}", r.connections);
    assert_eq!(r.connections[0].ingress_iface, Some(POD_VETH));

    // Still open: the next window's record is the same client's, on the same interface.
    e.add_traffic(&Traffic {
        src: POD.parse().unwrap(),
        dst: SERVER.parse().unwrap(),
        sport: 40000,
        dport: 443,
        proto: 6,
        packets: 1,
        ip_bytes: 41,
    });
    let r = e.drain();
    assert_eq!(r.connections.len(), 1, "{:#?}", r.connections);
    assert_eq!(r.connections[0].ingress_iface, Some(POD_VETH));
}

#[test]
fn a_flow_first_seen_from_its_server_does_not_take_the_servers_interface() {
    let mut e = engine();
    let reply = tcp(SERVER, 443, POD, 40001, ACK, 9, 2, b"late").on_iface(OTHER);
    e.observe(&reply.at_ms(0).packet());
    let r = e.finish();
    assert_eq!(r.connections.len(), 1, "{:#?}", r.connections);
    assert_eq!(r.connections[0].ingress_iface, None);
}

#[test]
fn no_interface_is_none_not_zero() {
    let mut e = engine();
    e.observe(
        &tcp(POD, 40002, SERVER, 80, SYN, 1, 0, b"")
            .at_ms(0)
            .packet(),
    );
    let r = e.finish();
    assert_eq!(r.connections[0].ingress_iface, None);
}

#[test]
fn dns_records_and_their_findings_carry_the_interface_of_the_query() {
    let mut e = engine();
    let name = "gone.example.com";
    let query = udp(
        POD,
        33000,
        "10.0.0.10",
        53,
        &dns_query(4, name, RecordType::A),
    );
    e.observe(&query.on_iface(POD_VETH).at_ms(0).packet());
    let nx = dns_response(4, name, RecordType::A, ResponseCode::NXDomain, &[]);
    let answer = udp("10.0.0.10", 53, POD, 33000, &nx).on_iface(OTHER);
    e.observe(&answer.at_ms(2).packet());
    let r = e.finish();
    assert_eq!(r.dns.len(), 1, "{:#?}", r.dns);
    assert_eq!(r.dns[0].ingress_iface, Some(POD_VETH));
    let finding = r
        .findings
        .iter()
        .find(|f| f.kind == "dns_nxdomain")
        .unwrap_or_else(|| panic!("no nxdomain finding in {:#?}", r.findings));
    assert_eq!(finding.ingress_iface, Some(POD_VETH));
}

#[test]
fn a_query_sent_out_through_a_pods_interface_is_not_that_pods() {
    let mut e = engine();
    let name = "api.example.com";
    // A pod on another node asks this node's DNS pod: the query leaves through the DNS pod's
    // veth towards it, and the answer comes in there.
    let query = udp(
        "10.244.2.10",
        33001,
        "10.244.1.53",
        53,
        &dns_query(5, name, RecordType::A),
    )
    .on_iface(POD_VETH);
    let mut sent = query.packet();
    sent.direction = Direction::Outbound;
    e.observe(&sent);
    let answer = udp(
        "10.244.1.53",
        53,
        "10.244.2.10",
        33001,
        &dns_response(5, name, RecordType::A, ResponseCode::NoError, &[]),
    )
    .on_iface(POD_VETH)
    .at_ms(1);
    let mut received = answer.packet();
    received.direction = Direction::Inbound;
    e.observe(&received);
    let r = e.finish();
    assert_eq!(r.dns.len(), 1, "{:#?}", r.dns);
    assert_eq!(r.dns[0].ingress_iface, None, "{:#?}", r.dns[0]);
}

#[test]
fn the_interface_is_not_in_the_json() {
    let mut e = engine();
    let syn = tcp(POD, 40003, SERVER, 443, SYN, 1, 0, b"").on_iface(POD_VETH);
    e.observe(&syn.at_ms(0).packet());
    let r = e.finish();
    assert_eq!(r.connections[0].ingress_iface, Some(POD_VETH));
    let json = serde_json::to_string(&r).expect("serialisable");
    assert!(!json.contains("ingress_iface"), "{json}");
}
