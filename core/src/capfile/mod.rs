//! Capture files: pcap and pcapng read from any `io::Read`.
//!
//! The formats themselves are parsed by the `pcap-file` crate; this module drives its slice
//! parsers over a refillable buffer so that a file, a pipe (`tcpdump -w - | outflow analyze -`) or
//! several files merged by time all read the same way, without copying packets. It also applies
//! what `pcap-file` leaves to its callers: per-interface timestamp resolution and offsets, link
//! types, and EPB direction flags. A truncated last record (a capture that was killed) ends the
//! stream with `truncated_tail` set instead of an error, so everything before it is kept.

mod merge;
mod reader;
mod step;
mod writer;

pub use merge::MergedReader;
pub use reader::CaptureReader;
pub use step::IfaceInfo;
pub use writer::{InterfaceInfo, InterfaceStats, PcapngWriter, SectionInfo, WriteError};

/// A link-layer type as numbered by tcpdump.org's LINKTYPE_ registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101), or DLT_RAW (12/14): the packet starts with an IPv4 or IPv6 header.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113), `tcpdump -i any` before libpcap 1.10.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), `tcpdump -i any` since libpcap 1.10.
    LinuxSll2,
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family.
    Null,
    /// Anything else, by number; its packets are counted as undecodable.
    Other(u32),
}

impl LinkType {
    /// Maps a LINKTYPE_ number.
    pub fn from_number(n: u32) -> LinkType {
        match n {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The LINKTYPE_ number.
    pub fn number(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(n) => n,
        }
    }

    /// Whether outflow can decode packets of this link type.
    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Other(_))
    }
}

/// Which way a packet went, as seen from the capturing interface's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Not recorded in the capture.
    #[default]
    Unknown,
    /// Received by the interface.
    Inbound,
    /// Sent by the interface.
    Outbound,
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The interface it was captured on: the pcapng interface id (0 for pcap), made unique across
    /// merged files.
    pub iface: u32,
    /// How `data` starts.
    pub link: LinkType,
    /// Direction flag, when the capture recorded one.
    pub direction: Direction,
    /// Length on the wire; `data` may be shorter (snaplen).
    pub orig_len: u32,
    /// The captured bytes, from the link-layer header on.
    pub data: &'a [u8],
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CapfileError {
    /// Reading the underlying file or pipe failed.
    #[error("read failed")]
    Io(#[from] std::io::Error),
    /// The input is empty.
    #[error("the input is empty; expected a pcap or pcapng capture")]
    Empty,
    /// The first bytes are not a pcap or pcapng magic number.
    #[error(
        "not a pcap or pcapng capture (starts with {magic}); write captures with tcpdump -w, \
         dumpcap or Wireshark"
    )]
    NotACapture {
        /// The first bytes, in hex.
        magic: String,
    },
    /// The file is a capture but its structure is broken at some point.
    #[error("corrupt capture at byte {offset}: {reason}; the packets before it were analysed")]
    Corrupt {
        /// Byte offset of the bad record.
        offset: u64,
        /// What the parser rejected.
        reason: String,
    },
    /// A record claims to be larger than any sane capture record.
    #[error("record at byte {offset} claims {len} bytes; the file is corrupt")]
    Oversized {
        /// Byte offset of the record.
        offset: u64,
        /// The claimed length.
        len: u64,
    },
}
