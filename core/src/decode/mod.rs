//! Turns captured frames into the few facts the engine tracks.
//!
//! Headers are read with etherparse's header slices (zero-copy views; its whole-packet slicer copies
//! large structs per packet, which costs a third of the analysis time). The fixed Linux cooked v1/v2
//! and BSD loopback headers are read by hand. Truncated frames (snaplen) are
//! decoded as far as they go; what cannot be decoded is reported as a `DecodeError` for the engine
//! to count. ICMP errors are decoded together with the header they quote, because that quote is how
//! an ICMP error is tied to the connection it rejects.

use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    Ethernet2HeaderSlice, Ipv4HeaderSlice, Ipv6ExtensionsSlice, Ipv6HeaderSlice,
    SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};

use crate::capfile::{LinkType, Packet};
use crate::icmp::Rejection;

pub mod tunnel;

pub use tunnel::{Tunnel, TunnelKind};

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
    /// Source address, in the 128-bit form of flow keys ([`ip_bits`]): the engine keys on it,
    /// and building an `IpAddr` per packet only to convert it cost more than the conversion.
    pub src: u128,
    /// Destination address, likewise.
    pub dst: u128,
    /// Bytes at the IP layer, from the IP header (not the possibly truncated capture).
    pub ip_len: u32,
    /// The transport layer.
    pub l4: L4<'a>,
    /// The IP header, for fingerprints.
    pub ip_header: &'a [u8],
    /// The first transport bytes, for fingerprints.
    pub l4_head: &'a [u8],
    /// Linux cooked v2 capture: interface index and packet type, to tell copies apart.
    pub cooked_origin: CookedOrigin,
    /// The tunnel this packet was taken out of, if it came encapsulated.
    pub tunnel: Option<Tunnel>,
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
    /// An ICMP or ICMPv6 error that quotes a packet of ours. Boxed: errors are rare, and the
    /// inline form made every decoded packet half as large again.
    IcmpError(Box<Rejection>),
    /// An IP packet or GRE inside IP (protocols 4, 41, 47): `tunnel` follows it, and what it
    /// cannot follow is left as this.
    Encapsulated {
        /// IP protocol number.
        proto: u8,
        /// Captured payload, from the end of the IP header.
        payload: &'a [u8],
    },
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
    /// A tunnel header was read, but the capture cut the packet inside it before the inner IP
    /// header ended.
    TunnelTruncated,
}

/// Decodes one captured frame.
///
/// Everything from here to the transport header is inlined into one function, and that into the
/// engine's per-packet path, so a decoded packet is built in registers rather than moved through
/// memory at each step (those moves were a third of the decoding instructions).
#[inline]
pub fn decode<'a>(packet: &Packet<'a>) -> Result<Decoded<'a>, DecodeError> {
    let (ip, cooked_origin) = ip_start(packet)?;
    let d = from_ip(ip, cooked_origin)?;
    if tunnel::may_carry(&d) {
        return tunnel::follow(d);
    }
    Ok(d)
}

/// A Linux cooked capture's interface index and packet type.
type CookedOrigin = Option<(u32, u16)>;

/// Where the IP header starts, past the link layer, and where the packet was seen.
fn ip_start<'a>(packet: &Packet<'a>) -> Result<(&'a [u8], CookedOrigin), DecodeError> {
    let data = packet.data;
    let (ether_type, rest, cooked_origin) = match packet.link {
        LinkType::Ethernet => {
            let (et, rest) = ethernet(data)?;
            (et, rest, None)
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => return Ok((data, None)),
        LinkType::Null => return Ok((data.get(4..).ok_or(DecodeError::Truncated)?, None)),
        LinkType::LinuxSll => {
            // struct sll_header: pkttype, hatype, halen, addr[8], protocol (all big-endian).
            let h = data.get(..16).ok_or(DecodeError::Truncated)?;
            let origin = (0, u16::from_be_bytes([h[0], h[1]]));
            (
                u16::from_be_bytes([h[14], h[15]]),
                &data[16..],
                Some(origin),
            )
        }
        LinkType::LinuxSll2 => {
            // struct sll2_header: protocol, reserved, if_index, hatype, pkttype, halen, addr[8].
            let h = data.get(..20).ok_or(DecodeError::Truncated)?;
            let origin = (u32::from_be_bytes([h[4], h[5], h[6], h[7]]), h[10] as u16);
            (u16::from_be_bytes([h[0], h[1]]), &data[20..], Some(origin))
        }
        LinkType::Other(_) => return Err(DecodeError::UnsupportedLink),
    };
    match ether_type {
        0x0800 | 0x86dd => Ok((rest, cooked_origin)),
        _ => Err(DecodeError::NotIp),
    }
}

/// The EtherType and payload of an Ethernet II frame, through up to two VLAN tags.
fn ethernet(data: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let eth = Ethernet2HeaderSlice::from_slice(data).map_err(|_| DecodeError::Truncated)?;
    let mut ether_type = eth.ether_type().0;
    let mut rest = &data[eth.slice().len()..];
    for _ in 0..2 {
        if !matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        let vlan = SingleVlanHeaderSlice::from_slice(rest).map_err(|_| DecodeError::Truncated)?;
        ether_type = vlan.ether_type().0;
        rest = &rest[vlan.slice().len()..];
    }
    Ok((ether_type, rest))
}

/// The IP layer of a packet: addresses, protocol, lengths, and the start of the transport layer.
struct IpLayer<'a> {
    /// Addresses in [`ip_bits`] form.
    src: u128,
    dst: u128,
    proto: u8,
    /// Total length from the header (bytes on the wire).
    ip_len: u32,
    /// IP header plus extension headers.
    hdr_len: u32,
    /// The IP header itself, for fingerprints.
    header: &'a [u8],
    /// Captured transport bytes (cut by snaplen, and by the IP length).
    payload: &'a [u8],
    /// A non-first fragment: no transport header.
    is_fragment_tail: bool,
}

// Inlined into `from_ip`, the layer's fields stay in registers instead of being returned through
// memory for every packet.
#[inline(always)]
fn ip_layer(data: &[u8]) -> Result<IpLayer<'_>, DecodeError> {
    use etherparse::err::{ipv4, ipv6};
    match data.first().map(|b| b >> 4) {
        Some(4) => {
            let h = Ipv4HeaderSlice::from_slice(data).map_err(|e| match e {
                ipv4::HeaderSliceError::Len(_) => DecodeError::Truncated,
                ipv4::HeaderSliceError::Content(_) => DecodeError::Undecodable,
            })?;
            let hdr_len = h.slice().len();
            // TSO/GSO captures may carry a zero total length; then the capture is the packet.
            let total = match h.total_len() as usize {
                0 => data.len(),
                t => t,
            };
            let end = total.min(data.len()).max(hdr_len);
            Ok(IpLayer {
                src: v4_bits(h.source()),
                dst: v4_bits(h.destination()),
                proto: h.protocol().0,
                ip_len: total as u32,
                hdr_len: hdr_len as u32,
                header: h.slice(),
                payload: &data[hdr_len..end],
                is_fragment_tail: h.fragments_offset().value() != 0,
            })
        }
        Some(6) => {
            let h = Ipv6HeaderSlice::from_slice(data).map_err(|e| match e {
                ipv6::HeaderSliceError::Len(_) => DecodeError::Truncated,
                ipv6::HeaderSliceError::Content(_) => DecodeError::Undecodable,
            })?;
            // Jumbograms and BIG TCP carry a zero payload length; then the capture is the packet.
            let total = match h.payload_length() as usize {
                0 => data.len(),
                n => 40 + n,
            };
            let after = &data[40..total.min(data.len()).max(40)];
            let (exts, next, rest, _) = Ipv6ExtensionsSlice::from_slice_lax(h.next_header(), after);
            Ok(IpLayer {
                src: u128::from_be_bytes(h.source()),
                dst: u128::from_be_bytes(h.destination()),
                proto: next.0,
                ip_len: total as u32,
                hdr_len: (40 + after.len() - rest.len()) as u32,
                header: h.slice(),
                payload: rest,
                // A first fragment carries the transport header but rarely a whole message; all
                // IPv6 fragments are left alone.
                is_fragment_tail: exts.is_fragmenting_payload(),
            })
        }
        Some(_) => Err(DecodeError::Undecodable),
        None => Err(DecodeError::Truncated),
    }
}

#[inline(always)]
fn from_ip(data: &[u8], cooked_origin: CookedOrigin) -> Result<Decoded<'_>, DecodeError> {
    let ip = ip_layer(data)?;
    let l4 = if ip.is_fragment_tail {
        L4::Other
    } else {
        match ip.proto {
            proto::TCP => {
                let t =
                    TcpHeaderSlice::from_slice(ip.payload).map_err(|_| DecodeError::Truncated)?;
                let header_len = t.slice().len();
                L4::Tcp(TcpSegment {
                    sport: t.source_port(),
                    dport: t.destination_port(),
                    flags: t.slice()[13],
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    payload: &ip.payload[header_len..],
                    payload_len: ip
                        .ip_len
                        .saturating_sub(ip.hdr_len)
                        .saturating_sub(header_len as u32),
                })
            }
            proto::UDP => {
                let u =
                    UdpHeaderSlice::from_slice(ip.payload).map_err(|_| DecodeError::Truncated)?;
                let end = (u.length() as usize)
                    .clamp(8, 8.max(ip.payload.len()))
                    .min(ip.payload.len());
                L4::Udp {
                    sport: u.source_port(),
                    dport: u.destination_port(),
                    payload: &ip.payload[8..end],
                }
            }
            ICMPV4 => icmp_error(&ip, crate::icmp::v4_rejection),
            ICMPV6 => icmp_error(&ip, crate::icmp::v6_rejection),
            tunnel::IPIP | tunnel::IPV6_IN_IP | tunnel::GRE => L4::Encapsulated {
                proto: ip.proto,
                payload: ip.payload,
            },
            _ => L4::Other,
        }
    };
    Ok(Decoded {
        src: ip.src,
        dst: ip.dst,
        ip_len: ip.ip_len,
        l4,
        ip_header: ip.header,
        // 40 bytes reach into TCP options: the timestamp tells a retransmission from a copy.
        l4_head: &ip.payload[..ip.payload.len().min(40)],
        cooked_origin,
        tunnel: None,
    })
}

const ICMPV4: u8 = 1;
const ICMPV6: u8 = 58;

fn icmp_error<'a>(ip: &IpLayer<'a>, classify: fn(u8, u8) -> Option<crate::icmp::Reason>) -> L4<'a> {
    // Both ICMP versions: type, code, checksum, 4 bytes, then the quoted packet (RFC 792, 4443).
    let Some(head) = ip.payload.get(..8) else {
        return L4::Other;
    };
    match classify(head[0], head[1]) {
        Some(reason) => quote(ip.src, reason, &ip.payload[8..])
            .map_or(L4::Other, |r| L4::IcmpError(Box::new(r))),
        None => L4::Other,
    }
}

/// Parses the packet an ICMP error quotes: its addresses, protocol and ports.
fn quote(from: u128, reason: crate::icmp::Reason, quoted: &[u8]) -> Option<Rejection> {
    let inner = ip_layer(quoted).ok()?;
    // RFC 792 guarantees the first 8 bytes of the quoted datagram: enough for both ports.
    let ports = inner.payload.get(..4)?;
    Some(Rejection {
        from: bits_ip(from),
        reason,
        proto: inner.proto,
        src: bits_ip(inner.src),
        dst: bits_ip(inner.dst),
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

impl Decoded<'_> {
    /// Identity of the packet apart from fields routers rewrite (TOS, TTL or hop limit, checksum),
    /// for recognising the same packet captured on two interfaces.
    pub fn fingerprint(&self) -> u64 {
        let mut fp = rustc_hash::FxHasher::default();
        let h = self.ip_header;
        if h.len() >= 40 && h[0] >> 4 == 6 {
            fp.write(&h[..7]);
            fp.write(&h[8..40]);
        } else if h.len() >= 20 {
            fp.write(&h[2..8]);
            fp.write_u8(h[9]);
            fp.write(&h[12..20]);
        }
        fp.write(self.l4_head);
        fp.finish()
    }
}

/// An IPv4 address in the form [`ip_bits`] gives it, straight from the header's octets.
fn v4_bits(octets: [u8; 4]) -> u128 {
    Ipv4Addr::from(octets).to_ipv6_mapped().to_bits()
}

/// Maps an address to the 128-bit form used in flow keys (IPv4 as IPv4-mapped IPv6).
pub fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => v4_bits(v4.octets()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_addresses_are_in_flow_key_form() {
        for ip in [
            "10.244.0.10",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            // What the decoder computes from header octets, against the IPv4-mapped address
            // written out.
            let (bits, mapped) = match ip {
                IpAddr::V4(v4) => (v4_bits(v4.octets()), format!("::ffff:{v4}")),
                IpAddr::V6(v6) => (u128::from_be_bytes(v6.octets()), v6.to_string()),
            };
            assert_eq!(bits, mapped.parse::<Ipv6Addr>().unwrap().to_bits(), "{ip}");
            assert_eq!(bits, ip_bits(ip), "{ip}");
            assert_eq!(bits_ip(bits).to_canonical(), ip.to_canonical());
        }
    }
}
