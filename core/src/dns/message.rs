//! Parses DNS messages with hickory-proto into the few fields outflow uses.
//!
//! Malformed messages (compression loops, lengths past the end, truncated by snaplen) are errors
//! for the caller to count; hickory-proto bounds its own recursion and reads.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// What outflow needs from a DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    /// Transaction id.
    pub id: u16,
    /// A response (QR set).
    pub is_response: bool,
    /// Response code (4-bit RCODE, extended codes folded in by hickory).
    pub rcode: u16,
    /// First question's name, lowercase, without the trailing dot.
    pub qname: String,
    /// First question's type.
    pub qtype: u16,
    /// A and AAAA addresses in the answer section.
    pub addresses: Vec<IpAddr>,
    /// Whether the answer section holds a record of the asked type (or a CNAME to one).
    pub answers_qtype: bool,
}

/// Why a DNS message was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsParseError {
    /// hickory-proto could not decode it.
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    /// It has no question (outflow cannot match it to a query).
    #[error("DNS message without a question")]
    NoQuestion,
}

/// Parses one DNS message.
pub fn parse(bytes: &[u8]) -> Result<DnsMessage, DnsParseError> {
    let msg = Message::from_vec(bytes).map_err(|e| DnsParseError::Malformed(e.to_string()))?;
    let q = msg.queries.first().ok_or(DnsParseError::NoQuestion)?;
    let qtype = q.query_type;
    let mut addresses = Vec::new();
    let mut answers_qtype = false;
    for rr in &msg.answers {
        let t = rr.record_type();
        if t == qtype || qtype == RecordType::ANY {
            answers_qtype = true;
        }
        match &rr.data {
            RData::A(a) => addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => addresses.push(IpAddr::V6(a.0)),
            _ => {}
        }
    }
    Ok(DnsMessage {
        id: msg.metadata.id,
        is_response: msg.metadata.message_type == MessageType::Response,
        rcode: u16::from(msg.metadata.response_code),
        qname: normalize(&q.name.to_ascii()),
        qtype: u16::from(qtype),
        addresses,
        answers_qtype,
    })
}

/// Lowercase, no trailing dot.
pub fn normalize(name: &str) -> String {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() {
        ".".to_string()
    } else {
        n.to_ascii_lowercase()
    }
}

/// The mnemonic of a query type (`A`, `AAAA`, `TYPE65`, …).
pub fn qtype_name(qtype: u16) -> String {
    RecordType::from(qtype).to_string()
}

/// The outcome a response states.
pub fn outcome_of(msg: &DnsMessage) -> super::DnsOutcome {
    use super::DnsOutcome;
    match <ResponseCode as From<u16>>::from(msg.rcode) {
        ResponseCode::NoError if msg.answers_qtype => DnsOutcome::Ok,
        ResponseCode::NoError => DnsOutcome::NoData,
        ResponseCode::NXDomain => DnsOutcome::NxDomain,
        ResponseCode::ServFail => DnsOutcome::ServFail,
        ResponseCode::Refused => DnsOutcome::Refused,
        _ => DnsOutcome::Other,
    }
}
