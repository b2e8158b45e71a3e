//! Small builders for engine tests: real frames made with etherparse, DNS messages with
//! hickory-proto.

use std::net::IpAddr;
use std::str::FromStr;

use etherparse::PacketBuilder;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::capfile::{Direction, LinkType, Packet};

/// An owned frame with its capture metadata.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Capture time.
    pub ts_ns: u64,
    /// Interface.
    pub iface: u32,
    /// Link type of `data`.
    pub link: LinkType,
    /// Bytes.
    pub data: Vec<u8>,
}

impl Frame {
    /// Borrows it as a packet.
    pub fn packet(&self) -> Packet<'_> {
        Packet {
            ts_ns: self.ts_ns,
            iface: self.iface,
            link: self.link,
            direction: Direction::Unknown,
            orig_len: self.data.len() as u32,
            data: &self.data,
        }
    }

    /// The same frame at `ms` milliseconds.
    pub fn at_ms(mut self, ms: u64) -> Frame {
        self.ts_ns = ms * 1_000_000;
        self
    }

    /// The same frame captured on another interface.
    pub fn on_iface(mut self, iface: u32) -> Frame {
        self.iface = iface;
        self
    }
}

fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).expect("test addresses are valid")
}

fn builder(src: &str, dst: &str) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    }
}

/// An Ethernet frame of `data` at time 0 on no interface.
pub fn frame(data: Vec<u8>) -> Frame {
    Frame {
        ts_ns: 0,
        iface: 0,
        link: LinkType::Ethernet,
        data,
    }
}

/// A TCP segment; `flags` as in `decode::tcp_flags`.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Frame {
    let mut b = builder(src, dst).tcp(sport, dport, seq, 64240);
    if flags & 0x02 != 0 {
        b = b.syn();
    }
    if flags & 0x10 != 0 {
        b = b.ack(ack);
    }
    if flags & 0x04 != 0 {
        b = b.rst();
    }
    if flags & 0x01 != 0 {
        b = b.fin();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("writing to a Vec");
    frame(out)
}

/// A UDP datagram.
pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Frame {
    let mut out = Vec::new();
    builder(src, dst)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("writing to a Vec");
    frame(out)
}

/// An ICMPv4 destination unreachable from `router` with `code`, quoting `quoted` (an Ethernet frame).
pub fn icmp_unreachable(router: &str, to: &str, code: u8, quoted: &Frame) -> Frame {
    let (IpAddr::V4(r), IpAddr::V4(t)) = (ip(router), ip(to)) else {
        panic!("IPv4 only")
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(r.octets(), t.octets(), 64)
        .icmpv4_raw(3, code, [0; 4])
        .write(&mut out, &quoted.data[14..14 + 28])
        .expect("writing to a Vec");
    frame(out)
}

/// A DNS query.
pub fn dns_query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.queries.push(Query::query(
        Name::from_ascii(name).expect("valid name"),
        qtype,
    ));
    m.to_vec().expect("encodable")
}

/// A DNS response with `rcode` and A answers.
pub fn dns_response(
    id: u16,
    name: &str,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &[&str],
) -> Vec<u8> {
    let n = Name::from_ascii(name).expect("valid name");
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.message_type = MessageType::Response;
    m.metadata.response_code = rcode;
    m.queries.push(Query::query(n.clone(), qtype));
    for a in answers {
        let v4: std::net::Ipv4Addr = a.parse().expect("valid IPv4");
        m.answers
            .push(Record::from_rdata(n.clone(), 60, RData::A(v4.into())));
    }
    m.to_vec().expect("encodable")
}
