//! `outflow up`: the agent and an embedded controller in one process on this machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use outflow_agent::datapath::TcMode;
use outflow_agent::inventory::{FileInventory, Inventory, NetnsInventory};
use outflow_agent::AgentConfig;
use outflow_controller::{app, AppState, Store};
use tracing::{error, info};

use super::analyze::load_profile;

/// Flags of `outflow up`.
#[derive(clap::Args)]
pub struct Args {
    /// Network profile (YAML, DESIGN.md §4.1).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Where the API listens. Loopback needs no token.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Run the datapath inside this named network namespace, which plays the node.
    #[arg(long)]
    node_netns: Option<String>,
    /// This node's name (default: the --node-netns name, else the host name).
    #[arg(long)]
    node: Option<String>,
    /// Map pod IPs to namespace/name from this file instead of named network namespaces.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// How often the agent reports a window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// The SQLite store.
    #[arg(long, default_value = "/var/lib/outflow/outflow.db")]
    db: PathBuf,
    /// How long records are kept.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// How TC programs attach: tcx (Linux 6.6+), netlink (clsact qdisc), or auto.
    #[arg(long, default_value = "auto")]
    tc_mode: String,
    /// Pod interface name prefixes (repeat; default veth, azv, lxc, cali).
    #[arg(long = "iface-prefix")]
    iface_prefixes: Vec<String>,
    /// Flow map entries in the kernel (memory: ~100 bytes each).
    #[arg(long, default_value_t = 65_536)]
    flow_entries: u32,
}

/// Builds the agent's configuration from the flags.
pub fn agent_config(
    node: Option<String>,
    node_netns: Option<String>,
    interval: Duration,
    tc_mode: &str,
    iface_prefixes: Vec<String>,
    flow_entries: u32,
) -> anyhow::Result<AgentConfig> {
    let name = node
        .or_else(|| node_netns.clone())
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_else(|| "node".to_string());
    let mut cfg = AgentConfig::new(&name);
    cfg.node_netns = node_netns;
    cfg.interval = interval.max(Duration::from_millis(200));
    cfg.flow_entries = flow_entries.max(1024);
    cfg.tc_mode = match tc_mode {
        "auto" => TcMode::for_this_kernel(),
        "tcx" => TcMode::Tcx,
        "netlink" => TcMode::Netlink,
        other => anyhow::bail!("--tc-mode {other:?}: expected auto, tcx or netlink"),
    };
    if !iface_prefixes.is_empty() {
        cfg.iface_prefixes = iface_prefixes;
    }
    Ok(cfg)
}

/// Builds the inventory: the file when given, else named network namespaces.
pub fn inventory(
    file: Option<&PathBuf>,
    node_netns: Option<String>,
) -> anyhow::Result<Box<dyn Inventory>> {
    Ok(match file {
        Some(f) => Box::new(FileInventory::load(f)?),
        None => Box::new(NetnsInventory::new(node_netns)),
    })
}

/// Runs until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = load_profile(args.profile.as_ref())?;
    let cfg = agent_config(
        args.node,
        args.node_netns.clone(),
        args.interval,
        &args.tc_mode,
        args.iface_prefixes,
        args.flow_entries,
    )?;
    let inventory = inventory(args.inventory.as_ref(), args.node_netns)?;
    if let Some(dir) = args.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the store directory {}", dir.display()))?;
    }
    let store = Store::open(&args.db, args.retention.as_nanos() as u64)?;
    let state = AppState::new(store);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Bound before the agent enters the node namespace: the API stays on this host.
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        info!(listen = %args.listen, "API listening");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let agent_stop = stop.clone();
        std::thread::Builder::new()
            .name("datapath".into())
            .spawn(move || {
                let result = outflow_agent::run(cfg, &profile, inventory, agent_stop, |r| {
                    let _ = tx.blocking_send(r);
                });
                let _ = done_tx.send(result);
            })?;
        let ingest_state = state.clone();
        let ingest = tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                if let Err(e) = ingest_state.ingest(report).await {
                    error!(error = %e, "storing a report failed");
                }
            }
        });
        let mut agent_done = done_rx;
        let shutdown_stop = stop.clone();
        let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
            super::shutdown_signal().await;
            shutdown_stop.store(true, Ordering::Relaxed);
        });
        let result = tokio::select! {
            r = server => { r.context("serving the API")?; agent_done.await.unwrap_or(Ok(())) }
            r = &mut agent_done => r.unwrap_or(Ok(())),
        };
        stop.store(true, Ordering::Relaxed);
        let _ = ingest.await;
        result.map(|()| ExitCode::SUCCESS)
    })
}
