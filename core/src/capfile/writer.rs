//! Writing pcapng for people who open it in Wireshark: the file says what captured it, on which
//! node, which interface belonged to which pod, which way each packet went, which names DNS gave
//! its addresses, and how many packets the capture lost.
//!
//! The blocks are written by `pcap-file`; this module decides what goes in them. The section is
//! big-endian because `pcap-file` writes the 64-bit timestamps of statistics blocks as one
//! integer, which is the format's high-then-low word order only in big-endian sections. Every
//! interface declares nanosecond timestamps (`if_tsresol` 9), the unit `pcap-file` writes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
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

/// Writing failed (the destination, not the data: every packet is representable).
#[derive(Debug, thiserror::Error)]
#[error("writing pcapng: {0}")]
pub struct WriteError(String);

fn err(e: impl std::fmt::Display) -> WriteError {
    WriteError(e.to_string())
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
        let mut options = Vec::new();
        // epb_flags bits 0-1: 01 inbound, 10 outbound.
        match direction {
            Direction::Inbound => options.push(EnhancedPacketOption::Flags(1)),
            Direction::Outbound => options.push(EnhancedPacketOption::Flags(2)),
            Direction::Unknown => {}
        }
        if let Some(c) = comment {
            options.push(EnhancedPacketOption::Comment(Cow::Borrowed(c)));
        }
        let block = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: std::time::Duration::from_nanos(ts_ns),
            original_len: orig_len.max(data.len() as u32),
            data: Cow::Borrowed(data),
            options,
        };
        self.inner.write_pcapng_block(block).map_err(err)?;
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
        self.inner.get_mut().flush().map_err(err)
    }

    /// The destination, flushed.
    pub fn into_inner(mut self) -> Result<W, WriteError> {
        self.flush()?;
        Ok(self.inner.into_inner())
    }
}
