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

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use outflow_core::capfile::{
    Direction, InterfaceInfo, InterfaceStats, LinkType, Packet, PcapngWriter, SectionInfo,
};
use outflow_core::{Config, Engine, Profile};
use pcap::{Active, Capture, Precision};

use crate::inventory::{PodRef, PodSource};
use crate::{clock, netlink};

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

/// The interfaces to capture, looked up in the node's namespace (the calling thread's): a pod's
/// node-side interfaces, optionally only `interface` of them, or the node's `interface` alone.
/// Pods come from `pods` (the Kubernetes API, an inventory file, or named network namespaces);
/// a pod's interfaces are found by how the node routes its addresses, and come with the pod's Ethernet address,
/// which tells directions apart.
pub fn targets(
    pod: Option<&str>,
    interface: Option<&str>,
    node: &str,
    pods: &PodSource,
) -> Result<Vec<Target>, String> {
    let links = netlink::links().map_err(|e| format!("listing interfaces: {e}"))?;
    let Some(pod) = pod else {
        let i = interface.ok_or("say what to capture: a pod or an interface")?;
        if !links.iter().any(|l| l.name == i) {
            return Err(format!("no interface {i} on node {node}"));
        }
        return Ok(vec![Target {
            label: format!("{i}@{node}"),
            ifname: i.to_string(),
            pod_side: false,
            peer_mac: None,
        }]);
    };
    let (namespace, name) = pod
        .split_once('/')
        .ok_or_else(|| format!("pod {pod:?}: expected NAMESPACE/NAME"))?;
    let mut inventory = pods.inventory().map_err(|e| format!("{e:#}"))?;
    inventory.refresh(&links);
    let mut ifaces = inventory
        .interfaces_of(&PodRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
        .map_err(|e| format!("{e} (node {node})"))?;
    if let Some(i) = interface {
        ifaces.retain(|n| n.node_side == i);
        if ifaces.is_empty() {
            return Err(format!("pod {pod} has no interface {i} on node {node}"));
        }
    }
    Ok(ifaces
        .into_iter()
        .map(|i| Target {
            label: format!("{pod}@{node}"),
            ifname: i.node_side,
            pod_side: true,
            peer_mac: i.pod_mac,
        })
        .collect())
}

/// The section header's comment: where the capture ran and what it kept.
pub fn describe(cluster: Option<&str>, node: &str, pod: Option<&str>, filter: &str) -> String {
    let mut parts = Vec::new();
    if let Some(c) = cluster {
        parts.push(format!("cluster {c}"));
    }
    parts.push(format!("node {node}"));
    parts.push(pod.map_or_else(|| "interface".to_string(), |p| format!("pod {p}")));
    parts.push(format!("filter {filter:?}"));
    parts.join("; ")
}

/// Compiles the filter the way the capture will, so a bad one fails before anything starts.
pub fn check_filter(filter: &str) -> Result<(), CaptureError> {
    let dead = Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| CaptureError::Filter {
        filter: filter.to_string(),
        message: e.to_string(),
    })?;
    dead.compile(filter, true)
        .map(|_| ())
        .map_err(|e| CaptureError::Filter {
            filter: filter.to_string(),
            message: e.to_string(),
        })
}

struct Handle {
    interface: u32,
    ifname: String,
    /// How directions are told: fixed by the capture's own direction, or by the source address.
    direction: Sense,
    capture: Capture<Active>,
}

#[derive(Clone, Copy)]
enum Sense {
    Fixed(Direction),
    /// (the peer's address, the direction of what it sends, of the rest)
    ByMac([u8; 6], Direction, Direction),
}

impl Sense {
    fn of(self, frame: &[u8]) -> Direction {
        match self {
            Sense::Fixed(d) => d,
            Sense::ByMac(mac, sent, received) => {
                if frame.get(6..12) == Some(&mac[..]) {
                    sent
                } else {
                    received
                }
            }
        }
    }
}

fn open(
    t: &Target,
    dir: pcap::Direction,
    snaplen: u32,
    filter: &str,
) -> Result<Capture<Active>, CaptureError> {
    let err = |e: pcap::Error| CaptureError::Open {
        ifname: t.ifname.clone(),
        message: e.to_string(),
    };
    let mut cap = Capture::from_device(t.ifname.as_str())
        .map_err(err)?
        .promisc(false)
        // Blocks handed over when full or after 200 ms, as tcpdump -w does: immediate mode
        // would wake the capture for every packet and cost a busy interface a third of its rate.
        .immediate_mode(false)
        .timeout(BLOCK_TIMEOUT_MS)
        .snaplen(snaplen as i32)
        .buffer_size(4 << 20)
        .precision(Precision::Nano)
        .open()
        .map_err(err)?;
    cap.direction(dir).map_err(err)?;
    // Always a kernel filter, even an empty one: it compiles to "keep snaplen bytes", and that
    // is what makes the kernel copy only those into the ring. Without it every 64 KiB TCP
    // segment fills a quarter of a ring block, and the ring overflows under load.
    cap.filter(filter, true).map_err(|e| CaptureError::Filter {
        filter: filter.to_string(),
        message: e.to_string(),
    })?;
    cap.setnonblock().map_err(err)
}

/// Runs a capture into `out` until a limit, `stop`, or a vanished interface ends it. The file is
/// valid whenever it ends; kernel drops go into its statistics blocks.
pub fn run<W: Write>(
    req: &Request,
    limits: &Limits,
    out: W,
    stop: &AtomicBool,
) -> Result<Summary, CaptureError> {
    if req.targets.is_empty() {
        return Err(CaptureError::NoTarget);
    }
    check_filter(&req.filter)?;
    let snaplen = match req.snaplen {
        None => DEFAULT_SNAPLEN,
        Some(0) => limits.max_snaplen,
        Some(s) => s.min(limits.max_snaplen),
    };
    let max_packets = req.max_packets.unwrap_or(u64::MAX).min(limits.max_packets);
    let max_bytes = req.max_bytes.unwrap_or(u64::MAX).min(limits.max_bytes);
    let duration = req
        .duration
        .unwrap_or(limits.max_duration)
        .min(limits.max_duration);

    let mut handles = Vec::new();
    for (id, t) in req.targets.iter().enumerate() {
        let (received, sent) = if t.pod_side {
            (Direction::Outbound, Direction::Inbound)
        } else {
            (Direction::Inbound, Direction::Outbound)
        };
        let senses = match t.peer_mac {
            // What the peer sends, the host's end receives.
            Some(mac) => vec![(pcap::Direction::InOut, Sense::ByMac(mac, received, sent))],
            None => vec![
                (pcap::Direction::In, Sense::Fixed(received)),
                (pcap::Direction::Out, Sense::Fixed(sent)),
            ],
        };
        for (dir, direction) in senses {
            handles.push(Handle {
                interface: id as u32,
                ifname: t.ifname.clone(),
                direction,
                capture: open(t, dir, snaplen, &req.filter)?,
            });
        }
    }
    let os = nix::sys::utsname::uname()
        .map(|u| format!("Linux {}", u.release().to_string_lossy()))
        .ok();
    let mut w = PcapngWriter::new(
        out,
        &SectionInfo {
            application: format!("outflow {}", env!("CARGO_PKG_VERSION")),
            os,
            comment: Some(req.comment.clone()),
        },
    )?;
    for t in &req.targets {
        w.add_interface(&InterfaceInfo {
            name: t.label.clone(),
            description: Some(format!("{} on {}", t.ifname, req.node)),
            link: LinkType::Ethernet,
            snaplen,
            filter: Some(req.filter.clone()),
        })?;
    }
    w.flush()?;

    let start_ns = clock::realtime_ns();
    let started = Instant::now();
    let mut engine = Engine::with_config(
        &Profile::default(),
        Config {
            notes: req.annotate,
            count_traffic: false,
            // Bounded, since it sees a capture that may run for minutes.
            max_flows: 65_536,
            max_groups: 16_384,
            max_dns_records: 16_384,
            ..Config::default()
        },
    );
    // The engine sees only what can decide something: DNS (for the name-resolution blocks
    // and its comments) and, when annotating, the control packets the live agent's datapath
    // keeps (SYN, FIN, RST, ICMP errors). Data segments skip it, which keeps a busy capture's
    // cost near libpcap's own.
    let selector = if req.annotate {
        crate::datapath::pcap::CONTROL_FILTER
    } else {
        "port 53"
    };
    let notable = Capture::dead(pcap::Linktype::ETHERNET)
        .and_then(|d| d.compile(selector, true))
        .map_err(|e| CaptureError::Selector {
            selector,
            message: e.to_string(),
        })?;
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut written_by = vec![0u64; req.targets.len()];
    let mut names_written = 0u64;
    // Asked to stop or out of time: one last read once libpcap has handed over its partly
    // filled block (its timeout), so the last packets before the stop are in the file.
    let mut closing: Option<Ended> = None;
    let ended = loop {
        let left = duration.saturating_sub(started.elapsed());
        if closing.is_none() {
            if stop.load(Ordering::Relaxed) {
                closing = Some(Ended::Stopped);
            } else if left.is_zero() {
                closing = Some(Ended::Duration);
            }
            if closing.is_some() {
                std::thread::sleep(Duration::from_millis(BLOCK_TIMEOUT_MS as u64 + 50));
            }
        }
        if closing.is_none() {
            let mut fds: Vec<PollFd> = handles
                .iter()
                .map(|h| PollFd::new(h.capture.as_fd(), PollFlags::POLLIN))
                .collect();
            let wait = left.min(Duration::from_millis(100)).as_millis() as u16;
            let _ = poll(&mut fds, PollTimeout::from(wait));
        }
        let mut gone = None;
        let mut limit = None;
        // Written straight from libpcap's buffer: no copy. Each interface's packets come in
        // time order; several interfaces interleave by batch, which readers take.
        for h in handles.iter_mut() {
            let (interface, sense) = (h.interface, h.direction);
            let read = h.capture.dispatch(Some(4096), |p| {
                if limit.is_some() {
                    return;
                }
                if packets >= max_packets {
                    limit = Some(Ended::Count);
                    return;
                }
                if bytes + p.data.len() as u64 > max_bytes {
                    limit = Some(Ended::Bytes);
                    return;
                }
                let ts = &p.header.ts;
                let ts_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_usec as u64;
                let direction = sense.of(p.data);
                let mut note = None;
                if notable.filter(p.data) {
                    engine.observe(&Packet {
                        ts_ns,
                        iface: interface,
                        link: LinkType::Ethernet,
                        direction,
                        orig_len: p.header.len,
                        data: p.data,
                    });
                    note = engine.take_note().map(|n| n.to_string());
                    // Before the packets that follow: a one-pass reader (tshark, a live
                    // Wireshark) applies names only to what comes after them. Only when the
                    // answer taught a new name; the writer skips the pairs it wrote before.
                    if engine.dns_names_learned() > names_written {
                        names_written = engine.dns_names_learned();
                        let names = engine
                            .dns_names()
                            .flat_map(|(ip, names)| names.iter().map(move |n| (ip, n.as_str())));
                        if w.write_names(names).is_err() {
                            limit = Some(Ended::ReaderGone);
                            return;
                        }
                    }
                }
                let comment = note.as_deref();
                if w.write_packet(interface, ts_ns, direction, p.data, p.header.len, comment)
                    .is_err()
                {
                    limit = Some(Ended::ReaderGone);
                    return;
                }
                packets += 1;
                bytes += p.data.len() as u64;
                written_by[interface as usize] += 1;
            });
            if let Err(e) = read {
                tracing::warn!(ifname = %h.ifname, error = %e, "capture interface gone");
                gone = Some(h.ifname.clone());
            }
        }
        if limit == Some(Ended::ReaderGone) {
            break Ended::ReaderGone;
        }
        // Each batch reaches the reader (a pipe to Wireshark) as it is read.
        let written = w.flush();
        if written.is_err() {
            break Ended::ReaderGone;
        }
        if packets >= max_packets {
            break Ended::Count;
        }
        if let Some(l) = limit {
            break l;
        }
        if let Some(i) = gone {
            break Ended::InterfaceGone(i);
        }
        if let Some(c) = closing {
            break c;
        }
    };
    let end_ns = clock::realtime_ns();
    let mut kernel_drops = 0;
    let mut per_iface: Vec<InterfaceStats> = vec![InterfaceStats::default(); req.targets.len()];
    for h in handles.iter_mut() {
        if let Ok(s) = h.capture.stats() {
            let st = &mut per_iface[h.interface as usize];
            st.accepted += s.received as u64;
            // The capture's own losses; the interface's drops happen to every reader alike.
            st.os_dropped += s.dropped as u64;
            st.if_dropped += s.if_dropped as u64;
            kernel_drops += s.dropped as u64;
        }
    }
    if ended != Ended::ReaderGone {
        for (id, st) in per_iface.iter_mut().enumerate() {
            st.start_ns = start_ns;
            st.end_ns = end_ns;
            st.delivered = written_by[id];
            let _ = w.write_stats(id as u32, st);
        }
        let _ = w.flush();
    }
    Ok(Summary {
        packets,
        bytes,
        kernel_drops,
        ended,
    })
}
