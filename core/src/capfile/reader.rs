//! Reads pcap or pcapng from any `io::Read`, one borrowed packet at a time.
//!
//! The reader owns one growable buffer, hands `pcap-file`'s slice parsers the unread part of it,
//! and refills it when they ask for more bytes. Packets are returned as views into the buffer
//! (`packet()` after `advance()`), so reading costs one copy from the kernel and no allocation per
//! packet.

use std::borrow::Cow;
use std::io::Read;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{PcapError, TsResolution};

use super::{CapfileError, Direction, LinkType, Packet};

const INITIAL_BUFFER: usize = 1 << 20;
/// No sane capture record is larger; a claim beyond this is corruption, not a reason to allocate.
const MAX_BUFFER: usize = 64 << 20;

/// A capture read from `R`.
pub struct CaptureReader<R> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Stream offset of `buf[0]`, for error messages.
    base_offset: u64,
    format: Format,
    current: Option<Current>,
    truncated_tail: bool,
    iface_base: u32,
    packets: u64,
    /// `new` already moved to the first packet (to learn a pcapng's interfaces); the next
    /// `advance` returns it.
    primed: bool,
}

enum Format {
    Pcap {
        parser: PcapParser,
        link: LinkType,
        nanos: bool,
    },
    PcapNg {
        parser: PcapNgParser,
        ifaces: Vec<IfaceInfo>,
    },
}

/// What a pcapng interface description says about its packets.
#[derive(Debug, Clone)]
pub struct IfaceInfo {
    /// Link type of the interface's packets.
    pub link: LinkType,
    /// Interface name (`if_name`), when recorded.
    pub name: Option<String>,
    /// `if_tsresol`: bit 7 clear means 10^-n seconds, set means 2^-n.
    tsresol: u8,
    /// `if_tsoffset`, seconds.
    tsoffset_s: u64,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    ts_ns: u64,
    iface: u32,
    link: LinkType,
    direction: Direction,
    orig_len: u32,
    data_start: usize,
    data_len: usize,
}

impl<R: Read> CaptureReader<R> {
    /// Opens a capture, reading enough to recognise the format.
    pub fn new(input: R) -> Result<CaptureReader<R>, CapfileError> {
        let mut reader = CaptureReader {
            input,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            base_offset: 0,
            format: Format::Pcap {
                parser: PcapParser::new(&PCAP_PLACEHOLDER)
                    .expect("the placeholder header is a valid pcap header")
                    .1,
                link: LinkType::Ethernet,
                nanos: false,
            },
            current: None,
            truncated_tail: false,
            iface_base: 0,
            packets: 0,
            primed: false,
        };
        while reader.end < 4 && !reader.eof {
            reader.fill()?;
        }
        if reader.end == 0 {
            return Err(CapfileError::Empty);
        }
        let magic = &reader.buf[..reader.end.min(4)];
        let is_pcap = matches!(
            magic,
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
        );
        let is_pcapng = magic == [0x0a, 0x0d, 0x0d, 0x0a];
        if !is_pcap && !is_pcapng {
            let hex: String = magic.iter().map(|b| format!("{b:02x}")).collect();
            let hint = if magic.starts_with(&[0x1f, 0x8b]) {
                " (gzip: decompress it first)"
            } else {
                ""
            };
            return Err(CapfileError::NotACapture {
                magic: format!("0x{hex}{hint}"),
            });
        }
        loop {
            let avail = &reader.buf[reader.start..reader.end];
            let parsed = if is_pcap {
                PcapParser::new(avail).map(|(rest, parser)| {
                    let header = parser.header();
                    let link = LinkType::from_number(u32::from(header.datalink));
                    let nanos = header.ts_resolution == TsResolution::NanoSecond;
                    (
                        avail.len() - rest.len(),
                        Format::Pcap {
                            parser,
                            link,
                            nanos,
                        },
                    )
                })
            } else {
                PcapNgParser::new(avail).map(|(rest, parser)| {
                    (
                        avail.len() - rest.len(),
                        Format::PcapNg {
                            parser,
                            ifaces: Vec::new(),
                        },
                    )
                })
            };
            match parsed {
                Ok((used, format)) => {
                    reader.start += used;
                    reader.format = format;
                    if is_pcapng {
                        // Interface descriptions precede the packets: read up to the first packet
                        // so link types and interface count are known before anything is fed.
                        reader.advance()?;
                        reader.primed = true;
                    }
                    return Ok(reader);
                }
                Err(PcapError::IncompleteBuffer) if !reader.eof => reader.fill()?,
                Err(PcapError::IncompleteBuffer) => {
                    return Err(CapfileError::Corrupt {
                        offset: 0,
                        reason: "the file header is cut short".into(),
                    })
                }
                Err(e) => {
                    return Err(CapfileError::Corrupt {
                        offset: 0,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// Makes interface ids of this reader start at `base`, so merged files do not collide.
    pub fn set_iface_base(&mut self, base: u32) {
        if let Some(c) = &mut self.current {
            c.iface = c.iface - self.iface_base + base;
        }
        self.iface_base = base;
    }

    /// Moves to the next packet; `Ok(false)` at the end of the capture.
    pub fn advance(&mut self) -> Result<bool, CapfileError> {
        if std::mem::take(&mut self.primed) {
            return Ok(self.current.is_some());
        }
        self.current = None;
        loop {
            let avail = &self.buf[self.start..self.end];
            let step = match &mut self.format {
                Format::Pcap {
                    parser,
                    link,
                    nanos,
                } => pcap_step(parser, *link, *nanos, avail),
                Format::PcapNg { parser, ifaces } => pcapng_step(parser, ifaces, avail),
            };
            match step {
                Ok((used, found)) => {
                    if let Some((mut cur, data_ptr)) = found {
                        cur.data_start = self.start + (data_ptr - avail.as_ptr() as usize);
                        cur.iface += self.iface_base;
                        self.current = Some(cur);
                        self.start += used;
                        self.packets += 1;
                        return Ok(true);
                    }
                    self.start += used;
                }
                Err(PcapError::IncompleteBuffer) => {
                    if self.eof {
                        self.truncated_tail = self.start < self.end;
                        return Ok(false);
                    }
                    self.fill()?;
                }
                Err(e) => {
                    return Err(CapfileError::Corrupt {
                        offset: self.base_offset + self.start as u64,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// The packet `advance` moved to.
    pub fn packet(&self) -> Option<Packet<'_>> {
        self.current.map(|c| Packet {
            ts_ns: c.ts_ns,
            iface: c.iface,
            link: c.link,
            direction: c.direction,
            orig_len: c.orig_len,
            data: &self.buf[c.data_start..c.data_start + c.data_len],
        })
    }

    /// Whether the capture ended in the middle of a record (the capturing process was killed).
    pub fn truncated_tail(&self) -> bool {
        self.truncated_tail
    }

    /// Packets read so far.
    pub fn packets_read(&self) -> u64 {
        self.packets
    }

    /// Link types of the capture's interfaces (one for pcap).
    pub fn link_types(&self) -> Vec<LinkType> {
        match &self.format {
            Format::Pcap { link, .. } => vec![*link],
            Format::PcapNg { ifaces, .. } => ifaces.iter().map(|i| i.link).collect(),
        }
    }

    /// Interface descriptions seen so far (pcapng only).
    pub fn interfaces(&self) -> &[IfaceInfo] {
        match &self.format {
            Format::Pcap { .. } => &[],
            Format::PcapNg { ifaces, .. } => ifaces,
        }
    }

    /// Reads more input into the buffer, compacting or growing it first.
    fn fill(&mut self) -> Result<(), CapfileError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base_offset += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_BUFFER {
                return Err(CapfileError::Oversized {
                    offset: self.base_offset,
                    len: self.buf.len() as u64,
                });
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A packet found by a parse step and the address of its data in the parsed slice.
type Found = Option<(Current, usize)>;

fn pcap_step(
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

fn pcapng_step(
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
                    InterfaceDescriptionOption::IfTsOffset(o) => info.tsoffset_s = *o,
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
                    ts_ns: to_ns(raw_ts, info.tsresol)
                        .saturating_add(info.tsoffset_s.saturating_mul(1_000_000_000)),
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

/// A valid pcap global header, used only to construct the reader before the real one is read.
const PCAP_PLACEHOLDER: [u8; 24] = [
    0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_converts_decimal_and_binary_units() {
        assert_eq!(to_ns(1_500_000, 6), 1_500_000_000);
        assert_eq!(to_ns(1_500_000_000, 9), 1_500_000_000);
        assert_eq!(to_ns(15, 1), 1_500_000_000);
        assert_eq!(to_ns(3 << 20, 0x80 | 20), 3_000_000_000);
    }
}
