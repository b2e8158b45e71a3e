//! Decodes a DNS message with hickory-proto: the reference for every shape.
//!
//! Malformed messages (compression loops, lengths past the end, truncated by snaplen) are errors
//! for the caller to count; hickory-proto bounds its own recursion and reads. The fast path in
//! `wire.rs` is checked against this decoder.

use std::net::IpAddr;

use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::rr::Record;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};

use super::fields::{DnsMessage, DnsParseError};
use super::name_text::NameText;

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
