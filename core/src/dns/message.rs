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
    /// TC set: the answer did not fit and the client should ask again over TCP.
    pub truncated: bool,
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

/// Parses one DNS message with hickory-proto alone.
pub fn parse_with_hickory(bytes: &[u8]) -> Result<DnsMessage, DnsParseError> {
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
        truncated: header.metadata.truncation,
        rcode: u16::from(header.metadata.response_code),
        qname: qname_text(&q.name),
        qtype: u16::from(qtype),
        addresses,
        answers_qtype,
    })
}

/// The name as lowercase dotted text without the trailing dot (`.` for the root). Labels are
/// joined directly, one allocation, instead of through `Name::to_ascii` and a lowercase copy: this
/// runs for every DNS message.
fn qname_text(name: &hickory_proto::rr::Name) -> String {
    let mut text = NameText::default();
    for label in name.iter() {
        text.push_label(label);
    }
    text.finish()
}

/// Builds a name's text label by label: lowercase, dotted, with `.`, `\` and bytes that are not
/// printable ASCII escaped as `\DDD`, as in zone files.
///
/// The text is built as bytes and checked as UTF-8 once at the end: checking each label as it
/// came (to push it as a `str`) cost more than the rest of a message's decoding together.
#[derive(Default)]
pub(super) struct NameText {
    bytes: Vec<u8>,
}

impl NameText {
    /// Appends one label.
    pub(super) fn push_label(&mut self, label: &[u8]) {
        let b = &mut self.bytes;
        if b.is_empty() {
            b.reserve(64);
        } else {
            b.push(b'.');
        }
        for &c in label {
            match c {
                b'.' | b'\\' => b.extend_from_slice(&[b'\\', c]),
                0x21..=0x7e => b.push(c.to_ascii_lowercase()),
                _ => {
                    b.extend_from_slice(&[b'\\', b'0' + c / 100, b'0' + c / 10 % 10, b'0' + c % 10])
                }
            }
        }
    }

    /// The text (`.` for the root).
    pub(super) fn finish(self) -> String {
        ascii_text(self.bytes)
    }
}

/// A name's text from bytes that are printable ASCII by construction (`.` when empty).
pub(super) fn ascii_text(mut bytes: Vec<u8>) -> String {
    if bytes.is_empty() {
        bytes.push(b'.');
    }
    // Never takes the lossy branch: callers push only printable ASCII.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_dotted_without_the_root() {
        let n = hickory_proto::rr::Name::from_ascii("Web.Example.COM.").unwrap();
        assert_eq!(qname_text(&n), "web.example.com");
        assert_eq!(qname_text(&hickory_proto::rr::Name::root()), ".");
    }

    #[test]
    fn odd_bytes_in_labels_are_escaped() {
        let n = hickory_proto::rr::Name::from_labels(vec![&b"a.b"[..], &b"c\x01"[..]]).unwrap();
        assert_eq!(qname_text(&n), "a\\.b.c\\001");
    }
}
