//! `outflow agent --controller URL`: the node half, as the DaemonSet runs it. Window reports go
//! to a remote controller through a bounded retry queue.

use std::path::PathBuf;

use anyhow::Context;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use outflow_agent::capture::Limits;
use outflow_agent::capture_tasks::{self, TaskConfig};
use outflow_agent::cluster_profile::ClusterProfileSlot;
use outflow_agent::datapath::{DatapathChoice, TcMode};
use outflow_agent::http::Token;
use outflow_agent::inventory::PodSource;
use outflow_agent::ship::{ShipConfig, Shipper};
use outflow_agent::{AgentConfig, Readiness};
use tracing::info;

use outflow_core::units::{parse_duration, parse_size};

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
    /// This node's name, as Kubernetes knows it (default: the --node-netns name, else the host
    /// name). A DaemonSet sets NODE_NAME from the downward API (spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// Map pod IPs to namespace/name from this file instead of named network namespaces.
    #[arg(long, conflicts_with = "kube")]
    pub inventory: Option<PathBuf>,
    /// Take this node's pods from the Kubernetes API (the default inside a pod, with its service
    /// account); outside one, from KUBECONFIG or ~/.kube/config, as kubectl does.
    #[arg(long)]
    pub kube: bool,
    /// The kubeconfig to reach the API with (implies --kube).
    #[arg(long, value_name = "FILE", conflicts_with = "inventory")]
    pub kubeconfig: Option<PathBuf>,
    /// How often the agent reports a window [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Where packets come from [default: auto: eBPF, else libpcap].
    #[arg(long, value_enum)]
    pub datapath: Option<DatapathArg>,
    /// How TC programs attach [default: auto: tcx on Linux 6.6+, else netlink].
    #[arg(long, value_enum)]
    pub tc_mode: Option<TcModeArg>,
    /// Pod interface name prefixes (repeat; default veth, azv, lxc, cali).
    #[arg(long = "iface-prefix")]
    pub iface_prefixes: Vec<String>,
    /// Flow map entries in the kernel (memory: ~100 bytes each) [default: 65536].
    #[arg(long)]
    pub flow_entries: Option<u32>,
    /// Ring buffer for control packets and DNS: a power of two, at least 4KiB [default: 4MiB].
    #[arg(long, visible_alias = "ring-bytes", value_parser = parse_size)]
    pub ring_size: Option<u64>,
    /// The cluster's name, written into capture files.
    #[arg(long, env = "OUTFLOW_CLUSTER")]
    pub cluster: Option<String>,
    /// Captures this node runs at once; more are refused [default: 4].
    #[arg(long)]
    pub max_captures: Option<usize>,
    /// Longest capture, whatever a request asks [default: 5m].
    #[arg(long, value_parser = parse_duration)]
    pub capture_max_duration: Option<Duration>,
    /// Most packets in one capture, whatever a request asks [default: 1000000].
    #[arg(long)]
    pub capture_max_packets: Option<u64>,
    /// Most captured bytes in one capture, whatever a request asks [default: 256MiB].
    #[arg(long, value_parser = parse_size)]
    pub capture_max_size: Option<u64>,
    /// The same in MiB (the older spelling).
    #[arg(long, hide = true, conflicts_with = "capture_max_size")]
    pub capture_max_mib: Option<u64>,
}

/// `--datapath`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DatapathArg {
    /// eBPF, else libpcap.
    Auto,
    /// eBPF only.
    Ebpf,
    /// libpcap only.
    Pcap,
}

/// `--tc-mode`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TcModeArg {
    /// TCX where the kernel has it, else netlink.
    Auto,
    /// TCX links (Linux 6.6+).
    Tcx,
    /// A clsact qdisc and netlink filters.
    Netlink,
}

/// Most captures one node runs at once unless `--max-captures` says otherwise.
const MAX_CAPTURES: usize = 4;

impl AgentArgs {
    /// The agent's configuration.
    pub fn config(&self) -> anyhow::Result<AgentConfig> {
        let name = super::node_name(self.node.as_deref(), self.node_netns.as_deref());
        let mut cfg = AgentConfig::new(&name);
        cfg.node_netns = self.node_netns.clone();
        if let Some(interval) = self.interval {
            cfg.interval = interval.max(Duration::from_millis(200));
        }
        if let Some(entries) = self.flow_entries {
            cfg.flow_entries = entries.max(1024);
        }
        if let Some(size) = self.ring_size {
            cfg.ring_bytes = u32::try_from(size)
                .ok()
                .filter(|b| *b >= 4096 && b.is_power_of_two())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--ring-size {}: the ring buffer must be a power of two from 4KiB to \
                         2GiB (e.g. 4MiB)",
                        outflow_core::units::format_size(size)
                    )
                })?;
        }
        cfg.tc_mode = match self.tc_mode {
            None | Some(TcModeArg::Auto) => TcMode::for_this_kernel(),
            Some(TcModeArg::Tcx) => TcMode::Tcx,
            Some(TcModeArg::Netlink) => TcMode::Netlink,
        };
        cfg.datapath = match self.datapath {
            None | Some(DatapathArg::Auto) => DatapathChoice::Auto,
            Some(DatapathArg::Ebpf) => DatapathChoice::Ebpf,
            Some(DatapathArg::Pcap) => DatapathChoice::Pcap,
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
        pods: PodSource,
        controller: String,
        token: Token,
    ) -> TaskConfig {
        TaskConfig {
            controller,
            token,
            node: cfg.node.clone(),
            node_netns: cfg.node_netns.clone(),
            pods,
            cluster: self.cluster.clone(),
            limits: {
                let d = Limits::default();
                Limits {
                    max_duration: self.capture_max_duration.unwrap_or(d.max_duration),
                    max_packets: self.capture_max_packets.unwrap_or(d.max_packets),
                    max_bytes: self
                        .capture_max_size
                        .or(self.capture_max_mib.map(|m| m.saturating_mul(1 << 20)))
                        .unwrap_or(d.max_bytes),
                    ..d
                }
            },
            max_concurrent: self.max_captures.unwrap_or(MAX_CAPTURES),
        }
    }

    /// Where pods are known from: the Kubernetes API with --kube or inside a pod, the file when
    /// given, else named network namespaces. The API's watch starts here, for the node `cfg`
    /// names.
    pub fn pod_source(&self, cfg: &AgentConfig) -> anyhow::Result<PodSource> {
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        if self.kube || self.kubeconfig.is_some() || (in_pod && self.inventory.is_none()) {
            let access = match &self.kubeconfig {
                Some(f) => outflow_kube::ClusterAccess::Kubeconfig(f.clone()),
                None => outflow_kube::ClusterAccess::Infer,
            };
            let watch = outflow_kube::PodWatch::start(access, &cfg.node)?;
            return Ok(PodSource::Kube(std::sync::Arc::new(watch)));
        }
        Ok(match &self.inventory {
            Some(f) => PodSource::File(f.clone()),
            None => PodSource::Netns(self.node_netns.clone()),
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
    /// Serve the kubelet's probes here: `/healthz` (the process runs) and `/readyz` (the
    /// datapath watches every pod interface) [default: none].
    #[arg(long, value_name = "ADDR")]
    probe_listen: Option<std::net::SocketAddr>,
}

/// Asks the controller what the cluster tells of its network, for the agent's profile.
pub fn cluster_profile(
    controller: String,
    token: Token,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Arc<ClusterProfileSlot>> {
    let slot = Arc::new(ClusterProfileSlot::default());
    outflow_agent::cluster_profile::spawn_fetcher(controller, token, slot.clone(), stop.clone())
        .context("starting the cluster profile thread")?;
    Ok(slot)
}

/// Runs until SIGINT or SIGTERM, then flushes a last window and gives the controller a few
/// seconds to take what is queued.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = load_profile(args.agent.profile.as_ref())?;
    let mut cfg = args.agent.config()?;
    let pods = args.agent.pod_source(&cfg)?;
    let inventory = pods.inventory()?;
    let token = agent_token(args.token_file.as_deref())?;
    let controller = super::controller_url(&args.controller);
    let stop = Arc::new(AtomicBool::new(false));
    if matches!(pods, PodSource::Kube(_)) {
        cfg.cluster_profile = Some(cluster_profile(controller.clone(), token.clone(), &stop)?);
    }
    let shipper = Shipper::start(ShipConfig {
        controller: controller.clone(),
        token: token.clone(),
        capacity: args.queue,
        timeout: Duration::from_secs(10),
    })?;
    super::stop_on_signal(stop.clone())?;
    let ready = Arc::new(Readiness::default());
    if let Some(addr) = args.probe_listen {
        serve_probes(addr, ready.clone())?;
    }
    capture_tasks::spawn(
        args.agent.captures(&cfg, pods, controller.clone(), token),
        stop.clone(),
    )?;
    info!(controller = %controller, "agent starting");
    let result = outflow_agent::run(cfg, &profile, inventory, ready, stop.clone(), |r| {
        shipper.send(r)
    });
    let stats = shipper.close(Duration::from_secs(5));
    info!(
        delivered = stats.delivered,
        dropped = stats.dropped,
        undelivered = stats.queued,
        "agent stopped"
    );
    result.map(|()| ExitCode::SUCCESS)
}

/// The token the agent sends: a `--token-file` is read again at every request, so one that is
/// not there yet (the Secret the controller makes on its first start, mounted as optional) is
/// picked up once it is; one there now must be usable.
fn agent_token(file: Option<&std::path::Path>) -> anyhow::Result<Token> {
    match file {
        Some(f) if !f.exists() => {
            tracing::warn!(
                file = %f.display(),
                "the token file is not there yet: reports go without a token until it appears"
            );
            Ok(Token::File(f.to_path_buf()))
        }
        Some(f) => super::read_token(Some(f)).map(|_| Token::File(f.to_path_buf())),
        None => Ok(super::read_token(None)?.map_or(Token::None, Token::Fixed)),
    }
}

/// Serves `/healthz` and `/readyz` on `addr` from a thread of their own, bound before the agent
/// enters the node namespace so the kubelet reaches them where it probes.
fn serve_probes(addr: std::net::SocketAddr, ready: Arc<Readiness>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("--probe-listen {addr}: cannot listen there"))?;
    listener.set_nonblocking(true)?;
    let check: outflow_controller::probes::ReadyCheck = Arc::new(move || ready.check().map(|_| ()));
    std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        axum::serve(listener, outflow_controller::probes::router(Some(check)))
                            .await?;
                        anyhow::Ok(())
                    })
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "the probe listener stopped");
            }
        })?;
    info!(listen = %addr, "probes listening (/healthz, /readyz)");
    Ok(())
}
