//! `outflow agent --controller URL`: the node half, as the DaemonSet runs it. Window reports go
//! to a remote controller through a bounded retry queue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use outflow_agent::capture::Limits;
use outflow_agent::capture_tasks::{self, TaskConfig};
use outflow_agent::datapath::{DatapathChoice, TcMode};
use outflow_agent::inventory::{FileInventory, Inventory, NetnsInventory};
use outflow_agent::ship::{ShipConfig, Shipper};
use outflow_agent::AgentConfig;
use tracing::info;

use super::analyze::load_profile;

/// What the agent watches, shared by `outflow agent` and `outflow up`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// Network profile (YAML, DESIGN.md §4.1).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Run the datapath inside this named network namespace, which plays the node.
    #[arg(long)]
    pub node_netns: Option<String>,
    /// This node's name (default: the --node-netns name, else the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// Map pod IPs to namespace/name from this file instead of named network namespaces.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// How often the agent reports a window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Where packets come from: ebpf, pcap (libpcap), or auto (eBPF, else libpcap).
    #[arg(long, default_value = "auto")]
    pub datapath: String,
    /// How TC programs attach: tcx (Linux 6.6+), netlink (clsact qdisc), or auto.
    #[arg(long, default_value = "auto")]
    pub tc_mode: String,
    /// Pod interface name prefixes (repeat; default veth, azv, lxc, cali).
    #[arg(long = "iface-prefix")]
    pub iface_prefixes: Vec<String>,
    /// Flow map entries in the kernel (memory: ~100 bytes each).
    #[arg(long, default_value_t = 65_536)]
    pub flow_entries: u32,
    /// Ring buffer for control packets and DNS (a power of two, at least 4096 bytes).
    #[arg(long, default_value_t = 4 << 20)]
    pub ring_bytes: u32,
    /// The cluster's name, written into capture files.
    #[arg(long, env = "OUTFLOW_CLUSTER")]
    pub cluster: Option<String>,
    /// Captures this node runs at once; more are refused.
    #[arg(long, default_value_t = 4)]
    pub max_captures: usize,
    /// Longest capture, whatever a request asks.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub capture_max_duration: Duration,
    /// Most packets in one capture, whatever a request asks.
    #[arg(long, default_value_t = 1_000_000)]
    pub capture_max_packets: u64,
    /// Most captured bytes in one capture, in MiB, whatever a request asks.
    #[arg(long, default_value_t = 256)]
    pub capture_max_mib: u64,
}

impl AgentArgs {
    /// The agent's configuration.
    pub fn config(&self) -> anyhow::Result<AgentConfig> {
        let name = super::node_name(self.node.as_deref(), self.node_netns.as_deref());
        let mut cfg = AgentConfig::new(&name);
        cfg.node_netns = self.node_netns.clone();
        cfg.interval = self.interval.max(Duration::from_millis(200));
        cfg.flow_entries = self.flow_entries.max(1024);
        if self.ring_bytes < 4096 || !self.ring_bytes.is_power_of_two() {
            anyhow::bail!(
                "--ring-bytes {}: the ring buffer must be a power of two of at least 4096 bytes (e.g. 4194304)",
                self.ring_bytes
            );
        }
        cfg.ring_bytes = self.ring_bytes;
        cfg.tc_mode = match self.tc_mode.as_str() {
            "auto" => TcMode::for_this_kernel(),
            "tcx" => TcMode::Tcx,
            "netlink" => TcMode::Netlink,
            other => anyhow::bail!("--tc-mode {other:?}: expected auto, tcx or netlink"),
        };
        cfg.datapath = match self.datapath.as_str() {
            "auto" => DatapathChoice::Auto,
            "ebpf" => DatapathChoice::Ebpf,
            "pcap" => DatapathChoice::Pcap,
            other => anyhow::bail!("--datapath {other:?}: expected auto, ebpf or pcap"),
        };
        if !self.iface_prefixes.is_empty() {
            cfg.iface_prefixes = self.iface_prefixes.clone();
        }
        Ok(cfg)
    }

    /// How this node's agent runs the captures the controller hands it.
    pub fn captures(
        &self,
        cfg: &AgentConfig,
        controller: String,
        token: Option<String>,
    ) -> TaskConfig {
        TaskConfig {
            controller,
            token,
            node: cfg.node.clone(),
            node_netns: cfg.node_netns.clone(),
            cluster: self.cluster.clone(),
            limits: Limits {
                max_duration: self.capture_max_duration,
                max_packets: self.capture_max_packets,
                max_bytes: self.capture_max_mib.saturating_mul(1 << 20),
                ..Limits::default()
            },
            max_concurrent: self.max_captures,
        }
    }

    /// The inventory: the file when given, else named network namespaces.
    pub fn inventory(&self) -> anyhow::Result<Box<dyn Inventory>> {
        Ok(match &self.inventory {
            Some(f) => Box::new(FileInventory::load(f)?),
            None => Box::new(NetnsInventory::new(self.node_netns.clone())),
        })
    }
}

/// Flags of `outflow agent`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// The controller's URL.
    #[arg(long, env = "OUTFLOW_CONTROLLER")]
    controller: String,
    /// A file holding the controller's token (else OUTFLOW_TOKEN, else none).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Reports kept while the controller is unreachable (one per interval; the oldest goes first).
    #[arg(long, default_value_t = 360)]
    queue: usize,
}

/// Runs until SIGINT or SIGTERM, then flushes a last window and gives the controller a few
/// seconds to take what is queued.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = load_profile(args.agent.profile.as_ref())?;
    let cfg = args.agent.config()?;
    let inventory = args.agent.inventory()?;
    let token = super::read_token(args.token_file.as_deref())?;
    let controller = super::controller_url(&args.controller);
    let shipper = Shipper::start(ShipConfig {
        controller: controller.clone(),
        token: token.clone(),
        capacity: args.queue,
        timeout: Duration::from_secs(10),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(stop.clone())?;
    capture_tasks::spawn(
        args.agent.captures(&cfg, controller.clone(), token),
        stop.clone(),
    )?;
    info!(controller = %controller, "agent starting");
    let result = outflow_agent::run(cfg, &profile, inventory, stop.clone(), |r| shipper.send(r));
    let stats = shipper.close(Duration::from_secs(5));
    info!(
        delivered = stats.delivered,
        dropped = stats.dropped,
        undelivered = stats.queued,
        "agent stopped"
    );
    result.map(|()| ExitCode::SUCCESS)
}
