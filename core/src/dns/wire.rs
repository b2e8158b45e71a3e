//! A fast path for the common DNS message: one question with an uncompressed name, and answers.
//!
//! hickory-proto decodes every name into a `Name` with its own allocation, which made DNS the
//! costliest part of an analysis (about 1,200 instructions per message). Most messages on a node
//! are the same simple shape, and outflow needs only the header, the question and the A/AAAA
//! answers, so this reads exactly those from the wire (RFC 1035 §4.1). Any other shape — several
//! questions, a compression pointer in the question, an opcode other than QUERY, an A or AAAA
//! record of the wrong length, a short buffer — returns `None`, and hickory-proto decides. The
//! `dns` fuzz target checks that both agree whenever this path answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::fields::DnsMessage;
use super::name_text::{ascii_text, NameText};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;

/// Decodes a message of the common shape, or `None` for hickory-proto to handle.
pub fn parse_common(b: &[u8]) -> Option<DnsMessage> {
    let header = b.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let opcode = (flags >> 11) & 0xf;
    let queries = u16::from_be_bytes([header[4], header[5]]);
    let answers = u16::from_be_bytes([header[6], header[7]]);
    if opcode != 0 || queries != 1 {
        return None;
    }
    let mut pos = 12;
    loop {
        let len = *b.get(pos)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // A pointer or a reserved label type: not the common shape.
        }
        pos += 1 + len;
        // RFC 1035 §2.3.4: 255 bytes on the wire, the root label included.
        if pos - 12 + 1 > 255 {
            return None;
        }
    }
    let qname = qname_text(b.get(12..pos)?);
    pos += 1;
    let question = b.get(pos..pos + 4)?; // type and class
    let qtype = u16::from_be_bytes([question[0], question[1]]);
    pos += 4;
    let mut addresses = Vec::new();
    let mut answers_qtype = false;
    for _ in 0..answers {
        pos = skip_name(b, pos)?;
        let fixed = b.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        pos += 10;
        let rdata = b.get(pos..pos + rdlen)?;
        pos += rdlen;
        if rtype == qtype || qtype == TYPE_ANY {
            answers_qtype = true;
        }
        match (rtype, rdlen) {
            (TYPE_A, 4) => addresses.push(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let octets: [u8; 16] = rdata.try_into().ok()?;
                addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            (TYPE_A | TYPE_AAAA, _) => return None,
            _ => {}
        }
    }
    Some(DnsMessage {
        id: u16::from_be_bytes([header[0], header[1]]),
        is_response: flags & 0x8000 != 0,
        truncated: flags & 0x0200 != 0,
        rcode: flags & 0xf,
        qname,
        qtype,
        addresses,
        answers_qtype,
    })
}

/// The text of a name from its labels on the wire (`wire` ends before the root's zero byte).
///
/// Host names need no escapes, so the common case is one copy of the whole name with its length
/// bytes turned into dots and one lowercasing pass; a name with bytes to escape goes label by label.
fn qname_text(wire: &[u8]) -> String {
    let mut text = wire.get(1..).unwrap_or_default().to_vec();
    let mut dots = 0;
    let mut at = wire.first().map_or(0, |&l| l as usize);
    while let Some(len) = text.get_mut(at) {
        at += 1 + *len as usize;
        *len = b'.';
        dots += 1;
    }
    // One pass without early exits or branches, which the compiler turns into vector code: it
    // lowercases, and notes any byte that needs an escape and every dot (a name is at most 255
    // bytes, so its dots fit a byte). Only the separators may be dots.
    let (mut escapes, mut dots_seen) = (false, 0u8);
    for c in text.iter_mut() {
        let b = *c;
        escapes |= b.wrapping_sub(0x21) > 0x7e - 0x21 || b == b'\\';
        dots_seen = dots_seen.wrapping_add(u8::from(b == b'.'));
        *c = b | (u8::from(b.wrapping_sub(b'A') < 26) << 5);
    }
    if !escapes && usize::from(dots_seen) == dots {
        return ascii_text(text);
    }
    let mut name = NameText::default();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        name.push_label(wire.get(at + 1..at + 1 + len as usize).unwrap_or_default());
        at += 1 + len as usize;
    }
    name.finish()
}

/// The offset after the name at `pos`: labels up to the root, or up to a compression pointer.
fn skip_name(b: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *b.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len as usize,
            0xc0 => return Some(pos + 2).filter(|&p| p <= b.len()),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dns_query, dns_response};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;

    #[test]
    fn common_messages_decode_as_hickory_decodes_them() {
        for m in [
            dns_query(
                7,
                "Web.Example.com.default.svc.cluster.local",
                RecordType::A,
            ),
            dns_query(8, "web.example.com", RecordType::AAAA),
            dns_response(
                9,
                "web.example.com",
                RecordType::A,
                ResponseCode::NoError,
                &["198.51.100.80", "198.51.100.81"],
            ),
            dns_response(
                10,
                "nx.example.com",
                RecordType::A,
                ResponseCode::NXDomain,
                &[],
            ),
        ] {
            assert_eq!(
                parse_common(&m),
                super::super::hickory::parse_with_hickory(&m).ok(),
                "{m:?}"
            );
        }
    }

    #[test]
    fn names_that_need_escapes_read_as_hickory_reads_them() {
        // Header of a query, then the question: labels "A.b", "c\\", and "D" with byte 1.
        let mut m = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[
            3, b'A', b'.', b'b', 2, b'c', b'\\', 2, b'D', 1, 0, 0, 1, 0, 1,
        ]);
        let common = parse_common(&m).expect("one plain question");
        assert_eq!(common.qname, "a\\.b.c\\\\.d\\001");
        assert_eq!(
            Some(common),
            super::super::hickory::parse_with_hickory(&m).ok()
        );
        let root = [0, 8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
        assert_eq!(parse_common(&root).expect("the root").qname, ".");
    }

    #[test]
    fn uncommon_shapes_are_left_to_hickory() {
        let mut two_questions = dns_query(1, "a.example.com", RecordType::A);
        two_questions[5] = 2;
        assert!(parse_common(&two_questions).is_none());
        let pointer_in_question = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert!(parse_common(&pointer_in_question).is_none());
        let mut short = dns_response(
            9,
            "web.example.com",
            RecordType::A,
            ResponseCode::NoError,
            &["1.2.3.4"],
        );
        short.truncate(short.len() - 2);
        assert!(parse_common(&short).is_none());
    }
}
