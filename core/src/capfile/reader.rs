//! Reads pcap or pcapng from any `io::Read`, one borrowed packet at a time.
//!
//! The reader owns one growable buffer, hands `pcap-file`'s slice parsers the unread part of it,
//! and refills it when they ask for more bytes. Packets are returned as views into the buffer
//! (`packet()` after `advance()`), so reading costs one copy from the kernel and no allocation per
//! packet.

use std::io::Read;

use pcap_file::pcap::PcapParser;
use pcap_file::{PcapError, TsResolution};

use super::step::{pcap_step, pcapng_step, Current, IfaceInfo, NgSection};
use super::{CapfileError, LinkType, Packet};

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
    PcapNg(NgSection),
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
                NgSection::open(avail).map(|(used, section)| (used, Format::PcapNg(section)))
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
    ///
    /// The common step, a pcap record that is whole in the buffer, is inlined into the caller's
    /// loop; refills, pcapng blocks, errors and the end take the general path.
    #[inline]
    pub fn advance(&mut self) -> Result<bool, CapfileError> {
        if let (
            Format::Pcap {
                parser,
                link,
                nanos,
            },
            false,
        ) = (&self.format, self.primed)
        {
            let avail = &self.buf[self.start..self.end];
            if let Ok((used, Some((cur, data_ptr)))) = pcap_step(parser, *link, *nanos, avail) {
                self.move_to(used, cur, data_ptr);
                return Ok(true);
            }
        }
        self.advance_general()
    }

    /// Makes the packet a parse step found (`used` bytes, its data at address `data_ptr` in the
    /// buffer) the current one.
    #[inline(always)]
    fn move_to(&mut self, used: usize, mut cur: Current, data_ptr: usize) {
        cur.data_start = data_ptr - self.buf.as_ptr() as usize;
        cur.iface += self.iface_base;
        self.current = Some(cur);
        self.start += used;
        self.packets += 1;
    }

    /// [`CaptureReader::advance`] for every case.
    #[inline(never)]
    fn advance_general(&mut self) -> Result<bool, CapfileError> {
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
                Format::PcapNg(section) => pcapng_step(section, avail),
            };
            match step {
                Ok((used, found)) => {
                    if let Some((cur, data_ptr)) = found {
                        self.move_to(used, cur, data_ptr);
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
    #[inline]
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
            Format::PcapNg(section) => section.ifaces.iter().map(|i| i.link).collect(),
        }
    }

    /// Interface descriptions seen so far (pcapng only).
    pub fn interfaces(&self) -> &[IfaceInfo] {
        match &self.format {
            Format::Pcap { .. } => &[],
            Format::PcapNg(section) => &section.ifaces,
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

/// A valid pcap global header, used only to construct the reader before the real one is read.
const PCAP_PLACEHOLDER: [u8; 24] = [
    0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
];
