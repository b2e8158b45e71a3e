//! Capture on demand: libpcap on a pod's (or the node's) interfaces, with a tcpdump filter,
//! written as pcapng while it runs.
//!
//! A single device's Ethernet frames do not say which way they went: with the pod's address
//! known, a frame from it is what the pod sent and any other what it received; without it, the
//! device gets two captures, one per direction (`pcap_setdirection`, which makes the kernel copy
//! every packet twice, so it is the fallback). The agent's limits cap whatever a request asks, the filter is
//! compiled before anything opens, and a capture whose interface vanishes ends with what it
//! got, in a valid file. Names from the DNS answers it sees go into name-resolution blocks as
//! they appear, so a streamed capture shows names too.

//!
//! The request and its limits are here; which interfaces a request means (`targets`), opening a
//! device (`device`) and the capture loop (`run`) have their own files.

mod device;
mod run;
mod targets;

pub use run::run;
pub use targets::{check_filter, describe, targets};

use std::time::Duration;

/// What the agent allows, whatever a request asks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest capture.
    pub max_duration: Duration,
    /// Most packets.
    pub max_packets: u64,
    /// Most bytes written (captured bytes).
    pub max_bytes: u64,
    /// Largest snapshot length.
    pub max_snaplen: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_duration: Duration::from_secs(300),
            max_packets: 1_000_000,
            max_bytes: 256 << 20,
            max_snaplen: WHOLE_PACKETS,
        }
    }
}

/// How long libpcap keeps a partly filled block before handing it over.
const BLOCK_TIMEOUT_MS: i32 = 200;

/// What `-s 0` keeps: tcpdump's largest snapshot length, whole packets on any link.
pub const WHOLE_PACKETS: u32 = 262_144;

/// Headers and a bit: TCP with options, a DNS message, the start of an HTTP request or a TLS
/// ClientHello.
pub const DEFAULT_SNAPLEN: u32 = 512;

/// One interface to capture on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The device, in the namespace the capture runs in.
    pub ifname: String,
    /// What the file calls it (`if_name`), e.g. `default/web-1@node-1`.
    pub label: String,
    /// The device is a pod's host-side end: directions are flipped to be the pod's (what the
    /// host's end receives, the pod sent).
    pub pod_side: bool,
    /// The Ethernet address of the pod at the other end: frames from it are what the pod
    /// sent, the rest what it received. Unknown: two captures, one per direction.
    pub peer_mac: Option<[u8; 6]>,
}

/// A capture to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// Where.
    pub targets: Vec<Target>,
    /// pcap-filter expression ("" for everything).
    pub filter: String,
    /// Bytes kept per packet: none for [`DEFAULT_SNAPLEN`], 0 for whole packets (tcpdump's
    /// `-s 0`).
    pub snaplen: Option<u32>,
    /// Stop after this many packets.
    pub max_packets: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many bytes.
    pub max_bytes: Option<u64>,
    /// The node's name, for the file's header.
    pub node: String,
    /// Free text for the section header (cluster, pod, request).
    pub comment: String,
    /// Comment packets with what the engine concluded from them ("connection refused", "SYN
    /// unanswered for 3.0 s", "DNS nxdomain for …"). Control packets then go through the engine
    /// too, not only DNS.
    pub annotate: bool,
}

/// Why a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The packet count was reached.
    Count,
    /// The byte limit was reached.
    Bytes,
    /// The duration passed.
    Duration,
    /// Asked to stop (Ctrl-C, DELETE).
    Stopped,
    /// An interface went away (the pod was deleted).
    InterfaceGone(String),
    /// The reader went away (a closed pipe).
    ReaderGone,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Count => write!(f, "packet count reached"),
            Ended::Bytes => write!(f, "byte limit reached"),
            Ended::Duration => write!(f, "duration reached"),
            Ended::Stopped => write!(f, "stopped"),
            Ended::InterfaceGone(i) => write!(f, "interface {i} went away"),
            Ended::ReaderGone => write!(f, "the reader went away"),
        }
    }
}

/// What a capture got.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Packets written.
    pub packets: u64,
    /// Captured bytes written.
    pub bytes: u64,
    /// Packets the kernel dropped (buffer full).
    pub kernel_drops: u64,
    /// Why it ended.
    pub ended: Ended,
}

/// A capture could not start or write.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The filter does not compile.
    #[error("bad filter {filter:?}: {message}")]
    Filter {
        /// The expression.
        filter: String,
        /// libpcap's message.
        message: String,
    },
    /// Nothing to capture on.
    #[error("no interface to capture on")]
    NoTarget,
    /// An interface could not be opened.
    #[error("cannot capture on {ifname}: {message}")]
    Open {
        /// The device.
        ifname: String,
        /// libpcap's message.
        message: String,
    },
    /// The output failed before the capture could end cleanly (its cause: a full disk, a
    /// closed connection).
    #[error("the capture's output failed")]
    Write(#[from] outflow_core::capfile::WriteError),
    /// libpcap refused the engine's own packet selector: a fault of this program, not of the
    /// person's filter.
    #[error("compiling the engine's selector {selector:?}: {message}")]
    Selector {
        /// The expression.
        selector: &'static str,
        /// libpcap's message.
        message: String,
    },
}
