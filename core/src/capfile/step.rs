//! One parse step over the buffered input: the next pcap record or pcapng block, with the
//! timestamp, interface and direction conventions applied that `pcap-file` leaves to callers.

use std::borrow::Cow;

use byteorder_slice::{BigEndian, LittleEndian};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, SECTION_HEADER_BLOCK, SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::{Block, RawBlock};
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

/// Where a pcapng stream is: the byte order of its current section and its interfaces so far.
#[derive(Debug, Clone)]
pub(super) struct NgSection {
    pub(super) big_endian: bool,
    pub(super) ifaces: Vec<IfaceInfo>,
}

impl NgSection {
    /// Reads the section header at the start of `avail`: the bytes it takes and the section.
    pub(super) fn open(avail: &[u8]) -> Result<(usize, NgSection), PcapError> {
        if !avail.starts_with(&SECTION_HEADER_BLOCK.to_be_bytes()) {
            return Err(PcapError::InvalidField(
                "PcapNg: SectionHeader invalid or missing",
            ));
        }
        let mut section = NgSection {
            big_endian: true,
            ifaces: Vec::new(),
        };
        let (used, _) = pcapng_step(&mut section, avail)?;
        Ok((used, section))
    }
}

/// One pcapng block: framed and its fixed fields decoded by `pcap-file`.
///
/// Options are where valid files differ most (a section header with a vendor's option, an
/// `if_tzone` of four bytes that `pcap-file` wants as one, a list without `opt_endofopt`), and
/// `pcap-file` refuses a whole block for one option it does not like. So options never reach it:
/// the few outflow uses (`if_name`, `if_tsresol`, `if_tsoffset`, `epb_flags`) are read by
/// [`options`], which skips what it does not know or cannot parse; this also spares the packet
/// path an allocation per packet. Blocks outflow does not use are not decoded at all.
pub(super) fn pcapng_step(
    section: &mut NgSection,
    avail: &[u8],
) -> Result<(usize, Found), PcapError> {
    let (rest, raw) = if section.big_endian {
        RawBlock::from_slice::<BigEndian>(avail)?
    } else {
        RawBlock::from_slice::<LittleEndian>(avail)?
    };
    let used = avail.len() - rest.len();
    let found = match raw.type_ {
        SECTION_HEADER_BLOCK => {
            // `RawBlock` reads a section header in its own byte order; its magic tells which.
            section.big_endian = match raw.body.get(..4) {
                Some([0x1a, 0x2b, 0x3c, 0x4d]) => true,
                Some([0x4d, 0x3c, 0x2b, 0x1a]) => false,
                _ => {
                    return Err(PcapError::InvalidField(
                        "SectionHeaderBlock: invalid byte-order magic",
                    ))
                }
            };
            section.ifaces.clear();
            None
        }
        INTERFACE_DESCRIPTION_BLOCK => {
            let info = interface(&raw, section.big_endian)?;
            section.ifaces.push(info);
            None
        }
        ENHANCED_PACKET_BLOCK => Some(enhanced_packet(&raw, section)?),
        SIMPLE_PACKET_BLOCK => Some(simple_packet(&raw, section)?),
        _ => None,
    };
    Ok((used, found))
}

/// Decodes the first `fixed` bytes of `raw`'s body, its fields before the options, with
/// `pcap-file`; the options are left to [`options`].
fn decode<'a>(raw: &RawBlock<'a>, big_endian: bool, fixed: usize) -> Result<Block<'a>, PcapError> {
    let body = borrowed(&raw.body);
    let block = RawBlock {
        type_: raw.type_,
        initial_len: raw.initial_len,
        body: Cow::Borrowed(&body[..fixed.min(body.len())]),
        trailer_len: raw.trailer_len,
    };
    if big_endian {
        block.try_into_block::<BigEndian>()
    } else {
        block.try_into_block::<LittleEndian>()
    }
}

/// Length of an interface description without its options: link type, reserved, snap length.
const IDB_FIXED: usize = 8;
/// Length of an enhanced packet block's fields before its data.
const EPB_FIXED: usize = 20;

fn interface(raw: &RawBlock<'_>, big_endian: bool) -> Result<IfaceInfo, PcapError> {
    let Block::InterfaceDescription(idb) = decode(raw, big_endian, IDB_FIXED)? else {
        return Err(PcapError::InvalidField(
            "interface description block expected",
        ));
    };
    let mut info = IfaceInfo {
        link: LinkType::from_number(u32::from(idb.linktype)),
        name: None,
        tsresol: 6,
        tsoffset_s: 0,
    };
    let body = borrowed(&raw.body);
    for (code, value) in options(body.get(IDB_FIXED..).unwrap_or_default(), big_endian) {
        match (code, value.len()) {
            (2, _) => info.name = std::str::from_utf8(value).ok().map(str::to_owned),
            (9, 1) => info.tsresol = value[0],
            (14, 8) => info.tsoffset_s = read_u64(value, big_endian) as i64,
            _ => {}
        }
    }
    Ok(info)
}

fn enhanced_packet(raw: &RawBlock<'_>, section: &NgSection) -> Result<(Current, usize), PcapError> {
    let body = borrowed(&raw.body);
    let captured = body
        .get(12..16)
        .map_or(0, |b| read_u32(b, section.big_endian) as usize);
    let fixed = EPB_FIXED.saturating_add(captured.saturating_add(3) & !3);
    let Block::EnhancedPacket(epb) = decode(raw, section.big_endian, fixed)? else {
        return Err(PcapError::InvalidField("enhanced packet block expected"));
    };
    let info = section
        .ifaces
        .get(epb.interface_id as usize)
        .ok_or(PcapError::InvalidInterfaceId(epb.interface_id))?;
    // pcap-file hands the raw timestamp over as nanoseconds; it is in if_tsresol units.
    let raw_ts = epb.timestamp.as_nanos() as u64;
    let mut direction = Direction::Unknown;
    for (code, value) in options(body.get(fixed..).unwrap_or_default(), section.big_endian) {
        if code == 2 && value.len() == 4 {
            direction = match read_u32(value, section.big_endian) & 0b11 {
                1 => Direction::Inbound,
                2 => Direction::Outbound,
                _ => Direction::Unknown,
            };
        }
    }
    let data = borrowed(&epb.data);
    Ok((
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

fn simple_packet(raw: &RawBlock<'_>, section: &NgSection) -> Result<(Current, usize), PcapError> {
    let Block::SimplePacket(spb) = decode(raw, section.big_endian, usize::MAX)? else {
        return Err(PcapError::InvalidField("simple packet block expected"));
    };
    let info = section
        .ifaces
        .first()
        .ok_or(PcapError::InvalidInterfaceId(0))?;
    let data = borrowed(&spb.data);
    Ok((
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

/// The options of a block, as (code, value), up to `opt_endofopt` or the first one that does not
/// fit: a malformed tail ends the list instead of the capture.
fn options(mut bytes: &[u8], big_endian: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = read_u16(bytes.get(0..2)?, big_endian);
        let len = read_u16(bytes.get(2..4)?, big_endian) as usize;
        if code == 0 {
            return None;
        }
        let value = bytes.get(4..4 + len)?;
        bytes = bytes.get(4 + ((len + 3) & !3)..).unwrap_or_default();
        Some((code, value))
    })
}

fn read_u16(b: &[u8], big_endian: bool) -> u16 {
    let b = [b[0], b[1]];
    if big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn read_u32(b: &[u8], big_endian: bool) -> u32 {
    let b = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

fn read_u64(b: &[u8], big_endian: bool) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    if big_endian {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

/// `pcap-file` borrows from the slice it parses; it only owns data it was given owned.
fn borrowed<'a>(data: &Cow<'a, [u8]>) -> &'a [u8] {
    match data {
        Cow::Borrowed(d) => d,
        Cow::Owned(_) => unreachable_owned(),
    }
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
