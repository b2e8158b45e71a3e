//! Turns captured frames into the few facts the engine tracks.
//!
//! Link layers are stripped here (Ethernet and VLAN by etherparse; the fixed Linux cooked v1/v2 and
//! BSD loopback headers by hand, since etherparse's lax slicer starts at an EtherType), then
//! etherparse slices IP and the transport header without copying. Truncated frames (snaplen) are
//! decoded as far as they go; what cannot be decoded is reported as a `DecodeError` for the engine
//! to count. ICMP errors are decoded together with the header they quote, because that quote is how
//! an ICMP error is tied to the connection it rejects.

use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::capfile::{LinkType, Packet};
use crate::icmp::Rejection;

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// IP protocol numbers outflow distinguishes.
pub mod proto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// A decoded IP packet.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Bytes at the IP layer, from the IP header (not the possibly truncated capture).
    pub ip_len: u32,
    /// The transport layer.
    pub l4: L4<'a>,
    /// Identity of the packet apart from fields routers rewrite (TTL, checksum), for recognising
    /// the same packet captured on two interfaces.
    pub fingerprint: u64,
    /// Linux cooked capture: interface index (v2) and packet type, to tell copies apart.
    pub cooked_origin: Option<(u32, u16)>,
}

/// The transport layer of a decoded packet.
#[derive(Debug, Clone)]
pub enum L4<'a> {
    /// A TCP segment.
    Tcp(TcpSegment<'a>),
    /// A UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Captured payload (may be cut by snaplen).
        payload: &'a [u8],
    },
    /// An ICMP or ICMPv6 error that quotes a packet of ours.
    IcmpError(Rejection),
    /// Anything else (other ICMP, fragments, other protocols).
    Other,
}

/// The fields of a TCP segment the engine uses.
#[derive(Debug, Clone)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Flag bits, see [`tcp_flags`].
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Captured payload (may be cut by snaplen).
    pub payload: &'a [u8],
    /// Payload length on the wire.
    pub payload_len: u32,
}

/// Why a frame produced no IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not IP (ARP, LLDP, …): normal, counted apart from errors.
    NotIp,
    /// Cut before the IP header ended.
    Truncated,
    /// The headers are malformed.
    Undecodable,
    /// The capture's link type is not one outflow reads.
    UnsupportedLink,
}

/// Decodes one captured frame.
pub fn decode<'a>(packet: &Packet<'a>) -> Result<Decoded<'a>, DecodeError> {
    let data = packet.data;
    let mut cooked_origin = None;
    let sliced = match packet.link {
        LinkType::Ethernet => {
            LaxSlicedPacket::from_ethernet(data).map_err(|_| DecodeError::Truncated)?
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => from_ip(data)?,
        LinkType::Null => from_ip(data.get(4..).ok_or(DecodeError::Truncated)?)?,
        LinkType::LinuxSll => {
            // struct sll_header: pkttype, hatype, halen, addr[8], protocol (all big-endian).
            let h = data.get(..16).ok_or(DecodeError::Truncated)?;
            cooked_origin = Some((0, u16::from_be_bytes([h[0], h[1]])));
            let ether_type = u16::from_be_bytes([h[14], h[15]]);
            LaxSlicedPacket::from_ether_type(EtherType(ether_type), &data[16..])
        }
        LinkType::LinuxSll2 => {
            // struct sll2_header: protocol, reserved, if_index, hatype, pkttype, halen, addr[8].
            let h = data.get(..20).ok_or(DecodeError::Truncated)?;
            let ifindex = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            cooked_origin = Some((ifindex, h[10] as u16));
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([h[0], h[1]])),
                &data[20..],
            )
        }
        LinkType::Other(_) => return Err(DecodeError::UnsupportedLink),
    };
    let mut decoded = from_sliced(&sliced)?;
    decoded.cooked_origin = cooked_origin;
    Ok(decoded)
}

fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    LaxSlicedPacket::from_ip(data).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => DecodeError::Undecodable,
    })
}

fn from_sliced<'a>(sliced: &LaxSlicedPacket<'a>) -> Result<Decoded<'a>, DecodeError> {
    let mut fp = rustc_hash::FxHasher::default();
    let (src, dst, ip_len, ip_hdr_len, ip_payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let raw = h.slice();
            // Everything but TOS (1), TTL (8) and checksum (10..12), which forwarding rewrites.
            fp.write(&raw[2..8]);
            fp.write_u8(raw[9]);
            fp.write(&raw[12..20]);
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.total_len() as u32,
                raw.len() as u32 + v4.extensions().auth.map_or(0, |a| a.slice().len() as u32),
                v4.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let raw = h.slice();
            // Everything but the hop limit (7).
            fp.write(&raw[..7]);
            fp.write(&raw[8..40]);
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.payload_length() as u32 + 40,
                40 + v6.extensions().slice().len() as u32,
                v6.payload(),
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(DecodeError::NotIp),
        None => {
            return Err(match &sliced.stop_err {
                Some(_) => DecodeError::Undecodable,
                None => DecodeError::NotIp,
            })
        }
    };
    let p = ip_payload.payload;
    fp.write(&p[..p.len().min(24)]);
    let l4 = match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => {
            let header_len = t.header_len() as u32;
            let payload_len = ip_len.saturating_sub(ip_hdr_len).saturating_sub(header_len);
            L4::Tcp(TcpSegment {
                sport: t.source_port(),
                dport: t.destination_port(),
                flags: t.slice()[13],
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                payload: t.payload(),
                payload_len,
            })
        }
        Some(TransportSlice::Udp(u)) => L4::Udp {
            sport: u.source_port(),
            dport: u.destination_port(),
            payload: u.payload(),
        },
        Some(TransportSlice::Icmpv4(i)) => {
            match crate::icmp::v4_rejection(i.type_u8(), i.code_u8()) {
                Some(reason) => quote(src, reason, i.payload()).map_or(L4::Other, L4::IcmpError),
                None => L4::Other,
            }
        }
        Some(TransportSlice::Icmpv6(i)) => {
            match crate::icmp::v6_rejection(i.type_u8(), i.code_u8()) {
                Some(reason) => quote(src, reason, i.payload()).map_or(L4::Other, L4::IcmpError),
                None => L4::Other,
            }
        }
        _ => L4::Other,
    };
    Ok(Decoded {
        src,
        dst,
        ip_len,
        l4,
        fingerprint: fp.finish(),
        cooked_origin: None,
    })
}

/// Parses the packet an ICMP error quotes: its addresses, protocol and ports.
fn quote(from: IpAddr, reason: crate::icmp::Reason, quoted: &[u8]) -> Option<Rejection> {
    let inner = LaxSlicedPacket::from_ip(quoted).ok()?;
    let (src, dst, payload) = match &inner.net {
        Some(LaxNetSlice::Ipv4(v4)) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.payload(),
        ),
        Some(LaxNetSlice::Ipv6(v6)) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.payload(),
        ),
        _ => return None,
    };
    // RFC 792 guarantees the first 8 bytes of the quoted datagram: enough for both ports.
    let ports = payload.payload.get(..4)?;
    Some(Rejection {
        from,
        reason,
        proto: payload.ip_number.0,
        src,
        dst,
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// Maps an address to the 128-bit form used in flow keys (IPv4 as IPv4-mapped IPv6).
pub fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The inverse of [`ip_bits`].
pub fn bits_ip(bits: u128) -> IpAddr {
    let v6 = Ipv6Addr::from_bits(bits);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// An unspecified IPv4 address, for defaults.
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
