//! The fields outflow reads from a DNS message, and why a message could not be read.
//!
//! Both decoders fill these: the fast path in `wire.rs` and hickory-proto in `hickory.rs`. They
//! live apart from both so that each decoder, and `message.rs` which chooses between them, depends
//! on this module and not on the others.

use std::net::IpAddr;

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
