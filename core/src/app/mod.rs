//! What the application layer of a TCP flow says, where the capture shows it.
//!
//! Diagnoses often start here: a 403 from a firewall, a 407 from a proxy that wants credentials, a
//! CONNECT the proxy refused, or the TLS SNI that names a destination known only by IP. Each flow
//! is classified by its first client payload; flows that are neither HTTP, TLS nor DNS become
//! `Opaque` and cost nothing more. Segments are taken in sequence order and retransmissions are
//! skipped, so a repeated response is not counted twice.

pub(crate) mod event;
pub mod http;
pub mod tls;

pub use event::AppEvent;

use crate::dns::tcp_stream::DnsTcpStream;

/// Parser state of one TCP flow.
#[derive(Debug, Default)]
pub enum App {
    /// No client payload yet.
    #[default]
    Unknown,
    /// Cleartext HTTP/1.x (requests and responses, or an HTTP proxy).
    Http(Box<http::HttpFlow>),
    /// A TLS ClientHello spread over several segments.
    TlsHello(Box<tls::HelloReassembly>),
    /// DNS over TCP.
    Dns(Box<DnsTcpStream>),
    /// Nothing more to learn.
    Opaque,
}

impl App {
    /// The state a new flow starts in: DNS for port 53, otherwise to be found out.
    pub fn for_port(server_port: u16) -> App {
        if server_port == 53 {
            App::Dns(Box::default())
        } else {
            App::Unknown
        }
    }

    /// Feeds a TCP payload; `seq` is its sequence number, `wire_len` its length on the wire (the
    /// capture may hold less).
    pub fn on_payload(
        &mut self,
        from_client: bool,
        seq: u32,
        payload: &[u8],
        wire_len: u32,
        out: &mut Vec<AppEvent>,
    ) {
        match self {
            App::Opaque => {}
            App::Unknown => {
                if !from_client {
                    return;
                }
                *self = if tls::is_client_hello(payload) {
                    let mut r = tls::HelloReassembly::default();
                    match r.push(seq, payload) {
                        tls::Progress::NeedMore => App::TlsHello(Box::new(r)),
                        tls::Progress::Done(sni) => {
                            out.extend(sni.map(AppEvent::Name));
                            App::Opaque
                        }
                    }
                } else if http::is_request(payload) {
                    let mut h = http::HttpFlow::default();
                    if h.on_payload(true, seq, payload, out) {
                        App::Http(Box::new(h))
                    } else {
                        App::Unknown
                    }
                } else {
                    App::Opaque
                };
            }
            App::Http(h) => {
                if !h.on_payload(from_client, seq, payload, out) {
                    // A CONNECT tunnel opened: what follows is the tunnelled protocol.
                    *self = App::Unknown;
                }
            }
            App::TlsHello(r) => {
                if from_client {
                    if let tls::Progress::Done(sni) = r.push(seq, payload) {
                        out.extend(sni.map(AppEvent::Name));
                        *self = App::Opaque;
                    }
                }
            }
            App::Dns(s) => s.on_payload(from_client, seq, payload, wire_len, out),
        }
    }

    /// The flow ended (or the input did): reports what is still waiting for an answer.
    pub fn on_end(&mut self, out: &mut Vec<AppEvent>) {
        if let App::Http(h) = self {
            h.on_end(out);
        }
    }
}

/// Tracks the next expected sequence number of one direction, to skip retransmitted segments.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqTracker {
    next: Option<u32>,
}

impl SeqTracker {
    /// Whether the segment at `seq` is new data (not a retransmission); advances past it.
    pub fn accept(&mut self, seq: u32, len: usize) -> bool {
        if let Some(next) = self.next {
            // Serial number arithmetic (RFC 1982): a segment ending at or before `next` is old.
            let end = seq.wrapping_add(len as u32);
            if (end.wrapping_sub(next) as i32) <= 0 {
                return false;
            }
        }
        self.next = Some(seq.wrapping_add(len as u32));
        true
    }
}
