//! One parse step over the buffered input: the next pcap record or pcapng block, with the
//! timestamp, interface and direction conventions applied that `pcap-file` leaves to callers.

use std::borrow::Cow;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;

use super::{Direction, LinkType};

/// What a pcapng interface description says about its packets.
#[derive(Debug, Clone)]
pub struct IfaceInfo {
    /// Link type of the interface's packets.
    pub link: LinkType,
    /// Interface name (`if_name`), when recorded.
    pub name: Option<String>,
    /// `if_tsresol`: bit 7 clear means 10^-n seconds, set means 2^-n.
    pub(super) tsresol: u8,
    /// `if_tsoffset`, seconds; signed (pcapng spec §4.2), stored as read.
    pub(super) tsoffset_s: i64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Current {
    pub(super) ts_ns: u64,
    pub(super) iface: u32,
    pub(super) link: LinkType,
    pub(super) direction: Direction,
    pub(super) orig_len: u32,
    pub(super) data_start: usize,
    pub(super) data_len: usize,
}

/// A packet found by a parse step and the address of its data in the parsed slice.
pub(super) type Found = Option<(Current, usize)>;

#[inline]
pub(super) fn pcap_step(
    parser: &PcapParser,
    link: LinkType,
    nanos: bool,
    avail: &[u8],
) -> Result<(usize, Found), PcapError> {
    let (rest, raw) = parser.next_raw_packet(avail)?;
    let frac_ns = if nanos {
        raw.ts_frac as u64
    } else {
        raw.ts_frac as u64 * 1000
    };
    let data: &[u8] = match &raw.data {
        Cow::Borrowed(d) => d,
        Cow::Owned(_) => unreachable_owned(),
    };
    let cur = Current {
        ts_ns: raw.ts_sec as u64 * 1_000_000_000 + frac_ns,
        iface: 0,
        link,
        direction: Direction::Unknown,
        orig_len: raw.orig_len.max(data.len() as u32),
        data_start: 0,
        data_len: data.len(),
    };
    Ok((
        avail.len() - rest.len(),
        Some((cur, data.as_ptr() as usize)),
    ))
}

pub(super) fn pcapng_step(
    parser: &mut PcapNgParser,
    ifaces: &mut Vec<IfaceInfo>,
    avail: &[u8],
) -> Result<(usize, Found), PcapError> {
    let (rest, block) = parser.next_block(avail)?;
    let used = avail.len() - rest.len();
    let found = match block {
        Block::SectionHeader(_) => {
            ifaces.clear();
            None
        }
        Block::InterfaceDescription(idb) => {
            let mut info = IfaceInfo {
                link: LinkType::from_number(u32::from(idb.linktype)),
                name: None,
                tsresol: 6,
                tsoffset_s: 0,
            };
            for opt in &idb.options {
                match opt {
                    InterfaceDescriptionOption::IfName(n) => info.name = Some(n.to_string()),
                    InterfaceDescriptionOption::IfTsResol(r) => info.tsresol = *r,
                    InterfaceDescriptionOption::IfTsOffset(o) => info.tsoffset_s = *o as i64,
                    _ => {}
                }
            }
            ifaces.push(info);
            None
        }
        Block::EnhancedPacket(epb) => {
            let info = ifaces
                .get(epb.interface_id as usize)
                .ok_or(PcapError::InvalidInterfaceId(epb.interface_id))?;
            // pcap-file hands the raw timestamp over as nanoseconds; it is in if_tsresol units.
            let raw_ts = epb.timestamp.as_nanos() as u64;
            let mut direction = Direction::Unknown;
            for opt in &epb.options {
                if let EnhancedPacketOption::Flags(flags) = opt {
                    direction = match flags & 0b11 {
                        1 => Direction::Inbound,
                        2 => Direction::Outbound,
                        _ => Direction::Unknown,
                    };
                }
            }
            let data: &[u8] = match &epb.data {
                Cow::Borrowed(d) => d,
                Cow::Owned(_) => unreachable_owned(),
            };
            Some((
                Current {
                    ts_ns: with_offset(to_ns(raw_ts, info.tsresol), info.tsoffset_s),
                    iface: epb.interface_id,
                    link: info.link,
                    direction,
                    orig_len: epb.original_len.max(data.len() as u32),
                    data_start: 0,
                    data_len: data.len(),
                },
                data.as_ptr() as usize,
            ))
        }
        Block::SimplePacket(spb) => {
            let info = ifaces.first().ok_or(PcapError::InvalidInterfaceId(0))?;
            let data: &[u8] = match &spb.data {
                Cow::Borrowed(d) => d,
                Cow::Owned(_) => unreachable_owned(),
            };
            Some((
                Current {
                    ts_ns: 0,
                    iface: 0,
                    link: info.link,
                    direction: Direction::Unknown,
                    orig_len: spb.original_len.max(data.len() as u32),
                    data_start: 0,
                    data_len: data.len(),
                },
                data.as_ptr() as usize,
            ))
        }
        _ => None,
    };
    Ok((used, found))
}

/// `pcap-file` borrows packet data from the slice it parses; it only owns data it was given owned.
fn unreachable_owned() -> ! {
    unreachable!("pcap-file returned owned packet data from a borrowed slice")
}

/// Adds a signed `if_tsoffset` in seconds, saturating at the ends of time.
fn with_offset(ts_ns: u64, offset_s: i64) -> u64 {
    let offset_ns = offset_s.unsigned_abs().saturating_mul(1_000_000_000);
    if offset_s < 0 {
        ts_ns.saturating_sub(offset_ns)
    } else {
        ts_ns.saturating_add(offset_ns)
    }
}

/// Converts a timestamp in `if_tsresol` units to nanoseconds.
fn to_ns(raw: u64, tsresol: u8) -> u64 {
    let exp = (tsresol & 0x7f) as u32;
    if tsresol & 0x80 == 0 {
        if exp <= 9 {
            raw.saturating_mul(10u64.pow(9 - exp))
        } else {
            raw / 10u64.saturating_pow(exp - 9)
        }
    } else {
        ((raw as u128 * 1_000_000_000u128) >> exp.min(127)).min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_tsoffset_moves_time_back() {
        assert_eq!(with_offset(10_000_000_000, -3), 7_000_000_000);
        assert_eq!(with_offset(1, -3), 0);
        assert_eq!(with_offset(1, 2), 2_000_000_001);
    }

    #[test]
    fn tsresol_converts_decimal_and_binary_units() {
        assert_eq!(to_ns(1_500_000, 6), 1_500_000_000);
        assert_eq!(to_ns(1_500_000_000, 9), 1_500_000_000);
        assert_eq!(to_ns(15, 1), 1_500_000_000);
        assert_eq!(to_ns(3 << 20, 0x80 | 20), 3_000_000_000);
    }
}
