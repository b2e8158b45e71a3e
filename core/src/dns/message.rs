//! Parses DNS messages into the few fields outflow uses.
//!
//! The common shape takes the fast path in `wire.rs`; hickory-proto (`hickory.rs`) decodes
//! everything else. This module chooses between them and reads what a parsed message states.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

pub use super::fields::{DnsMessage, DnsParseError};
pub use super::hickory::parse_with_hickory;

/// Parses one DNS message: the header, the first question and the answer section. Authority and
/// additional records (EDNS, glue) are not needed and not parsed. The common shape takes the
/// fast path in `wire.rs`; hickory-proto decodes everything else and is the reference.
pub fn parse(bytes: &[u8]) -> Result<DnsMessage, DnsParseError> {
    match super::wire::parse_common(bytes) {
        Some(m) => Ok(m),
        None => parse_with_hickory(bytes),
    }
}

/// The 12-byte header of a message too short to parse whole: id, QR, RCODE, and whether it has
/// answers (the question is left empty).
pub fn header_only(bytes: &[u8]) -> Option<DnsMessage> {
    let h = bytes.get(..12)?;
    let flags = u16::from_be_bytes([h[2], h[3]]);
    Some(DnsMessage {
        id: u16::from_be_bytes([h[0], h[1]]),
        is_response: flags & 0x8000 != 0,
        truncated: flags & 0x0200 != 0,
        rcode: flags & 0xf,
        qname: String::new(),
        qtype: 0,
        addresses: Vec::new(),
        answers_qtype: u16::from_be_bytes([h[6], h[7]]) > 0,
    })
}

/// The mnemonic of a query type (`A`, `AAAA`, `TYPE65`, …).
pub fn qtype_name(qtype: u16) -> String {
    RecordType::from(qtype).to_string()
}

/// The outcome a response states.
pub fn outcome_of(msg: &DnsMessage) -> super::DnsOutcome {
    use super::DnsOutcome;
    if msg.truncated {
        return DnsOutcome::Truncated;
    }
    match <ResponseCode as From<u16>>::from(msg.rcode) {
        ResponseCode::NoError if msg.answers_qtype => DnsOutcome::Ok,
        ResponseCode::NoError => DnsOutcome::NoData,
        ResponseCode::NXDomain => DnsOutcome::NxDomain,
        ResponseCode::ServFail => DnsOutcome::ServFail,
        ResponseCode::Refused => DnsOutcome::Refused,
        _ => DnsOutcome::Other,
    }
}
