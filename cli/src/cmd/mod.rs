//! One wiring-only module per subcommand, plus what they share.

pub mod agent;
pub mod analyze;
pub mod capture;
pub mod captures;
pub mod check;
pub mod client;
pub mod controller;
pub mod health;
pub mod query;
pub mod up;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use outflow_core::report::{Report, Severity};

/// How logs are written to stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for the DaemonSet).
    Json,
}

/// Sets up `tracing` on stderr, filtered by `OUTFLOW_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes are for a person at a terminal, not for a file or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// "1 packet", "2 packets".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Output format of data commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for people (may change between versions).
    Table,
    /// The tables with every column, lists written whole.
    Wide,
    /// The JSON contract.
    Json,
}

/// `-o/--output table|wide|json` and its short form `--json`: one pair of flags for every command
/// that prints data (kubectl's spelling; `--format` stays as `analyze`'s older name).
#[derive(clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", visible_alias = "format", value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Short for `-o json`.
    #[arg(long, conflicts_with = "output")]
    json: bool,
}

impl OutputArgs {
    /// The format asked for.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output
        }
    }

    /// Whether tables are to be wide.
    pub fn wide(&self) -> bool {
        self.format() == Format::Wide
    }
}

/// Severity threshold for `--fail-on`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 1 if any error finding.
    Error,
    /// Exit 1 if any warning or error finding.
    Warning,
    /// Exit 1 if any finding at all.
    Info,
}

/// Exit code 1 when `--fail-on` was given and a finding meets it, else 0.
pub fn exit_code(report: &Report, fail_on: Option<FailOn>) -> ExitCode {
    let Some(level) = fail_on else {
        return ExitCode::SUCCESS;
    };
    let threshold = match level {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
        FailOn::Info => Severity::Info,
    };
    if report.findings.iter().any(|f| f.severity <= threshold) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether an error is a closed stdout (`outflow … | head`), which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends a pod it stops).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Sets `stop` on SIGINT or SIGTERM, from a thread of its own (for commands with no runtime).
pub fn stop_on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(shutdown_signal());
            stop.store(true, Ordering::Relaxed);
        })?;
    Ok(())
}

/// Standard output for `-w -`, unless it is a terminal: binary pcapng would only scramble it,
/// so the refusal comes before a capture starts or a download begins.
pub fn pcapng_stdout() -> anyhow::Result<std::io::StdoutLock<'static>> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!(
            "-w - writes binary pcapng, and standard output is a terminal: pipe it \
             (`| wireshark -k -i -`, `| tshark -r -`) or give a file (-w FILE)"
        );
    }
    Ok(std::io::stdout().lock())
}

/// The API token: the file's content when `--token-file` is given, else `OUTFLOW_TOKEN`, else
/// none. An empty token is a mistake, not "no token".
pub fn read_token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?,
        None => match std::env::var("OUTFLOW_TOKEN") {
            Ok(t) => t,
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        anyhow::bail!("the token is empty: put a secret in --token-file or OUTFLOW_TOKEN");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!(
            "the token holds whitespace or control characters: it must fit in one HTTP header"
        );
    }
    Ok(Some(token.to_string()))
}

/// This node's name: `--node`, else the `--node-netns` name, else the host name.
pub fn node_name(node: Option<&str>, node_netns: Option<&str>) -> String {
    node.or(node_netns)
        .map(str::to_string)
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_else(|| "node".to_string())
}

/// `--pod`'s parser: kubectl's `NAME` or `NAMESPACE/NAME`, checked before any work starts.
pub fn parse_pod(value: &str) -> Result<outflow_core::query::PodRef, String> {
    outflow_core::query::PodRef::parse(value).map_err(|e| e.to_string())
}

/// A controller address as a base URL: no trailing slash, and `http://` when it has no scheme.
pub fn controller_url(address: &str) -> String {
    let url = address.trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// How a command reaches the controller.
#[derive(clap::Args)]
pub struct ControllerClient {
    /// The controller [default: http://127.0.0.1:7878; as `kubectl outflow` or with --kube,
    /// the cluster's, through the Kubernetes API].
    #[arg(long, env = "OUTFLOW_CONTROLLER")]
    pub controller: Option<String>,
    /// A file holding the controller's token (else OUTFLOW_TOKEN, else none; through the
    /// Kubernetes API, the Secret outflow-token).
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// Reach the controller through the Kubernetes API server's service proxy, with the
    /// kubeconfig's credentials (what `kubectl outflow` does).
    #[arg(long, conflicts_with = "controller")]
    pub kube: bool,
    /// The kubeconfig [default: KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE", conflicts_with = "controller")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context [default: its current one].
    #[arg(long, value_name = "NAME", conflicts_with = "controller")]
    pub context: Option<String>,
    /// The namespace outflow is installed in.
    #[arg(long, value_name = "NS", default_value = "outflow")]
    pub outflow_namespace: String,
}

/// The controller's Service and the port it serves on (deploy/).
const CONTROLLER_SERVICE: (&str, &str) = ("outflow-controller", "http");
/// The Secret holding the controller's token (deploy/).
const TOKEN_SECRET: &str = "outflow-token";

impl ControllerClient {
    /// Whether the controller is reached through the Kubernetes API.
    fn through_kube(&self) -> bool {
        self.controller.is_none()
            && (self.kube || self.kubeconfig.is_some() || self.context.is_some() || as_kubectl())
    }

    /// The base URL, without a trailing slash; `http://` when the address has no scheme, so
    /// `--controller 127.0.0.1:7878` means what it says.
    pub fn base(&self) -> String {
        controller_url(
            self.controller
                .as_deref()
                .unwrap_or(outflow_core::wire::DEFAULT_LISTEN),
        )
    }

    /// The token, if any.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        read_token(self.token_file.as_deref())
    }

    /// A client for the controller, with the token.
    pub fn connect(&self) -> anyhow::Result<client::Client> {
        if !self.through_kube() {
            return Ok(client::Client::new(self.base(), self.token()?));
        }
        let access = outflow_kube::ClusterAccess::Kubectl {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        };
        let ns = &self.outflow_namespace;
        let (name, port) = CONTROLLER_SERVICE;
        let proxy = outflow_kube::ServiceProxy::start(
            &access,
            outflow_kube::ServiceRef {
                namespace: ns.clone(),
                name: name.into(),
                port: port.into(),
            },
        )?;
        let token = match self.token()? {
            Some(t) => Some(t),
            // Without the right to read it, the controller says what it misses.
            None => proxy.read_token(ns, TOKEN_SECRET).unwrap_or_else(|e| {
                tracing::debug!(error = %outflow_core::error_chain(&e), "no token from the Secret");
                None
            }),
        };
        Ok(client::Client::new(proxy.url(), token).named(
            format!("service {ns}/{name} through the Kubernetes API"),
            "is outflow installed in that namespace (--outflow-namespace), and does the \
                 kubeconfig reach the cluster?",
        ))
    }
}

/// Whether this process runs as `kubectl outflow` (kubectl runs plugins as `kubectl-NAME`).
pub fn as_kubectl() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("kubectl-outflow"))
}

/// A look-back, shown in the help the way it is written (`15m`).
#[derive(Clone, Copy)]
pub struct Since(pub std::time::Duration);

impl std::fmt::Display for Since {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Parses `--since` with the one duration grammar.
pub fn parse_since(s: &str) -> Result<Since, outflow_core::units::UnitError> {
    outflow_core::units::parse_duration(s).map(Since)
}
