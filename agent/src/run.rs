//! The agent's loop: one thread that owns the datapath, the engine and the interface list.
//!
//! It waits on the ring buffer and on link notifications together, feeds every event to the
//! engine, and once per interval reads the flow map, drains the engine into a node report and
//! hands it to the sink. Stopping (SIGTERM, Ctrl-C) flushes a last report and detaches.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use outflow_core::wire::NodeReport;
use outflow_core::{Config, Engine, Profile};
use tracing::{info, info_span, warn};

use crate::clock::{monotonic_ns, realtime_ns};
use crate::datapath::ebpf::EbpfDatapath;
use crate::datapath::pcap::PcapDatapath;
use crate::datapath::{Datapath, DatapathChoice, TcMode};
use crate::inventory::Inventory;
use crate::netlink::{self, Link, LinkEvents};
use crate::netns;
use crate::scope::node_report;

/// What the agent watches and how often it reports.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub node: String,
    /// Run the datapath inside this named namespace (a node played by a namespace).
    pub node_netns: Option<String>,
    /// Interface name prefixes of pod interfaces.
    pub iface_prefixes: Vec<String>,
    /// Report interval.
    pub interval: Duration,
    /// Flow map entries.
    pub flow_entries: u32,
    /// Ring buffer bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// How TC programs attach.
    pub tc_mode: TcMode,
    /// eBPF, libpcap, or eBPF with libpcap as the fallback.
    pub datapath: DatapathChoice,
}

impl AgentConfig {
    /// Defaults for a node called `node`.
    pub fn new(node: &str) -> AgentConfig {
        AgentConfig {
            node: node.to_string(),
            node_netns: None,
            iface_prefixes: ["veth", "azv", "lxc", "cali"].map(String::from).to_vec(),
            interval: Duration::from_secs(10),
            flow_entries: 65_536,
            ring_bytes: 4 << 20,
            tc_mode: TcMode::for_this_kernel(),
            datapath: DatapathChoice::Auto,
        }
    }
}

/// Opens the datapath the configuration asks for; with `Auto`, libpcap when eBPF cannot load,
/// and the reason goes into every report.
pub fn open_datapath(cfg: &AgentConfig) -> anyhow::Result<Box<dyn Datapath>> {
    let ebpf = || EbpfDatapath::load(cfg.flow_entries, cfg.ring_bytes, cfg.tc_mode);
    Ok(match cfg.datapath {
        DatapathChoice::Ebpf => Box::new(ebpf()?),
        DatapathChoice::Pcap => Box::new(PcapDatapath::new("--datapath pcap".to_string())),
        DatapathChoice::Auto => match ebpf() {
            Ok(dp) => Box::new(dp),
            Err(e) => {
                warn!(error = %e, "eBPF unavailable: falling back to libpcap");
                Box::new(PcapDatapath::new(e.to_string()))
            }
        },
    })
}

/// Runs the agent on this thread until `stop` is set; each window's report goes to `sink`.
pub fn run(
    cfg: AgentConfig,
    profile: &Profile,
    mut inventory: Box<dyn Inventory>,
    stop: Arc<AtomicBool>,
    mut sink: impl FnMut(NodeReport),
) -> anyhow::Result<()> {
    let _span = info_span!("agent", node = %cfg.node).entered();
    if let Some(ns) = &cfg.node_netns {
        netns::enter(ns)?;
    }
    let mut dp = open_datapath(&cfg)?;
    info!(datapath = dp.kind(), tc_mode = %cfg.tc_mode, "datapath ready");
    let mut link_events = LinkEvents::subscribe()?;
    let engine_cfg = Config {
        // The kernel counts traffic (eBPF) or nothing does (libpcap sees control packets only).
        count_traffic: false,
        dedup: true,
        ..Config::default()
    };
    let mut engine = Engine::with_config(profile, engine_cfg);
    let mut attach_errors = 0u64;
    let mut warned_none = false;
    let mut links = sync_links(dp.as_mut(), &cfg, &mut attach_errors, &mut warned_none);
    inventory.refresh(&links);
    let mut window_start = realtime_ns();
    let mut next_report = window_start + cfg.interval.as_nanos() as u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        {
            let mut fds: Vec<PollFd> = dp
                .wait_fds()
                .into_iter()
                .chain([link_events.as_fd()])
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            // eBPF wakes us only once a batch is waiting; the timeout collects the rest.
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
        dp.read_packets(&mut |p| engine.observe(p));
        if link_events.drain() {
            links = sync_links(dp.as_mut(), &cfg, &mut attach_errors, &mut warned_none);
        }
        let now = realtime_ns();
        engine.advance(now);
        if now < next_report && !stopping {
            continue;
        }
        let idle_before = monotonic_ns().saturating_sub(2 * cfg.interval.as_nanos() as u64);
        for t in dp.read_traffic(idle_before, &mut |p| engine.observe(p)) {
            engine.add_traffic(&t);
        }
        let report = engine.drain();
        inventory.refresh(&links);
        let mut stats = dp.take_stats();
        stats.attach_errors = std::mem::take(&mut attach_errors);
        if stats.event_drops > 0 {
            warn!(
                drops = stats.event_drops,
                "datapath buffer full: events dropped"
            );
        }
        sink(node_report(
            &cfg.node,
            (window_start, now),
            report,
            inventory.as_ref(),
            stats,
        ));
        window_start = now;
        next_report = now + cfg.interval.as_nanos() as u64;
        if stopping {
            break;
        }
    }
    dp.detach_all();
    info!("detached; agent stopped");
    Ok(())
}

/// Attaches to pod interfaces that appeared and forgets those that went. Returns the node's
/// links for the inventory.
fn sync_links(
    dp: &mut dyn Datapath,
    cfg: &AgentConfig,
    errors: &mut u64,
    warned_none: &mut bool,
) -> Vec<Link> {
    let links = match netlink::links() {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot list interfaces");
            return Vec::new();
        }
    };
    let wanted: Vec<&Link> = links
        .iter()
        .filter(|l| {
            cfg.iface_prefixes
                .iter()
                .any(|p| l.name.starts_with(p.as_str()))
        })
        .collect();
    let gone: Vec<String> = dp
        .attached()
        .into_iter()
        .filter(|(n, i)| !wanted.iter().any(|l| l.name == *n && l.index == *i))
        .map(|(n, _)| n)
        .collect();
    for name in gone {
        info!(ifname = %name, "interface gone: detached");
        dp.detach(&name);
    }
    if wanted.is_empty() && !*warned_none {
        warn!(
            prefixes = %cfg.iface_prefixes.join(","),
            "no interface matches the pod interface prefixes: no pod traffic is seen until one \
             appears (give --iface-prefix for this CNI's host-side interfaces)"
        );
    }
    *warned_none = wanted.is_empty();
    let before = dp.attached();
    for l in wanted {
        let new = !before.iter().any(|(n, i)| *n == l.name && *i == l.index);
        match dp.attach(&l.name, l.index) {
            Ok(()) if new => info!(ifname = %l.name, ifindex = l.index, "attached"),
            Ok(()) => {}
            Err(e) => {
                *errors += 1;
                warn!(ifname = %l.name, error = %e, "attach failed");
            }
        }
    }
    links
}
