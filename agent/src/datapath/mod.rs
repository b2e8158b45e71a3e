//! Where packets come from: the eBPF programs (`ebpf`) or libpcap (`pcap`), behind one trait
//! the agent's loop drives, and the ring-buffer record decoding (`decode`).

pub mod decode;
pub mod ebpf;
pub mod pcap;

use std::os::fd::BorrowedFd;

use outflow_core::capfile::Packet;
use outflow_core::engine::Traffic;
use outflow_core::wire::DatapathStats;

/// A source of pod packets: attaches to interfaces, hands control packets and DNS to the
/// engine, and counts what it saw and lost.
pub trait Datapath {
    /// `ebpf` or `pcap`.
    fn kind(&self) -> &'static str;
    /// Starts watching an interface. Attaching twice is a no-op; an interface that vanishes
    /// meanwhile is an error for it alone, and nothing of it stays attached.
    fn attach(&mut self, ifname: &str, ifindex: u32) -> Result<(), AttachError>;
    /// Stops watching an interface (gone or no longer wanted).
    fn detach(&mut self, ifname: &str);
    /// Interfaces watched now, with their index.
    fn attached(&self) -> Vec<(String, u32)>;
    /// Descriptors that turn readable when packets wait.
    fn wait_fds(&self) -> Vec<BorrowedFd<'_>>;
    /// Hands every waiting packet to `f`.
    fn read_packets(&mut self, f: &mut dyn FnMut(&Packet<'_>));
    /// Traffic counted since the last call, one entry per flow direction (empty where the
    /// datapath does not count). Entries idle since `idle_before_ns` (monotonic) are forgotten.
    /// Packets that arrive during a long read go to `on_packet` meanwhile.
    fn read_traffic(
        &mut self,
        idle_before_ns: u64,
        on_packet: &mut dyn FnMut(&Packet<'_>),
    ) -> Vec<Traffic>;
    /// Counters since the last call.
    fn take_stats(&mut self) -> DatapathStats;
    /// Stops watching every interface.
    fn detach_all(&mut self) {
        for (name, _) in self.attached() {
            self.detach(&name);
        }
    }
}

/// Which datapath the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathChoice {
    /// eBPF, or libpcap when eBPF cannot load.
    Auto,
    /// eBPF or fail.
    Ebpf,
    /// libpcap.
    Pcap,
}

/// How TC programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    /// TCX links (Linux 6.6+): no qdisc, released with the agent.
    Tcx,
    /// A clsact qdisc and netlink filters: what Linux 5.15 offers.
    Netlink,
}

impl std::fmt::Display for TcMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcMode::Tcx => "tcx",
            TcMode::Netlink => "netlink",
        })
    }
}

impl TcMode {
    /// TCX where the kernel has it, netlink otherwise.
    pub fn for_this_kernel() -> TcMode {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut parts = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) >= (6, 6) {
            TcMode::Tcx
        } else {
            TcMode::Netlink
        }
    }
}

/// The datapath could not start.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Loading the programs or maps failed.
    #[error("cannot load the eBPF programs: {0}; the agent needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON) and Linux 5.15 or later")]
    Load(String),
}

/// Attaching to one interface failed; the others go on.
#[derive(Debug, thiserror::Error)]
#[error("cannot attach to {ifname}: {message}")]
pub struct AttachError {
    /// The interface.
    pub ifname: String,
    /// What went wrong.
    pub message: String,
}
