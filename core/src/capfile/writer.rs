//! Writing pcapng for people who open it in Wireshark: the file says what captured it, on which
//! node, which interface belonged to which pod, which way each packet went, which names DNS gave
//! its addresses, and how many packets the capture lost.
//!
//! The blocks are written by `pcap-file`, except the packets' own, laid out here on the hot path;
//! this module decides what goes in them. The section is
//! big-endian because `pcap-file` writes the 64-bit timestamps of statistics blocks as one
//! integer, which is the format's high-then-low word order only in big-endian sections. Every
//! interface declares nanosecond timestamps (`if_tsresol` 9), the unit `pcap-file` writes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::name_resolution::{
    Ipv4Record, Ipv6Record, NameResolutionBlock, Record,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};

use super::{Direction, LinkType};

/// What the section header says about the capture.
#[derive(Debug, Clone, Default)]
pub struct SectionInfo {
    /// The writing tool and version (`shb_userappl`), e.g. `outflow 0.1.0`.
    pub application: String,
    /// The capturing host's OS (`shb_os`).
    pub os: Option<String>,
    /// Free text: cluster, node, target, filter (`opt_comment`).
    pub comment: Option<String>,
}

/// One captured interface.
#[derive(Debug, Clone)]
pub struct InterfaceInfo {
    /// `if_name`: what Wireshark shows as the interface, e.g. `default/web-1@node-1`.
    pub name: String,
    /// `if_description`: the host-side device, e.g. `veth3a4f on node-1`.
    pub description: Option<String>,
    /// The link type of its packets.
    pub link: LinkType,
    /// Bytes kept of each packet (0: all).
    pub snaplen: u32,
    /// The capture filter, in pcap-filter syntax (`if_filter`).
    pub filter: Option<String>,
}

/// How many packets an interface's capture received and lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// When the capture started and ended, ns since the Unix epoch.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Packets that passed the filter (`isb_filteraccept`).
    pub accepted: u64,
    /// Packets the kernel dropped for want of buffer (`isb_osdrop`).
    pub os_dropped: u64,
    /// Packets the interface itself dropped, captured or not (`isb_ifdrop`).
    pub if_dropped: u64,
    /// Packets written to the file (`isb_usrdeliv`).
    pub delivered: u64,
}

/// A pcapng file being written.
pub struct PcapngWriter<W: Write> {
    inner: PcapNgWriter<W>,
    interfaces: u32,
    /// Address–name pairs already in a name-resolution block.
    named: HashSet<(IpAddr, String)>,
}

/// Writing failed: mostly the destination (a full disk, a closed pipe), since every packet is
/// representable. The cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The destination refused the bytes.
    #[error("writing pcapng")]
    Io(#[from] std::io::Error),
    /// `pcap-file` could not lay out a block.
    #[error("encoding a pcapng block")]
    Encode(#[source] pcap_file::PcapError),
    /// A packet named an interface the file never declared (a caller's mistake).
    #[error("packet for interface {0}, which this file has not declared")]
    NoInterface(u32),
}

fn err(e: pcap_file::PcapError) -> WriteError {
    match e {
        pcap_file::PcapError::IoError(io) => WriteError::Io(io),
        other => WriteError::Encode(other),
    }
}

impl<W: Write> PcapngWriter<W> {
    /// Starts a file: writes the section header.
    pub fn new(out: W, info: &SectionInfo) -> Result<Self, WriteError> {
        let mut options = vec![SectionHeaderOption::UserApplication(Cow::Owned(
            info.application.clone(),
        ))];
        if let Some(os) = &info.os {
            options.push(SectionHeaderOption::OS(Cow::Owned(os.clone())));
        }
        if let Some(c) = &info.comment {
            options.push(SectionHeaderOption::Comment(Cow::Owned(c.clone())));
        }
        let section = SectionHeaderBlock {
            endianness: Endianness::Big,
            options,
            ..SectionHeaderBlock::default()
        };
        Ok(PcapngWriter {
            inner: PcapNgWriter::with_section_header(out, section).map_err(err)?,
            interfaces: 0,
            named: HashSet::new(),
        })
    }

    /// Declares an interface; returns the id its packets are written with.
    pub fn add_interface(&mut self, i: &InterfaceInfo) -> Result<u32, WriteError> {
        let mut options = vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(i.name.clone())),
            InterfaceDescriptionOption::IfTsResol(9),
        ];
        if let Some(d) = &i.description {
            options.push(InterfaceDescriptionOption::IfDescription(Cow::Owned(
                d.clone(),
            )));
        }
        if let Some(f) = i.filter.as_ref().filter(|f| !f.is_empty()) {
            // The first byte says which filter language: 0 is libpcap's.
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(f.as_bytes());
            options.push(InterfaceDescriptionOption::IfFilter(Cow::Owned(bytes)));
        }
        let block = InterfaceDescriptionBlock {
            linktype: DataLink::from(i.link.number()),
            snaplen: i.snaplen,
            options,
        };
        self.inner.write_pcapng_block(block).map_err(err)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes a packet. `direction` is as seen from the interface's host (for a pod's host-side
    /// veth: inbound is what the pod sent); `comment` shows in Wireshark's packet details.
    pub fn write_packet(
        &mut self,
        interface: u32,
        ts_ns: u64,
        direction: Direction,
        data: &[u8],
        orig_len: u32,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        if interface >= self.interfaces {
            return Err(WriteError::NoInterface(interface));
        }
        // Laid out here rather than by `pcap-file`, which measures each block by writing it
        // once to nowhere and allocates its options: on the capture's path that was a third of
        // its CPU per packet. The layout is the format's (section 4.3), in the section's
        // big-endian order; tshark, capinfos, editcap and outflow's reader check it in tests.
        let pad = |n: usize| (4 - n % 4) % 4;
        // epb_flags bits 0-1: 01 inbound, 10 outbound.
        let flags = match direction {
            Direction::Inbound => Some(1u32),
            Direction::Outbound => Some(2),
            Direction::Unknown => None,
        };
        let comment = comment
            .map(str::as_bytes)
            .filter(|c| c.len() <= u16::MAX as usize);
        let mut options_len =
            flags.map_or(0, |_| 8) + comment.map_or(0, |c| 4 + c.len() + pad(c.len()));
        if options_len > 0 {
            options_len += 4; // opt_endofopt
        }
        let captured = data.len();
        let block_len = (32 + captured + pad(captured) + options_len) as u32;
        let mut head = [0u8; 28];
        for (i, v) in [
            6, // enhanced packet block
            block_len,
            interface,
            (ts_ns >> 32) as u32,
            ts_ns as u32,
            captured as u32,
            orig_len.max(captured as u32),
        ]
        .into_iter()
        .enumerate()
        {
            head[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        let out = self.inner.get_mut();
        out.write_all(&head)?;
        out.write_all(&data[..captured])?;
        out.write_all(&[0u8; 3][..pad(captured)])?;
        if let Some(f) = flags {
            out.write_all(&[0, 2, 0, 4])?;
            out.write_all(&f.to_be_bytes())?;
        }
        if let Some(c) = comment {
            out.write_all(&[0, 1])?;
            out.write_all(&(c.len() as u16).to_be_bytes())?;
            out.write_all(c)?;
            out.write_all(&[0u8; 3][..pad(c.len())])?;
        }
        if options_len > 0 {
            out.write_all(&[0u8; 4])?;
        }
        out.write_all(&block_len.to_be_bytes())?;
        Ok(())
    }

    /// Writes a name-resolution block with the pairs not written before (none: no block).
    pub fn write_names<'n>(
        &mut self,
        names: impl IntoIterator<Item = (IpAddr, &'n str)>,
    ) -> Result<(), WriteError> {
        let mut records = Vec::new();
        for (ip, name) in names {
            if name.is_empty() || !self.named.insert((ip, name.to_string())) {
                continue;
            }
            let names = vec![Cow::Owned(name.to_string())];
            records.push(match ip {
                IpAddr::V4(v4) => Record::Ipv4(Ipv4Record {
                    ip_addr: Cow::Owned(v4.octets().to_vec()),
                    names,
                }),
                IpAddr::V6(v6) => Record::Ipv6(Ipv6Record {
                    ip_addr: Cow::Owned(v6.octets().to_vec()),
                    names,
                }),
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        let block = NameResolutionBlock {
            records,
            options: vec![],
        };
        self.inner.write_pcapng_block(block).map_err(err)?;
        Ok(())
    }

    /// Writes an interface's statistics (at the end of its capture).
    pub fn write_stats(&mut self, interface: u32, s: &InterfaceStats) -> Result<(), WriteError> {
        let block = InterfaceStatisticsBlock {
            interface_id: interface,
            timestamp: s.end_ns,
            options: vec![
                InterfaceStatisticsOption::IsbStartTime(s.start_ns),
                InterfaceStatisticsOption::IsbEndTime(s.end_ns),
                InterfaceStatisticsOption::IsbFilterAccept(s.accepted),
                InterfaceStatisticsOption::IsbOsDrop(s.os_dropped),
                InterfaceStatisticsOption::IsbIfDrop(s.if_dropped),
                InterfaceStatisticsOption::IsbUsrDeliv(s.delivered),
            ],
        };
        self.inner.write_pcapng_block(block).map_err(err)?;
        Ok(())
    }

    /// Flushes what was written to the destination.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        Ok(self.inner.get_mut().flush()?)
    }

    /// The destination, flushed.
    pub fn into_inner(mut self) -> Result<W, WriteError> {
        self.flush()?;
        Ok(self.inner.into_inner())
    }
}
