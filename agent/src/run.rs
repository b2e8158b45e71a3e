//! The agent's loop: one thread that owns the datapath, the engine and the interface list.
//!
//! It waits on the ring buffer and on link notifications together, feeds every event to the
//! engine, and once per interval reads the flow map, drains the engine into a node report and
//! hands it to the sink. Stopping (SIGTERM, Ctrl-C) flushes a last report and detaches.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use outflow_core::wire::NodeReport;
use outflow_core::{Config, Engine, Profile};
use tracing::{info, info_span, warn};

use crate::clock::{monotonic_ns, realtime_ns};
use crate::cluster_profile::{log_applied, ClusterProfileSlot};
use crate::datapath::ebpf::EbpfDatapath;
use crate::datapath::pcap::PcapDatapath;
use crate::datapath::{Datapath, DatapathChoice, DatapathError, TcMode};
use crate::inventory::Inventory;
use crate::netlink::{self, Link, LinkEvents};
use crate::netns;
use crate::readiness::Readiness;
use crate::scope::{node_pods, node_report, Mismatches};

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
    /// Where what the cluster tells of its network arrives (pods from the Kubernetes API):
    /// added to the profile from the next window on.
    pub cluster_profile: Option<Arc<ClusterProfileSlot>>,
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
            cluster_profile: None,
        }
    }
}

/// Opens the datapath the configuration asks for; with `Auto`, libpcap when eBPF cannot load,
/// and the reason goes into every report.
pub fn open_datapath(cfg: &AgentConfig) -> Result<Box<dyn Datapath>, DatapathError> {
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
///
/// The first report goes out as soon as the datapath is attached, before any traffic, so the
/// controller knows this node's pods from the start; `ready` turns ready just before it.
pub fn run(
    cfg: AgentConfig,
    profile: &Profile,
    inventory: Box<dyn Inventory>,
    ready: Arc<Readiness>,
    stop: Arc<AtomicBool>,
    mut sink: impl FnMut(NodeReport),
) -> anyhow::Result<()> {
    let _span = info_span!("agent", node = %cfg.node).entered();
    if let Some(ns) = &cfg.node_netns {
        netns::enter(ns)?;
    }
    let dp = open_datapath(&cfg)?;
    info!(datapath = dp.kind(), tc_mode = %cfg.tc_mode, "datapath loaded");
    let mut link_events = LinkEvents::subscribe()?;
    let engine_cfg = Config {
        // The kernel counts traffic (eBPF) or nothing does (libpcap sees control packets only).
        count_traffic: false,
        dedup: true,
        ..Config::default()
    };
    let mut agent = Agent {
        engine: Engine::with_config(profile, engine_cfg),
        dp,
        inventory,
        links: Vec::new(),
        attached_at: HashMap::new(),
        attach_errors: 0,
        warned_none: false,
        failing: Vec::new(),
        retry_at: None,
        ready,
        profile: profile.clone(),
        cluster_generation: 0,
        cluster_applied_ns: None,
        instance: rand_instance(),
        reports_made: 0,
        mismatches: Mismatches::default(),
    };
    let mut window_start = realtime_ns();
    agent.sync(&cfg);
    let first = realtime_ns();
    sink(agent.report(&cfg, (window_start, first)));
    window_start = first;
    let mut next_report = window_start + cfg.interval.as_nanos() as u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        {
            let mut fds: Vec<PollFd> = agent
                .dp
                .wait_fds()
                .into_iter()
                .chain([link_events.as_fd()])
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            // eBPF wakes us only once a batch is waiting; the timeout collects the rest.
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
        let engine = &mut agent.engine;
        agent.dp.read_packets(&mut |p| engine.observe(p));
        // Not ready (an attach failed): try again each second, not only when links change.
        if link_events.drain() || agent.retry_at.is_some_and(|t| realtime_ns() >= t) {
            agent.sync(&cfg);
        }
        // Categories are decided when records are drained: what the cluster told applies to
        // everything drained from now on.
        agent.apply_cluster_profile(&cfg);
        let now = realtime_ns();
        agent.engine.advance(now);
        // An address changes hands: what came before belongs to the pod that held it.
        if agent.inventory.reassigns() {
            sink(agent.report(&cfg, (window_start, now)));
            window_start = now;
        }
        if now < next_report && !stopping {
            continue;
        }
        sink(agent.report(&cfg, (window_start, now)));
        window_start = now;
        next_report = now + cfg.interval.as_nanos() as u64;
        if stopping {
            break;
        }
    }
    agent.dp.detach_all();
    info!("datapath detached from every interface");
    Ok(())
}

/// What the agent's loop owns.
struct Agent {
    engine: Engine,
    dp: Box<dyn Datapath>,
    inventory: Box<dyn Inventory>,
    /// The node's links at the last sync.
    links: Vec<Link>,
    /// When each attached interface (name, index) was attached, for the reports.
    attached_at: HashMap<String, (u32, u64)>,
    /// Failed attachments this window.
    attach_errors: u64,
    warned_none: bool,
    /// Interfaces whose attach failed at the last sync (warned once, not every retry).
    failing: Vec<String>,
    /// When to try again after a failed attach.
    retry_at: Option<u64>,
    ready: Arc<Readiness>,
    /// The profile as given, before the cluster's additions.
    profile: Profile,
    /// The generation of the cluster profile in use, and when it was taken in.
    cluster_generation: u64,
    cluster_applied_ns: Option<u64>,
    /// This run's identity in report ids, random so a restarted agent's ids are new.
    instance: u64,
    /// Reports made so far.
    reports_made: u64,
    /// Pods whose interface and address disagreed, already warned about.
    mismatches: Mismatches,
}

/// A random 64-bit number from the kernel.
fn rand_instance() -> u64 {
    let mut b = [0u8; 8];
    if read_urandom(&mut b).is_err() {
        // The clock is unique enough to tell one agent run from the next.
        return realtime_ns();
    }
    u64::from_ne_bytes(b)
}

fn read_urandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

impl Agent {
    /// Attaches to the pod interfaces there are now and says whether all of them are watched.
    fn sync(&mut self, cfg: &AgentConfig) {
        let failed = sync_links(self, cfg);
        if !self.inventory.reassigns() {
            self.inventory.refresh(&self.links);
        }
        let pods_known = self.inventory.status();
        let retry = !failed.is_empty() || pods_known.is_err();
        self.retry_at = retry.then(|| realtime_ns() + 1_000_000_000);
        self.failing = failed.clone();
        if let Err(why) = pods_known {
            if self.ready.set_not_ready(why.clone()) {
                warn!(reason = %why, "not ready");
            }
        } else if failed.is_empty() {
            if self.ready.set_ready(realtime_ns()) {
                info!(
                    interfaces = self.attached_at.len(),
                    pods = self.inventory.pods().len(),
                    "ready: the datapath watches every pod interface"
                );
            }
        } else {
            let why = format!(
                "attaching to {} failed (the agent retries; its log says why)",
                failed.join(", ")
            );
            if self.ready.set_not_ready(why.clone()) {
                warn!(reason = %why, "not ready");
            }
        }
    }

    /// Takes in what the cluster told since it last looked, for the records drained next.
    fn apply_cluster_profile(&mut self, cfg: &AgentConfig) {
        let Some(slot) = &cfg.cluster_profile else {
            return;
        };
        if let Some((generation, cluster)) = slot.newer_than(self.cluster_generation) {
            self.engine.set_profile(&cluster.fill(&self.profile));
            self.cluster_generation = generation;
            self.cluster_applied_ns = Some(realtime_ns());
            log_applied(&cluster);
        }
    }

    /// Drains the engine into the report of the window `(start, end)`.
    fn report(&mut self, cfg: &AgentConfig, (start, end): (u64, u64)) -> NodeReport {
        let idle_before = monotonic_ns().saturating_sub(2 * cfg.interval.as_nanos() as u64);
        let engine = &mut self.engine;
        for t in self
            .dp
            .read_traffic(idle_before, &mut |p| engine.observe(p))
        {
            engine.add_traffic(&t);
        }
        let report = self.engine.drain();
        // Pods that came are named at once; an address that changed hands is still the old
        // pod's for what is drained now.
        let reassigns = self.inventory.reassigns();
        if !reassigns {
            self.inventory.refresh(&self.links);
        }
        let mut stats = self.dp.take_stats();
        stats.attach_errors = std::mem::take(&mut self.attach_errors);
        stats.cluster_profile_ns = self.cluster_applied_ns;
        stats.interval_ns = Some(cfg.interval.as_nanos() as u64);
        if stats.event_drops > 0 {
            warn!(
                drops = stats.event_drops,
                "datapath buffer full: events dropped"
            );
        }
        let attached: HashMap<String, u64> = self
            .attached_at
            .iter()
            .map(|(name, (_, at))| (name.clone(), *at))
            .collect();
        let pods = node_pods(self.inventory.as_ref(), &attached);
        let report = node_report(
            &cfg.node,
            (start, end),
            report,
            self.inventory.as_ref(),
            stats,
            pods,
            &mut self.mismatches,
        );
        if reassigns {
            self.inventory.refresh(&self.links);
        }
        self.reports_made += 1;
        NodeReport {
            report_id: Some(format!("{:016x}-{}", self.instance, self.reports_made)),
            ..report
        }
    }
}

/// Attaches to pod interfaces that appeared and forgets those that went; keeps the node's links
/// for the inventory. Returns the interfaces it could not attach to.
fn sync_links(agent: &mut Agent, cfg: &AgentConfig) -> Vec<String> {
    let links = match netlink::links() {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot list interfaces");
            return vec![format!("any interface (cannot list them: {e})")];
        }
    };
    let dp = agent.dp.as_mut();
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
        let _span = info_span!("iface", ifname = %name).entered();
        info!("interface gone: detached");
        dp.detach(&name);
        agent.attached_at.remove(&name);
    }
    if wanted.is_empty() && !agent.warned_none {
        warn!(
            prefixes = %cfg.iface_prefixes.join(","),
            "no interface matches the pod interface prefixes: no pod traffic is seen until one \
             appears (give --iface-prefix for this CNI's host-side interfaces)"
        );
    }
    agent.warned_none = wanted.is_empty();
    let before = dp.attached();
    let mut failed = Vec::new();
    for l in wanted {
        let new = !before.iter().any(|(n, i)| *n == l.name && *i == l.index);
        let pod = agent.inventory.pod_on_interface(l.index).map_or_else(
            || "-".to_string(),
            |p| format!("{}/{}", p.namespace, p.name),
        );
        let _span = info_span!("iface", ifname = %l.name, ifindex = l.index, pod = %pod).entered();
        match dp.attach(&l.name, l.index) {
            Ok(()) if new => {
                info!("attached");
                agent
                    .attached_at
                    .insert(l.name.clone(), (l.index, realtime_ns()));
            }
            Ok(()) => {}
            Err(e) => {
                agent.attach_errors += 1;
                agent.attached_at.remove(&l.name);
                if !agent.failing.contains(&l.name) {
                    warn!(error = %e, "attach failed");
                }
                failed.push(l.name.clone());
            }
        }
    }
    agent.links = links;
    failed
}
