//! What a flow's application layer reports: names, HTTP statuses, CONNECT answers, DNS messages.
//!
//! The parsers in `app/` and the DNS-over-TCP reassembly in `dns/tcp_stream.rs` emit these for the
//! engine to record. The type stands alone so that `dns` can emit it without depending on the
//! `app` module that, in turn, holds a `DnsTcpStream`.

/// Something the application layer said, to be recorded on the flow's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    /// A destination name (TLS SNI, HTTP Host, CONNECT host).
    Name(String),
    /// An HTTP response status to a plain request.
    HttpStatus(u16),
    /// A proxy's answer to CONNECT (`None`: no answer before the flow ended).
    Connect {
        /// `host:port` asked for.
        target: String,
        /// The proxy's status.
        status: Option<u16>,
    },
    /// A complete DNS message carried over TCP, in the direction of the segment that completed it.
    DnsMessage(Vec<u8>),
}
