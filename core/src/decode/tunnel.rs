//! Follows the encapsulations a Kubernetes node's uplink carries, down to the pod's packet.
//!
//! Overlay networks carry pod traffic between nodes inside VXLAN (RFC 7348; UDP 4789, and 8472,
//! the Linux kernel's default that flannel keeps), Geneve (RFC 8926; UDP 6081, with options), GRE
//! (RFC 2784/2890; with checksum, key and sequence number), and IP-in-IP (IPv4 or IPv6 inside
//! IPv4 or IPv6, protocols 4 and 41). VLAN tags (802.1Q, QinQ) are taken off by the Ethernet
//! decoder, inside a tunnel as outside. etherparse 0.21 decodes none of the tunnel headers, so
//! they are read here by hand: each is a few fixed bytes, every read is bounds-checked with
//! `get`, and nesting stops at [`MAX_DEPTH`].
//!
//! What is not a tunnel this module can follow stays the outer packet (a datagram to UDP 4789
//! that is not VXLAN is just a UDP flow). A tunnel header that promises an inner packet cut
//! short by the capture makes a `DecodeError::TunnelTruncated`, for the engine to count.

use super::{ethernet, from_ip, DecodeError, Decoded, L4};

/// IP protocol: IPv4 inside IP (RFC 2003).
pub const IPIP: u8 = 4;
/// IP protocol: IPv6 inside IP (RFC 4213).
pub const IPV6_IN_IP: u8 = 41;
/// IP protocol: GRE.
pub const GRE: u8 = 47;

/// VXLAN's IANA port.
pub const VXLAN_PORT: u16 = 4789;
/// The Linux kernel's VXLAN default (`ip link add type vxlan` without `dstport`), which flannel
/// keeps.
pub const VXLAN_LINUX_PORT: u16 = 8472;
/// Geneve's IANA port.
pub const GENEVE_PORT: u16 = 6081;

/// Most encapsulations followed inside one another; deeper ones stay as they are.
pub const MAX_DEPTH: u8 = 4;

/// Which encapsulation carried a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// VXLAN.
    Vxlan,
    /// Geneve.
    Geneve,
    /// GRE.
    Gre,
    /// IPv4 or IPv6 directly inside IPv4 or IPv6.
    IpInIp,
}

impl TunnelKind {
    /// The report's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::IpInIp => "ipip",
        }
    }
}

/// The tunnel a packet came through: the innermost one, whose outer addresses are the nodes
/// (or gateways) that sent it to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// The encapsulation.
    pub kind: TunnelKind,
    /// Outer source address, in `ip_bits` form.
    pub src: u128,
    /// Outer destination address.
    pub dst: u128,
    /// VXLAN or Geneve network identifier, GRE key.
    pub id: Option<u32>,
    /// How many encapsulations were taken off (1 for one tunnel).
    pub depth: u8,
}

/// What a tunnel header says comes after it.
enum Inner<'a> {
    /// An Ethernet frame (VXLAN, Geneve and GRE transparent Ethernet bridging).
    Ethernet(&'a [u8]),
    /// An IPv4 or IPv6 packet.
    Ip(&'a [u8]),
}

impl Inner<'_> {
    /// The shortest inner packet: an IPv4 header, behind an Ethernet header if framed.
    fn least_len(&self) -> usize {
        match self {
            Inner::Ethernet(_) => 14 + 20,
            Inner::Ip(_) => 20,
        }
    }
}

/// Whether a decoded packet may carry another one; checked on every packet, so only a compare.
#[inline(always)]
pub(super) fn may_carry(d: &Decoded<'_>) -> bool {
    match &d.l4 {
        L4::Udp { dport, .. } => matches!(*dport, VXLAN_PORT | VXLAN_LINUX_PORT | GENEVE_PORT),
        L4::Encapsulated { .. } => true,
        _ => false,
    }
}

/// The packet inside `outer`, tunnels within tunnels followed up to [`MAX_DEPTH`]; `outer`
/// itself when it carries nothing this module follows.
#[inline(never)]
pub(super) fn follow(outer: Decoded<'_>) -> Result<Decoded<'_>, DecodeError> {
    let mut d = outer;
    for depth in 1..=MAX_DEPTH {
        if !may_carry(&d) {
            break;
        }
        let Some((kind, id, inner)) = open(&d) else {
            break;
        };
        let ip = match inner {
            Inner::Ip(ip) => ip,
            Inner::Ethernet(frame) => match ethernet(frame) {
                Ok((0x0800 | 0x86dd, ip)) => ip,
                Ok(_) => return Err(DecodeError::NotIp),
                Err(_) => return Err(DecodeError::TunnelTruncated),
            },
        };
        let tunnel = Tunnel {
            kind,
            src: d.src,
            dst: d.dst,
            id,
            depth,
        };
        let mut inner = from_ip(ip, d.cooked_origin).map_err(|e| match e {
            DecodeError::Truncated => DecodeError::TunnelTruncated,
            e => e,
        })?;
        inner.tunnel = Some(tunnel);
        d = inner;
    }
    Ok(d)
}

/// The tunnel header at the start of a packet's transport layer: its kind, identifier and what
/// follows it. `None` when it is not one this module follows.
fn open<'a>(d: &Decoded<'a>) -> Option<(TunnelKind, Option<u32>, Inner<'a>)> {
    match d.l4 {
        L4::Udp { dport, payload, .. } => {
            // A datagram too short on the wire for a tunnel header and the smallest inner
            // packet is something else sent to the port; one long enough but captured short
            // is a tunnel whose inner packet was cut.
            let wire_len = (d.ip_len as usize).saturating_sub(d.ip_header.len() + 8);
            let (kind, (vni, header_len, inner)) = if dport == GENEVE_PORT {
                (TunnelKind::Geneve, geneve(payload)?)
            } else {
                (TunnelKind::Vxlan, vxlan(payload)?)
            };
            let least = header_len + inner.least_len();
            (wire_len >= least).then_some((kind, Some(vni), inner))
        }
        L4::Encapsulated {
            proto: IPIP | IPV6_IN_IP,
            payload,
        } => Some((TunnelKind::IpInIp, None, Inner::Ip(payload))),
        L4::Encapsulated {
            proto: GRE,
            payload,
        } => gre(payload).map(|(key, inner)| (TunnelKind::Gre, key, inner)),
        _ => None,
    }
}

/// A VXLAN header (RFC 7348 §5): flags with the I bit (VNI valid), 24 reserved bits, the VNI,
/// 8 reserved bits, then an Ethernet frame. Returns the VNI, the header length and the frame. The Group Policy extension's G and A bits and its
/// policy id (in the first reserved field) are allowed: Cilium and Linux set them with `gbp`.
/// Anything else set in the flags (VXLAN-GPE's P bit, the O bit) is another protocol.
fn vxlan(payload: &[u8]) -> Option<(u32, usize, Inner<'_>)> {
    let h = payload.get(..8)?;
    if h[0] & 0x08 == 0 || h[0] & !0x88 != 0 || h[1] & !0x40 != 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    Some((vni, 8, Inner::Ethernet(&payload[8..])))
}

/// A Geneve header (RFC 8926 §3.4): version 0, options length in 4-byte words, O and C bits,
/// protocol type, VNI, then the options and the inner packet. Options are skipped whole: what
/// they say does not change which pod talked to what. Returns the VNI, the header's length with
/// its options, and the inner packet.
fn geneve(payload: &[u8]) -> Option<(u32, usize, Inner<'_>)> {
    let h = payload.get(..8)?;
    if h[0] >> 6 != 0 {
        return None;
    }
    let start = 8 + usize::from(h[0] & 0x3f) * 4;
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    // The options are part of the header: cut inside them, there is no inner packet to find,
    // but there was one (the header said so).
    let rest = payload.get(start..).unwrap_or_default();
    inner_of(u16::from_be_bytes([h[2], h[3]]), rest).map(|inner| (vni, start, inner))
}

/// A GRE header (RFC 2784, with RFC 2890's key and sequence number): C, K and S bits each add 4
/// bytes. Version 1 (PPTP's enhanced GRE) and RFC 1701's routing are not followed.
fn gre(payload: &[u8]) -> Option<(Option<u32>, Inner<'_>)> {
    let h = payload.get(..4)?;
    let (flags, version) = (h[0], h[1] & 0x07);
    if version != 0 || flags & 0x40 != 0 {
        return None;
    }
    let mut at = 4;
    if flags & 0x80 != 0 {
        at += 4; // checksum and reserved
    }
    let key = if flags & 0x20 != 0 {
        let k = payload.get(at..at + 4)?;
        at += 4;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    if flags & 0x10 != 0 {
        at += 4; // sequence number
    }
    let rest = payload.get(at..).unwrap_or_default();
    inner_of(u16::from_be_bytes([h[2], h[3]]), rest).map(|inner| (key, inner))
}

/// What a tunnel's EtherType-valued protocol field says follows.
fn inner_of(protocol: u16, rest: &[u8]) -> Option<Inner<'_>> {
    match protocol {
        0x0800 | 0x86dd => Some(Inner::Ip(rest)),
        // Transparent Ethernet bridging (gretap, Geneve's usual payload).
        0x6558 => Some(Inner::Ethernet(rest)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
