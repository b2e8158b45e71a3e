//! Where packets come from: the eBPF programs (`ebpf`), and the raw-event decoding shared by
//! every datapath (`decode`).

pub mod decode;
pub mod ebpf;

/// How TC programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    /// TCX links (Linux 6.6+): no qdisc, released with the agent.
    Tcx,
    /// A clsact qdisc and netlink filters: what Linux 5.15 offers.
    Netlink,
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
