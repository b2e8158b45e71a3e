//! Parses DNS messages with hickory-proto into the few fields outflow uses.
//!
//! Malformed messages (compression loops, lengths past the end, truncated by snaplen) are errors
//! for the caller to count; hickory-proto bounds its own recursion and reads.

use std::net::IpAddr;

use hickory_proto::op::{Header, MessageType, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};

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

/// Parses one DNS message: the header, the first question and the answer section. Authority and
/// additional records (EDNS, glue) are not needed and not parsed.
pub fn parse(bytes: &[u8]) -> Result<DnsMessage, DnsParseError> {
    let malformed = |e: DecodeError| DnsParseError::Malformed(e.to_string());
    let mut d = BinDecoder::new(bytes);
    let header = Header::read(&mut d).map_err(malformed)?;
    if header.counts.queries == 0 {
        return Err(DnsParseError::NoQuestion);
    }
    let q = Query::read(&mut d).map_err(malformed)?;
    for _ in 1..header.counts.queries {
        Query::read(&mut d).map_err(malformed)?;
    }
    let qtype = q.query_type;
    let mut addresses = Vec::new();
    let mut answers_qtype = false;
    for _ in 0..header.counts.answers {
        let rr = Record::read(&mut d).map_err(malformed)?;
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
        id: header.metadata.id,
        is_response: header.metadata.message_type == MessageType::Response,
        rcode: u16::from(header.metadata.response_code),
        qname: normalize(q.name.to_ascii()),
        qtype: u16::from(qtype),
        addresses,
        answers_qtype,
    })
}

/// Lowercase, no trailing dot, in place.
fn normalize(mut name: String) -> String {
    if name.ends_with('.') {
        name.pop();
    }
    if name.is_empty() {
        return ".".to_string();
    }
    name.make_ascii_lowercase();
    name
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
