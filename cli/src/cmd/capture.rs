//! `outflow capture --local`: tcpdump for a pod, on the node itself, written as pcapng.
//!
//! Through the controller (`--pod` from anywhere, the controller finding the node) comes next;
//! `--local` runs the agent's capture executor right here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use outflow_agent::capture::{self, Limits, Request, Target};
use outflow_agent::inventory::{Inventory, NetnsInventory, PodRef};
use outflow_agent::{netlink, netns};

/// Flags of `outflow capture`.
#[derive(clap::Args)]
pub struct Args {
    /// Capture on this machine (the node) instead of asking a controller.
    #[arg(long)]
    local: bool,
    /// The pod to capture (NAMESPACE/NAME): its host-side interfaces.
    #[arg(long)]
    pod: Option<String>,
    /// The interface to capture on (with --pod: only that one of the pod's).
    #[arg(short = 'i', long = "interface")]
    interface: Option<String>,
    /// Stop after this many packets.
    #[arg(short = 'c', long = "count")]
    count: Option<u64>,
    /// Stop after this long (at most the agent's limit, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Bytes kept per packet (default 512: headers and the start of the payload).
    #[arg(short = 's', long = "snaplen", default_value_t = 0)]
    snaplen: u32,
    /// Where the pcapng goes: a file, or - for standard output (`| wireshark -k -i -`).
    #[arg(short = 'w', long = "write")]
    write: Option<PathBuf>,
    /// Run inside this named network namespace, which plays the node.
    #[arg(long)]
    node_netns: Option<String>,
    /// This node's name, for the file (default: --node-netns, else the host name).
    #[arg(long)]
    node: Option<String>,
    /// The filter, in tcpdump (pcap-filter) syntax.
    filter: Vec<String>,
}

/// Runs a capture until a limit or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.local {
        bail!(
            "capture through the controller is not available yet: run `outflow capture --local …` \
             on the pod's node"
        );
    }
    let filter = args.filter.join(" ");
    // Before anything opens: a typo in the filter is the commonest mistake.
    capture::check_filter(&filter)?;
    let node = super::node_name(args.node.as_deref(), args.node_netns.as_deref());
    if let Some(ns) = &args.node_netns {
        netns::enter(ns)?;
    }
    let targets = targets(&args, &node)?;
    let (out, shown): (Box<dyn std::io::Write>, String) = match &args.write {
        Some(p) if p.as_os_str() == "-" => {
            if std::io::stdout().is_terminal() {
                bail!("-w - writes binary pcapng: pipe it (`| tshark -r -`) or give a file");
            }
            (Box::new(std::io::stdout().lock()), "standard output".into())
        }
        Some(p) => (
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            p.display().to_string(),
        ),
        None => {
            let name = default_file_name(args.pod.as_deref(), args.interface.as_deref());
            let file = std::fs::File::create(&name).with_context(|| format!("creating {name}"))?;
            (Box::new(std::io::BufWriter::new(file)), name)
        }
    };
    let comment = format!(
        "node {node}; {}; filter {:?}",
        args.pod
            .as_ref()
            .map_or_else(|| "interfaces".to_string(), |p| format!("pod {p}")),
        filter
    );
    let req = Request {
        targets,
        filter,
        snaplen: args.snaplen,
        max_packets: args.count,
        duration: args.duration,
        max_bytes: None,
        node,
        comment,
    };
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(stop.clone())?;
    eprintln!(
        "outflow: capturing on {} into {shown} (Ctrl-C stops)",
        req.targets
            .iter()
            .map(|t| format!("{} ({})", t.label, t.ifname))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let summary = capture::run(&req, &Limits::default(), out, &stop)?;
    eprintln!(
        "outflow: {} packets, {} bytes written to {shown}; {} dropped by the kernel; ended: {}",
        summary.packets, summary.bytes, summary.kernel_drops, summary.ended
    );
    Ok(ExitCode::SUCCESS)
}

/// The interfaces: the pod's host-side veths (from the named-netns inventory), or `-i`.
fn targets(args: &Args, node: &str) -> anyhow::Result<Vec<Target>> {
    let Some(pod) = &args.pod else {
        let Some(i) = &args.interface else {
            bail!("say what to capture: --pod NAMESPACE/NAME or -i INTERFACE");
        };
        return Ok(vec![Target {
            ifname: i.clone(),
            label: format!("{i}@{node}"),
            pod_side: false,
        }]);
    };
    let (namespace, name) = pod
        .split_once('/')
        .with_context(|| format!("--pod {pod:?}: expected NAMESPACE/NAME"))?;
    let links = netlink::links()?;
    let mut inventory = NetnsInventory::new(args.node_netns.clone());
    inventory.refresh(&links);
    let pod_ref = PodRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let mut ifaces = inventory.interfaces_of(&pod_ref);
    if let Some(i) = &args.interface {
        ifaces.retain(|n| n == i);
    }
    if ifaces.is_empty() {
        bail!(
            "pod {pod} has no interface on this node (pods are named network namespaces whose veth \
             leads here; `ip netns list` shows them)"
        );
    }
    Ok(ifaces
        .into_iter()
        .map(|ifname| Target {
            label: format!("{pod}@{node}"),
            ifname,
            pod_side: true,
        })
        .collect())
}

/// `outflow-default-web-1-20261125T201500.pcapng`: only safe characters, in the current
/// directory.
fn default_file_name(pod: Option<&str>, iface: Option<&str>) -> String {
    let what = pod.or(iface).unwrap_or("capture");
    let safe: String = what
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stamp = outflow_core::report::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    let stamp: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    format!("outflow-{safe}-{stamp}.pcapng")
}
