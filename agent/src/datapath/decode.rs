//! A ring-buffer record becomes an engine packet.
//!
//! The one place where raw events meet the engine: the kernel's monotonic timestamp becomes wall
//! time, the hook becomes a direction, and the frame's bytes are handed over as a snapped frame
//! whose original length is the packet's.

use outflow_core::capfile::{Direction, LinkType, Packet};
use outflow_ebpf::abi::{EventHeader, HOOK_INGRESS};

/// Decodes a record; `None` if it is shorter than its header. `realtime_offset_ns` turns
/// CLOCK_MONOTONIC into nanoseconds since the Unix epoch.
pub fn packet(record: &[u8], realtime_offset_ns: u64) -> Option<Packet<'_>> {
    let (h, data) = EventHeader::parse(record)?;
    Some(Packet {
        ts_ns: h.ts_ns.saturating_add(realtime_offset_ns),
        iface: h.ifindex,
        link: LinkType::Ethernet,
        // On a pod's host-side interface, TC ingress is what the pod sent.
        direction: if h.hook == HOOK_INGRESS {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        orig_len: h.pkt_len.max(data.len() as u32),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use outflow_ebpf::abi::{EV_CONTROL, HOOK_EGRESS};
    use std::mem::size_of;

    fn record(hook: u8, frame: &[u8], pkt_len: u32) -> Vec<u8> {
        let h = EventHeader {
            ts_ns: 1_000,
            ifindex: 7,
            pkt_len,
            cap_len: frame.len() as u16,
            kind: EV_CONTROL,
            hook,
            _pad: 0,
        };
        let mut out = vec![0u8; size_of::<EventHeader>()];
        out[0..8].copy_from_slice(&h.ts_ns.to_ne_bytes());
        out[8..12].copy_from_slice(&h.ifindex.to_ne_bytes());
        out[12..16].copy_from_slice(&h.pkt_len.to_ne_bytes());
        out[16..18].copy_from_slice(&h.cap_len.to_ne_bytes());
        out[18] = h.kind;
        out[19] = h.hook;
        out.extend_from_slice(frame);
        out
    }

    #[test]
    fn a_record_becomes_a_snapped_frame_in_wall_time_with_its_direction() {
        let rec = record(HOOK_EGRESS, &[1, 2, 3], 1500);
        let p = packet(&rec, 5_000).expect("whole record");
        assert_eq!((p.ts_ns, p.iface, p.orig_len), (6_000, 7, 1500));
        assert_eq!(p.data, &[1, 2, 3]);
        assert_eq!(p.direction, Direction::Outbound);
        let rec = record(HOOK_INGRESS, &[1], 1);
        assert_eq!(packet(&rec, 0).unwrap().direction, Direction::Inbound);
    }

    #[test]
    fn a_short_or_lying_record_is_refused_or_clamped_never_a_panic() {
        assert!(packet(&[0u8; 5], 0).is_none());
        let mut rec = record(HOOK_INGRESS, &[9, 9], 2);
        rec[16..18].copy_from_slice(&500u16.to_ne_bytes()); // cap_len past the end
        let p = packet(&rec, 0).expect("header is whole");
        assert_eq!(p.data, &[9, 9]);
    }
}
