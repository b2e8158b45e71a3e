//! `outflow capture`: tcpdump for a pod, written as pcapng.
//!
//! By default through the controller: it finds the pod's node, that node's agent captures and
//! streams the file up, and this command streams it down to `-w`. `--local` runs the agent's
//! capture executor right here, on the node.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use outflow_agent::capture::{self, Limits, Request};
use outflow_agent::inventory::PodSource;
use outflow_agent::netns;
use outflow_core::query::PodRef;
use outflow_core::wire::captures::{CaptureInfo, CaptureSpec, CaptureState};
use outflow_core::wire::routes;

/// Flags of `outflow capture`.
#[derive(clap::Args)]
pub struct Args {
    /// Capture on this machine (the node) instead of asking a controller.
    #[arg(long)]
    local: bool,
    #[command(flatten)]
    client: super::ControllerClient,
    /// The pod to capture (NAME with -n, or NAMESPACE/NAME): its host-side interfaces.
    #[arg(long, value_parser = super::parse_pod)]
    pod: Option<PodRef>,
    /// The pod's namespace when --pod gives a bare name (default: default).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The pod as NAMESPACE/NAME, filled from --pod and -n before the capture starts.
    #[arg(skip)]
    pod_name: Option<String>,
    /// The interface to capture on (with --pod: only that one of the pod's).
    #[arg(short = 'i', long = "interface")]
    interface: Option<String>,
    /// Stop after this many packets.
    #[arg(short = 'c', long = "count")]
    count: Option<u64>,
    /// Stop after this long (at most the agent's limit, 5m).
    #[arg(long, value_parser = outflow_core::units::parse_duration)]
    duration: Option<Duration>,
    /// Bytes kept per packet; 0 keeps whole packets, as in tcpdump [default: 512: headers and
    /// the start of the payload].
    #[arg(short = 's', long = "snaplen")]
    snaplen: Option<u32>,
    /// Where the pcapng goes: a file, or - for standard output (`| wireshark -k -i -`).
    #[arg(short = 'w', long = "write")]
    write: Option<PathBuf>,
    /// Run inside this named network namespace, which plays the node.
    #[arg(long)]
    node_netns: Option<String>,
    /// Pods by address, as `outflow agent --inventory` takes them (--local; the agent's own
    /// otherwise): the pod's interface is the one the node routes its address through.
    #[arg(long, value_name = "FILE", requires = "local")]
    inventory: Option<PathBuf>,
    /// This node's name, for the file (default: --node-netns, else the host name).
    #[arg(long)]
    node: Option<String>,
    /// Leave out the packet comments with what outflow concluded ("connection refused" on the
    /// RST, "SYN unanswered for 3.0 s" on a retransmission, "DNS nxdomain for …" on the answer).
    #[arg(long)]
    no_annotate: bool,
    /// The cluster's name, for the file's header (--local; the agent's own otherwise).
    #[arg(long, env = "OUTFLOW_CLUSTER")]
    cluster: Option<String>,
    /// The filter, in tcpdump (pcap-filter) syntax.
    filter: Vec<String>,
}

/// Runs a capture until a limit or Ctrl-C.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // kubectl's habit: `kubectl outflow capture POD -n NS [FILTER]`.
    if super::as_kubectl()
        && args.pod.is_none()
        && args.interface.is_none()
        && args.node.is_none()
        && !args.filter.is_empty()
    {
        let pod = args.filter.remove(0);
        args.pod = Some(super::parse_pod(&pod).map_err(anyhow::Error::msg)?);
    }
    args.pod_name = args
        .pod
        .as_ref()
        .map(|p| format!("{}/{}", p.namespace_or(args.namespace.as_deref()), p.name));
    let filter = args.filter.join(" ");
    // Before anything opens: a typo in the filter is the commonest mistake.
    capture::check_filter(&filter)?;
    if !args.local {
        return remote(&args, filter);
    }
    let node = super::node_name(args.node.as_deref(), args.node_netns.as_deref());
    if let Some(ns) = &args.node_netns {
        netns::enter(ns)?;
    }
    let targets = capture::targets(
        args.pod_name.as_deref(),
        args.interface.as_deref(),
        &node,
        &match &args.inventory {
            Some(f) => PodSource::File(f.clone()),
            None => PodSource::Netns(args.node_netns.clone()),
        },
    )
    .map_err(anyhow::Error::msg)?;
    let (out, shown, _) = output(&args)?;
    let comment = capture::describe(
        args.cluster.as_deref(),
        &node,
        args.pod_name.as_deref(),
        &filter,
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
        annotate: !args.no_annotate,
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

/// Where the pcapng goes, how to name it in messages, and the file this call created (none for
/// standard output or a file that was there before, such as `/dev/null`), so that a capture that
/// never starts leaves nothing behind and removes nothing it did not make.
fn output(args: &Args) -> anyhow::Result<(Box<dyn std::io::Write>, String, Option<PathBuf>)> {
    let created = |p: &std::path::Path| (!p.exists()).then(|| p.to_path_buf());
    Ok(match &args.write {
        Some(p) if p.as_os_str() == "-" => (
            Box::new(super::pcapng_stdout()?),
            "standard output".into(),
            None,
        ),
        Some(p) => {
            let new = created(p);
            let file =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            (
                Box::new(std::io::BufWriter::new(file)),
                p.display().to_string(),
                new,
            )
        }
        None => {
            let name = default_file_name(args.pod_name.as_deref(), args.interface.as_deref());
            let new = created(std::path::Path::new(&name));
            let file = std::fs::File::create(&name).with_context(|| format!("creating {name}"))?;
            (Box::new(std::io::BufWriter::new(file)), name, new)
        }
    })
}

/// Through the controller: check the output, create, stream down, DELETE on Ctrl-C and read to
/// the end, so the file is whole either way. Nothing is created on the node before the output
/// is known good, and a capture this command cannot follow is stopped, not left to run.
fn remote(args: &Args, filter: String) -> anyhow::Result<ExitCode> {
    if args.pod.is_none() && (args.node.is_none() || args.interface.is_none()) {
        bail!("say what to capture: --pod NAMESPACE/NAME, or --node NODE -i INTERFACE");
    }
    let (mut out, shown, created) = output(args)?;
    let client = args.client.connect()?;
    let spec = CaptureSpec {
        pod: args.pod_name.clone(),
        node: args.node.clone(),
        interface: args.interface.clone(),
        filter,
        count: args.count,
        duration_s: args.duration.map(|d| d.as_secs().max(1)),
        snaplen: args.snaplen,
        annotate: !args.no_annotate,
    };
    let created: CaptureInfo = match client.post(routes::CAPTURES, &spec) {
        Ok(c) => c,
        Err(e) => {
            if let Some(path) = created {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    let id = created.id;
    eprintln!(
        "outflow: capture {id} on node {} into {shown} (Ctrl-C stops)",
        created.node
    );
    if let Some(w) = &created.warning {
        eprintln!("outflow: warning: {w}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(stop.clone())?;
    let stopper = {
        let (client, stop) = (args.client.connect()?, stop.clone());
        std::thread::spawn(move || {
            let mut waited = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
                if waited == PENDING_NOTICE {
                    still_pending(&client, id);
                }
            }
            let _ = client.delete::<CaptureInfo>(&routes::capture(id));
        })
    };
    let streamed = stream(&client, id, &mut out);
    if streamed.is_err() {
        // The capture must not outlive the command that asked for it.
        stop.store(true, Ordering::Relaxed);
        let _ = stopper.join();
        return streamed.map(|_| ExitCode::from(2));
    }
    let info: CaptureInfo = client.get(&routes::capture(id), &[])?;
    eprintln!(
        "outflow: capture {id} {}: {} packets, {} bytes written to {shown}; {} dropped by the \
         kernel; {}",
        info.state,
        info.packets,
        info.bytes,
        info.kernel_drops,
        info.reason.as_deref().unwrap_or("")
    );
    Ok(if info.state == CaptureState::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// How long a capture may sit pending before the command says it waits for the node's agent.
const PENDING_NOTICE: Duration = Duration::from_secs(5);

/// Says so when the node's agent has not taken the capture yet.
fn still_pending(client: &super::client::Client, id: u64) {
    if let Ok(info) = client.get::<CaptureInfo>(&routes::capture(id), &[]) {
        if info.state == CaptureState::Pending {
            eprintln!(
                "outflow: capture {id} still waits for node {}'s agent to take it; is the agent \
                 running there and reaching this controller?",
                info.node
            );
        }
    }
}

/// Copies the capture's pcapng from the controller into `out` until it ends.
fn stream(
    client: &super::client::Client,
    id: u64,
    out: &mut Box<dyn std::io::Write>,
) -> anyhow::Result<()> {
    let mut reader = client
        .stream(&routes::capture_pcapng(id))
        .context("downloading the capture")?;
    let mut buf = vec![0u8; 64 << 10];
    let mut progress = StreamProgress::new(id);
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf).context("reading the capture stream")?;
        if n == 0 {
            progress.done();
            return Ok(());
        }
        out.write_all(&buf[..n])
            .context("writing the capture's output")?;
        // Streamed to Wireshark: packets show as they come.
        out.flush().context("writing the capture's output")?;
        progress.add(n);
    }
}

/// On a terminal, one line that says how much of the capture has arrived, rewritten each
/// second; nothing when stderr is a file or a pipe (logs stay clean).
struct StreamProgress {
    id: u64,
    enabled: bool,
    started: std::time::Instant,
    last: std::time::Instant,
    bytes: u64,
    shown: bool,
}

impl StreamProgress {
    fn new(id: u64) -> StreamProgress {
        let now = std::time::Instant::now();
        StreamProgress {
            id,
            enabled: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            bytes: 0,
            shown: false,
        }
    }

    fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        if !self.enabled || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = std::time::Instant::now();
        self.shown = true;
        eprint!(
            "\routflow: capture {}: {} received in {} s (Ctrl-C stops it) ",
            self.id,
            outflow_core::units::format_size(self.bytes),
            self.started.elapsed().as_secs()
        );
    }

    /// Clears the line before the summary is printed.
    fn done(&self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
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
