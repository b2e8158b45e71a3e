//! DNS over TCP: length-prefixed messages (RFC 7766) collected across segments.

use crate::app::{AppEvent, SeqTracker};

/// Bytes buffered per direction at most; a larger backlog means this is not DNS.
const MAX_BUFFER: usize = 128 * 1024;

/// Reassembly state of one DNS-over-TCP flow.
#[derive(Debug, Default)]
pub struct DnsTcpStream {
    dirs: [Direction; 2],
}

#[derive(Debug, Default)]
struct Direction {
    seq: SeqTracker,
    buf: Vec<u8>,
}

impl DnsTcpStream {
    /// Feeds a segment; complete messages are emitted as `AppEvent::DnsMessage`.
    pub fn on_payload(
        &mut self,
        from_client: bool,
        seq: u32,
        payload: &[u8],
        out: &mut Vec<AppEvent>,
    ) {
        let dir = &mut self.dirs[from_client as usize];
        if !dir.seq.accept(seq, payload.len()) {
            return;
        }
        dir.buf.extend_from_slice(payload);
        loop {
            if dir.buf.len() < 2 {
                break;
            }
            let len = u16::from_be_bytes([dir.buf[0], dir.buf[1]]) as usize;
            if dir.buf.len() < 2 + len {
                break;
            }
            let bytes = dir.buf[2..2 + len].to_vec();
            dir.buf.drain(..2 + len);
            out.push(AppEvent::DnsMessage(bytes));
        }
        if dir.buf.len() > MAX_BUFFER {
            dir.buf.clear();
        }
    }
}
