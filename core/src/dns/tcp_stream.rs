//! DNS over TCP: length-prefixed messages (RFC 7766) collected across segments.

use crate::app::event::AppEvent;

/// Bytes buffered per direction at most; a larger backlog means this is not DNS.
const MAX_BUFFER: usize = 128 * 1024;

/// Reassembly state of one DNS-over-TCP flow.
#[derive(Debug, Default)]
pub struct DnsTcpStream {
    dirs: [Direction; 2],
}

#[derive(Debug, Default)]
struct Direction {
    /// Sequence number of the next byte expected.
    next: Option<u32>,
    buf: Vec<u8>,
    /// A gap or a snaplen cut lost bytes: the length framing cannot be trusted any more.
    lost: bool,
}

impl DnsTcpStream {
    /// Feeds a segment; complete messages are emitted as `AppEvent::DnsMessage`.
    pub fn on_payload(
        &mut self,
        from_client: bool,
        seq: u32,
        payload: &[u8],
        wire_len: u32,
        out: &mut Vec<AppEvent>,
    ) {
        let dir = &mut self.dirs[from_client as usize];
        if dir.lost {
            return;
        }
        let mut data = payload;
        if let Some(next) = dir.next {
            // Serial number arithmetic (RFC 1982): ahead of `next` is a gap, behind it is old.
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead > 0 {
                dir.lost = true;
                dir.buf.clear();
                return;
            }
            let old = ahead.unsigned_abs() as usize;
            if old >= data.len() {
                return; // A retransmission of bytes already taken.
            }
            data = &data[old..];
        }
        if (payload.len() as u32) < wire_len {
            // Cut by the snapshot length: the rest of the stream cannot be framed.
            dir.lost = true;
            dir.buf.clear();
            return;
        }
        dir.next = Some(seq.wrapping_add(payload.len() as u32));
        dir.buf.extend_from_slice(data);
        let mut at = 0;
        while let Some(len_bytes) = dir.buf.get(at..at + 2) {
            let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
            let Some(message) = dir.buf.get(at + 2..at + 2 + len) else {
                break;
            };
            out.push(AppEvent::DnsMessage(message.to_vec()));
            at += 2 + len;
        }
        dir.buf.drain(..at);
        if dir.buf.len() > MAX_BUFFER {
            dir.lost = true;
            dir.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u16).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    }

    #[test]
    fn messages_split_across_segments_are_joined_and_retransmissions_skipped() {
        let mut s = DnsTcpStream::default();
        let mut out = Vec::new();
        let bytes = framed(&[b"hello", b"dns"]);
        s.on_payload(true, 100, &bytes[..4], 4, &mut out);
        s.on_payload(true, 100, &bytes[..4], 4, &mut out);
        s.on_payload(true, 102, &bytes[2..], (bytes.len() - 2) as u32, &mut out);
        assert_eq!(
            out,
            vec![
                AppEvent::DnsMessage(b"hello".to_vec()),
                AppEvent::DnsMessage(b"dns".to_vec())
            ]
        );
    }

    #[test]
    fn a_gap_stops_the_stream_instead_of_misframing_it() {
        let mut s = DnsTcpStream::default();
        let mut out = Vec::new();
        let bytes = framed(&[b"first", b"second"]);
        s.on_payload(true, 1, &bytes[..3], 3, &mut out);
        s.on_payload(true, 10, &bytes[9..], (bytes.len() - 9) as u32, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn many_empty_messages_in_one_segment_are_cheap() {
        let mut s = DnsTcpStream::default();
        let mut out = Vec::new();
        let zeros = vec![0u8; 65_536];
        s.on_payload(true, 1, &zeros, zeros.len() as u32, &mut out);
        assert_eq!(out.len(), 32_768);
    }
}
