//! The Rust mirror of `include/outflow.h`.
//!
//! Same names, same order, same padding; `tests/layout.rs` compares every size and offset with
//! what the C compiler makes of the header, so editing one side alone fails the tests.

use std::mem::{offset_of, size_of};

/// `OUTFLOW_AF_INET`.
pub const AF_INET: u8 = 4;
/// `OUTFLOW_AF_INET6`.
pub const AF_INET6: u8 = 6;
/// `OUTFLOW_HOOK_INGRESS`: what the pod sends.
pub const HOOK_INGRESS: u8 = 0;
/// `OUTFLOW_HOOK_EGRESS`: what the pod receives.
pub const HOOK_EGRESS: u8 = 1;
/// `OUTFLOW_EV_CONTROL`.
pub const EV_CONTROL: u8 = 1;
/// `OUTFLOW_EV_DNS`.
pub const EV_DNS: u8 = 2;
/// `OUTFLOW_CONTROL_BYTES`.
pub const CONTROL_BYTES: usize = 192;
/// `OUTFLOW_DNS_BYTES`.
pub const DNS_BYTES: usize = 704;

/// `OUTFLOW_STAT_PACKETS`.
pub const STAT_PACKETS: u32 = 0;
/// `OUTFLOW_STAT_BYTES`.
pub const STAT_BYTES: u32 = 1;
/// `OUTFLOW_STAT_FLOWS_NEW`.
pub const STAT_FLOWS_NEW: u32 = 2;
/// `OUTFLOW_STAT_FLOW_FULL`.
pub const STAT_FLOW_FULL: u32 = 3;
/// `OUTFLOW_STAT_EVENTS`.
pub const STAT_EVENTS: u32 = 4;
/// `OUTFLOW_STAT_EVENT_DROPS`.
pub const STAT_EVENT_DROPS: u32 = 5;
/// `OUTFLOW_STAT_NOT_IP`.
pub const STAT_NOT_IP: u32 = 6;
/// `OUTFLOW_STAT_SHORT`.
pub const STAT_SHORT: u32 = 7;
/// `OUTFLOW_STAT_COUNT`.
pub const STAT_COUNT: u32 = 8;

/// `struct outflow_flow_key`: one direction of one flow on one interface.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address; IPv4 in the first 4 bytes.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// Interface index.
    pub ifindex: u32,
    /// IP protocol.
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 44);

/// `struct outflow_flow_value`: counters of one flow direction.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// Segments.
    pub packets: u64,
    /// Bytes from the Ethernet header on.
    pub bytes: u64,
}
const _: () = assert!(size_of::<FlowValue>() == 16);

/// `struct outflow_flow_cache`: a CPU's last flow direction and the counts not yet in `FLOWS`.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCache {
    /// The flow direction of the CPU's last packet.
    pub key: FlowKey,
    /// Padding.
    pub _pad: u32,
    /// Segments not yet added to `FLOWS`.
    pub packets: u64,
    /// Bytes not yet added to `FLOWS`.
    pub bytes: u64,
}
const _: () = assert!(size_of::<FlowCache>() == 64);

/// `struct outflow_event`, without its variable-length `data`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventHeader {
    /// Monotonic time.
    pub ts_ns: u64,
    /// Interface index.
    pub ifindex: u32,
    /// Length of the frame.
    pub pkt_len: u32,
    /// Bytes of the frame that follow.
    pub cap_len: u16,
    /// `EV_CONTROL` or `EV_DNS`.
    pub kind: u8,
    /// `HOOK_INGRESS` or `HOOK_EGRESS`.
    pub hook: u8,
    /// Padding.
    pub _pad: u32,
}
const _: () = assert!(size_of::<EventHeader>() == 24);

// SAFETY: plain old data, `#[repr(C)]`, every bit pattern valid, padding spelled out as fields.
#[allow(unsafe_code)]
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for FlowValue {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for FlowCache {}

impl EventHeader {
    /// Reads the header at the start of a ring-buffer record; `None` if it is too short.
    pub fn parse(bytes: &[u8]) -> Option<(EventHeader, &[u8])> {
        let h = bytes.get(..size_of::<EventHeader>())?;
        let u16_at = |o: usize| u16::from_ne_bytes([h[o], h[o + 1]]);
        let u32_at = |o: usize| u32::from_ne_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let header = EventHeader {
            ts_ns: u64::from_ne_bytes(h[0..8].try_into().expect("8 bytes")),
            ifindex: u32_at(offset_of!(EventHeader, ifindex)),
            pkt_len: u32_at(offset_of!(EventHeader, pkt_len)),
            cap_len: u16_at(offset_of!(EventHeader, cap_len)),
            kind: h[offset_of!(EventHeader, kind)],
            hook: h[offset_of!(EventHeader, hook)],
            _pad: u32_at(offset_of!(EventHeader, _pad)),
        };
        let rest = &bytes[size_of::<EventHeader>()..];
        let data = rest.get(..header.cap_len as usize).unwrap_or(rest);
        Some((header, data))
    }
}
