//! `outflow check`: DNS, TCP and HTTP(S) to one target from a pod's network namespace and from
//! the node's, with the verdict. Runs here, on namespaces this machine has (`--netns`); asking
//! the agent on a pod's node (`--pod`) needs the controller path, not built yet.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use outflow_check::{Plan, SidePlan};
use outflow_core::wire::check::{CheckResult, DnsCheck, Protocol, SideResult};

/// Azure's DNS (and wireserver) address, the upstream a cluster's DNS forwards to by default.
const AZURE_DNS: &str = "168.63.129.16";

/// Flags of `outflow check`.
#[derive(clap::Args)]
pub struct Args {
    /// [POD] TARGET: the target is a name (HTTPS on 443), name:port (80 HTTP, 443 HTTPS, any
    /// other TCP only), an address or an http(s):// URL. POD (with -n) is for the controller
    /// path.
    #[arg(value_name = "[POD] TARGET", num_args = 1..=2, required = true)]
    words: Vec<String>,
    /// The pod to check from, as NAMESPACE/NAME (needs the controller path; see --netns).
    #[arg(long, value_parser = super::parse_pod)]
    pod: Option<outflow_core::query::PodRef>,
    /// The pod's namespace when the pod is a bare name.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Check from this named network namespace (`ip netns list`), playing the pod.
    #[arg(long)]
    netns: Option<String>,
    /// The namespace playing the node [default: this process's own].
    #[arg(long)]
    node_netns: Option<String>,
    /// The pod side's resolv.conf [default: /etc/netns/NETNS/resolv.conf if there, else
    /// /etc/resolv.conf].
    #[arg(long, value_name = "FILE")]
    resolv_conf: Option<String>,
    /// The node side's resolv.conf [default: as --resolv-conf, for --node-netns].
    #[arg(long, value_name = "FILE")]
    node_resolv_conf: Option<String>,
    /// The DNS server asked directly, bypassing both resolvers.
    #[arg(long, default_value = AZURE_DNS)]
    upstream: IpAddr,
    /// Do not ask an upstream directly.
    #[arg(long, conflicts_with = "upstream")]
    no_upstream: bool,
    /// How long each DNS query, TCP connect and HTTP exchange may take (100ms to 10s).
    #[arg(long, default_value = "3s", value_parser = outflow_core::units::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: super::OutputArgs,
}

/// Runs the check and prints the result; exits 2 when a side could not run.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (pod_word, target) = match args.words.as_slice() {
        [target] => (None, target.clone()),
        [pod, target] => (Some(pod.clone()), target.clone()),
        _ => bail!("give one TARGET, or POD and TARGET"),
    };
    if args.pod.is_some() || pod_word.is_some() {
        let (ns, name) = match (&args.pod, pod_word) {
            (Some(p), _) => (p.namespace.clone(), p.name.clone()),
            (None, Some(w)) => (None, w),
            (None, None) => unreachable!("one of them is set"),
        };
        let ns = ns
            .or(args.namespace)
            .unwrap_or_else(|| "default".to_string());
        bail!(
            "checking pod {ns}/{name} through its node's agent needs the controller path, which is \
             not built yet; on the pod's node, run `outflow check --netns NETNS {target}` with the \
             pod's network namespace (one from `ip netns list`, or the one `ip netns identify PID` \
             names for a process of the pod)"
        );
    }
    let Some(netns) = args.netns.as_deref() else {
        bail!("say where to check from: --netns NAME (a namespace from `ip netns list` playing the pod)");
    };
    let pod = SidePlan::new(Some(netns), args.resolv_conf.as_deref())?;
    let node = SidePlan::new(args.node_netns.as_deref(), args.node_resolv_conf.as_deref())?;
    let upstream = (!args.no_upstream).then_some(args.upstream);
    let plan = Plan::new(&target, pod, node, upstream, args.timeout)?;
    // The target and the timeout first: a bad one is said even where no namespace exists.
    for name in [Some(netns), args.node_netns.as_deref()]
        .into_iter()
        .flatten()
    {
        let path = outflow_check::netns::path_of(name);
        if !path.exists() {
            bail!(
                "network namespace {name} does not exist ({} is missing); see `ip netns list`",
                path.display()
            );
        }
    }
    let result = outflow_check::run(&plan);
    let mut out = std::io::stdout().lock();
    match args.output.format() {
        super::Format::Json => {
            serde_json::to_writer_pretty(&mut out, &result)?;
            writeln!(out)?;
        }
        format => out.write_all(render(&result, format == super::Format::Wide).as_bytes())?,
    }
    out.flush()?;
    Ok(if result.verdict.kind == "check_failed" {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The table: one column per side, a row per step, then the verdict.
fn render(r: &CheckResult, wide: bool) -> String {
    let mut rows: Vec<[String; 3]> = vec![[
        String::new(),
        format!("pod ({})", r.pod.netns),
        format!("node ({})", r.node.netns),
    ]];
    let dns = |d: Option<&DnsCheck>| d.map_or_else(|| "-".to_string(), |d| dns_cell(d, wide));
    if r.pod.resolver.is_some() || r.node.resolver.is_some() {
        rows.push([
            "DNS resolver".into(),
            dns(r.pod.resolver.as_ref()),
            dns(r.node.resolver.as_ref()),
        ]);
    }
    if r.pod.upstream.is_some() || r.node.upstream.is_some() {
        rows.push([
            "DNS upstream".into(),
            dns(r.pod.upstream.as_ref()),
            dns(r.node.upstream.as_ref()),
        ]);
    }
    let n = r.pod.connects.len().max(r.node.connects.len());
    for i in 0..n {
        let cell = |s: &SideResult| {
            s.connects.get(i).map_or_else(
                || "-".to_string(),
                |c| {
                    let reason = c
                        .reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    format!(
                        "{}{reason} {} ms",
                        outflow_check::verdict::outcome_word(c.outcome),
                        c.latency_ms
                    )
                },
            )
        };
        let c = r
            .pod
            .connects
            .get(i)
            .or(r.node.connects.get(i))
            .expect("i < n");
        rows.push([
            format!("TCP {}:{}", c.addr, c.port),
            cell(&r.pod),
            cell(&r.node),
        ]);
    }
    if r.pod.http.is_some() || r.node.http.is_some() {
        let cell = |s: &SideResult| {
            s.http.as_ref().map_or_else(
                || "-".to_string(),
                |h| {
                    let tls = h.tls.as_ref().map_or_else(String::new, |t| {
                        format!(
                            "TLS {} [{}]{} ",
                            t.version.as_deref().unwrap_or("failed"),
                            t.cert_names.join(" "),
                            if t.is_trusted { "" } else { " untrusted" }
                        )
                    });
                    match (h.status, &h.error) {
                        (Some(s), _) => format!("{tls}{s} {} ms", h.latency_ms),
                        (None, e) => format!("{tls}{}", e.as_deref().unwrap_or("failed")),
                    }
                },
            )
        };
        rows.push(["HTTP".into(), cell(&r.pod), cell(&r.node)]);
    }
    for (who, s) in [("pod", &r.pod), ("node", &r.node)] {
        if let Some(e) = &s.error {
            rows.push([
                "error".into(),
                if who == "pod" { e.clone() } else { "-".into() },
                if who == "node" { e.clone() } else { "-".into() },
            ]);
        }
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0);
    let t = &r.target;
    let host = match t.host.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => format!("[{a}]"),
        _ => t.host.clone(),
    };
    let mut out = match (t.protocol, t.port) {
        (Protocol::Tcp, port) => format!("target {host}:{port} (TCP only)\n"),
        (Protocol::Http, 80) | (Protocol::Https, 443) => {
            format!(
                "target {}://{host}{}\n",
                scheme(t.protocol),
                t.path.as_deref().unwrap_or("/")
            )
        }
        (protocol, port) => format!(
            "target {}://{host}:{port}{}\n",
            scheme(protocol),
            t.path.as_deref().unwrap_or("/")
        ),
    };
    for row in &rows {
        out.push_str(format!("{:w0$}  {:w1$}  {}", row[0], row[1], row[2]).trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\nverdict: {} ({})\n",
        r.verdict.summary, r.verdict.kind
    ));
    if !r.verdict.evidence.is_empty() {
        out.push_str("evidence:\n");
        for e in &r.verdict.evidence {
            out.push_str(&format!("  - {e}\n"));
        }
    }
    if !r.verdict.next_checks.is_empty() {
        out.push_str("next checks:\n");
        for e in &r.verdict.next_checks {
            out.push_str(&format!("  - {e}\n"));
        }
    }
    out
}

fn scheme(p: Protocol) -> &'static str {
    match p {
        Protocol::Https => "https",
        _ => "http",
    }
}

/// "ok 198.51.100.80 (4 queries, 1.2 ms)"; wide lists each query.
fn dns_cell(d: &DnsCheck, wide: bool) -> String {
    let outcome = serde_json::to_value(d.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let answers: Vec<String> = d.answers.iter().map(IpAddr::to_string).collect();
    let mut s = outcome;
    if !answers.is_empty() {
        s.push(' ');
        s.push_str(&answers.join(","));
    }
    s.push_str(&format!(" ({} q, {} ms)", d.queries.len(), d.latency_ms));
    if wide {
        for q in &d.queries {
            s.push_str(&format!(
                " | {} @{} {}",
                q.name,
                q.server,
                q.rcode.as_deref().unwrap_or("-")
            ));
        }
    }
    s
}
