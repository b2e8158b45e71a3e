//! `outflow capture`: tcpdump for a pod, written as pcapng.
//!
//! By default through the controller: it finds the pod's node, that node's agent captures and
//! streams the file up, and this command streams it down to `-w`. `--local` runs the agent's
//! capture executor right here, on the node.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use outflow_agent::capture::{self, Limits, Request};
use outflow_agent::http::authorized;
use outflow_agent::netns;
use outflow_core::query::PodRef;

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
        args.node_netns.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let (out, shown) = output(&args)?;
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

/// Where the pcapng goes, and how to name it in messages.
fn output(args: &Args) -> anyhow::Result<(Box<dyn std::io::Write>, String)> {
    Ok(match &args.write {
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
            let name = default_file_name(args.pod_name.as_deref(), args.interface.as_deref());
            let file = std::fs::File::create(&name).with_context(|| format!("creating {name}"))?;
            (Box::new(std::io::BufWriter::new(file)), name)
        }
    })
}

/// Through the controller: create, stream down, DELETE on Ctrl-C and read to the end, so the
/// file is whole either way.
fn remote(args: &Args, filter: String) -> anyhow::Result<ExitCode> {
    if args.pod.is_none() && (args.node.is_none() || args.interface.is_none()) {
        bail!("say what to capture: --pod NAMESPACE/NAME, or --node NODE -i INTERFACE");
    }
    let base = args.client.base();
    let token = args.client.token()?;
    let spec = serde_json::json!({
        "pod": args.pod_name, "node": args.node, "interface": args.interface, "filter": filter,
        "count": args.count, "duration_s": args.duration.map(|d| d.as_secs().max(1)),
        "snaplen": (args.snaplen > 0).then_some(args.snaplen), "annotate": !args.no_annotate,
    });
    let mut resp = authorized(
        ureq::post(format!("{base}/api/v1/captures")),
        token.as_deref(),
    )
    .config()
    .http_status_as_error(false)
    .build()
    .send_json(&spec)
    .with_context(|| format!("cannot reach the controller at {base} (is `outflow up` running?)"))?;
    let body: serde_json::Value = resp
        .body_mut()
        .read_json()
        .context("the controller's answer")?;
    if !resp.status().is_success() {
        bail!(
            "the controller said {}: {}",
            resp.status(),
            body["error"].as_str().unwrap_or("(no message)")
        );
    }
    let id = body["id"]
        .as_u64()
        .context("the controller returned no capture id")?;
    let (mut out, shown) = output(args)?;
    eprintln!(
        "outflow: capture {id} on node {} into {shown} (Ctrl-C stops)",
        body["node"].as_str().unwrap_or("?")
    );
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(stop.clone())?;
    {
        let (url, token) = (format!("{base}/api/v1/captures/{id}"), token.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = authorized(ureq::delete(&url), token.as_deref()).call();
        });
    }
    let mut stream = authorized(
        ureq::get(format!("{base}/api/v1/captures/{id}/pcapng")),
        token.as_deref(),
    )
    .call()
    .context("downloading the capture")?;
    let mut reader = stream.body_mut().as_reader();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf).context("reading the capture stream")?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        // Streamed to Wireshark: packets show as they come.
        out.flush()?;
    }
    let mut resp = authorized(
        ureq::get(format!("{base}/api/v1/captures/{id}")),
        token.as_deref(),
    )
    .call()?;
    let info: serde_json::Value = resp.body_mut().read_json()?;
    eprintln!(
        "outflow: capture {id} {}: {} packets, {} bytes written to {shown}; {} dropped by the kernel; {}",
        info["state"].as_str().unwrap_or("?"),
        info["packets"],
        info["bytes"],
        info["kernel_drops"],
        info["reason"].as_str().unwrap_or("")
    );
    Ok(if info["state"] == "failed" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
