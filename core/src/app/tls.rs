//! The server name (SNI) of a TLS ClientHello, reassembled across segments when needed.
//!
//! Modern ClientHellos (post-quantum key shares) exceed one segment, so the first record is
//! collected in sequence until complete, bounded in size and segment count, then parsed with
//! `tls-parser`.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

use super::SeqTracker;

/// Largest ClientHello record collected (the TLS record limit).
const MAX_RECORD: usize = 16 * 1024 + 5;
/// Segments collected at most before giving up.
const MAX_SEGMENTS: u8 = 8;

/// Whether a client payload starts a TLS handshake record holding a ClientHello.
pub fn is_client_hello(payload: &[u8]) -> bool {
    payload.len() >= 6 && payload[0] == 0x16 && payload[1] == 0x03 && payload[5] == 0x01
}

/// Result of feeding a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The record is not complete yet.
    NeedMore,
    /// Parsing finished, with the SNI if there was one.
    Done(Option<String>),
}

/// A ClientHello being collected.
#[derive(Debug, Default)]
pub struct HelloReassembly {
    seq: SeqTracker,
    buf: Vec<u8>,
    segments: u8,
}

impl HelloReassembly {
    /// Adds a client segment.
    pub fn push(&mut self, seq: u32, payload: &[u8]) -> Progress {
        if !self.seq.accept(seq, payload.len()) {
            return Progress::NeedMore;
        }
        self.segments += 1;
        self.buf.extend_from_slice(payload);
        if self.buf.len() < 5 {
            return Progress::NeedMore;
        }
        let record_len = u16::from_be_bytes([self.buf[3], self.buf[4]]) as usize + 5;
        if self.buf.len() < record_len {
            if record_len > MAX_RECORD || self.segments >= MAX_SEGMENTS {
                return Progress::Done(None);
            }
            return Progress::NeedMore;
        }
        Progress::Done(sni(&self.buf[..record_len]))
    }
}

/// The SNI host name of a complete ClientHello record.
pub fn sni(record: &[u8]) -> Option<String> {
    let (_, plaintext) = parse_tls_plaintext(record).ok()?;
    for msg in plaintext.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = msg {
            let (_, exts) = parse_tls_client_hello_extensions(ch.ext?).ok()?;
            for ext in exts {
                if let TlsExtension::SNI(names) = ext {
                    let (_, name) = names.first()?;
                    return std::str::from_utf8(name)
                        .ok()
                        .map(|s| s.to_ascii_lowercase());
                }
            }
        }
    }
    None
}
