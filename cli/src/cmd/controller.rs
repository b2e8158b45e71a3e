//! `outflow controller`: the cluster half, as the Deployment runs it. Agents post window
//! reports; people, scripts and Prometheus read them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use outflow_controller::api::{AgentAuth, TokenReviews};
use outflow_controller::captures::Captures;
use outflow_controller::store::ViewRetention;
use outflow_controller::ConnectionLimits;
use outflow_controller::{AppState, Store};
use tracing::info;

/// Where the controller listens and keeps its data, shared by `outflow controller` and `outflow up`.
#[derive(clap::Args)]
pub struct ControllerArgs {
    /// Where the API listens. Loopback needs no token; any other address does.
    #[arg(long, default_value = outflow_core::wire::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The SQLite store.
    #[arg(long, default_value = "/var/lib/outflow/outflow.db")]
    pub db: PathBuf,
    /// How long records are kept.
    #[arg(long, default_value = "24h", value_parser = outflow_core::units::parse_duration)]
    pub retention: Duration,
    /// How long the flow health view keeps its rollups and evidence.
    #[arg(long, default_value = "7d", value_parser = outflow_core::units::parse_duration)]
    pub view_retention: Duration,
    /// How long the view keeps minute buckets before merging them into hours.
    #[arg(long, default_value = "6h", value_parser = outflow_core::units::parse_duration)]
    pub view_minutes: Duration,
    /// The most the store holds (records, the view's buckets and evidence); past it the oldest
    /// records go, then the oldest buckets. Captures are bounded apart (--capture-budget).
    #[arg(long, default_value = "2GiB", value_parser = outflow_core::units::parse_size)]
    pub max_store_size: u64,
    /// A file holding the token callers must send (else OUTFLOW_TOKEN, else none).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Keep the token in this Kubernetes Secret (key `token`) in the controller's namespace
    /// (POD_NAMESPACE, else the service account's or the kubeconfig context's), creating it
    /// with a random token when it is missing: agents mount it, `kubectl outflow` reads it.
    #[arg(long, value_name = "NAME", conflicts_with = "token_file")]
    pub token_secret: Option<String>,
    /// How agents prove which node they are. `shared`: they send the shared token and may
    /// report as any node. `tokenreview` (in a cluster): each sends its pod's projected service
    /// account token (audience --agent-audience), which the Kubernetes API reviews and which
    /// names the pod's node; the agent reports only as that node, and the shared token may no
    /// longer post reports.
    #[arg(long, value_enum, default_value = "shared")]
    pub agent_auth: AgentAuthMode,
    /// The audience of the agents' projected tokens (--agent-auth tokenreview).
    #[arg(long, value_name = "AUDIENCE", default_value = "outflow")]
    pub agent_audience: String,
    /// The agents' service account, `[NAMESPACE/]NAME` (--agent-auth tokenreview); without a
    /// namespace, the controller's (POD_NAMESPACE, else `outflow`).
    #[arg(long, value_name = "[NS/]NAME", default_value = "outflow-agent")]
    pub agent_service_account: String,
    /// A file of `NODE TOKEN` lines (outside a cluster): each agent reports only as its node,
    /// with its node's token, and the shared token may no longer post reports. Read again
    /// when it changes.
    #[arg(long, value_name = "FILE", conflicts_with = "agent_auth")]
    pub agent_tokens: Option<PathBuf>,
    /// The kubeconfig for --token-secret: the command's own `--kubeconfig` (`outflow up`
    /// shares the agent's).
    #[arg(skip)]
    pub kubeconfig: Option<PathBuf>,
    /// Name destinations from the Kubernetes API (Services, EndpointSlices, Nodes, pods): set
    /// by `outflow controller --kube`, in a pod, or when `outflow up` takes pods from the API.
    #[arg(skip)]
    pub kube: bool,
    /// Where captures are kept (default: `captures/` beside the store).
    #[arg(long)]
    pub capture_dir: Option<PathBuf>,
    /// Finished captures kept, in bytes or with a unit (e.g. 10GiB); the oldest go first.
    #[arg(long, default_value = "1GiB", value_parser = outflow_core::units::parse_size)]
    pub capture_budget: u64,
    /// Label connection and DNS metrics by node and pod too. Off, they are per namespace: at
    /// 5,000 nodes a series per pod and outcome is millions of series.
    #[arg(long)]
    pub metrics_pods: bool,
    /// Reports that may wait to be stored at once; more are answered 503 with `Retry-After`
    /// at once and the agents send them again. Bounds the memory reports take while waiting
    /// (a 170 KB report is about a megabyte parsed).
    #[arg(long, value_name = "N", default_value_t = outflow_controller::api::MAX_INGEST_IN_FLIGHT)]
    pub ingest_queue: usize,
    /// Reports stored in one transaction at most: the waiting reports share a commit.
    #[arg(long, value_name = "N", default_value_t = outflow_controller::api::MAX_BATCH as u16,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ingest_batch: u16,
}

impl ControllerArgs {
    /// Opens the store and checks that a listener off loopback has a token.
    pub fn state(&self) -> anyhow::Result<AppState> {
        self.state_with(self.token()?)
    }

    /// [`ControllerArgs::state`] with the token already resolved.
    pub fn state_with(&self, token: Option<String>) -> anyhow::Result<AppState> {
        if token.is_none() && !self.listen.ip().is_loopback() {
            anyhow::bail!(
                "--listen {} is reachable from other hosts: give a token with --token-file FILE \
                 or OUTFLOW_TOKEN (agents and readers send it as a bearer token), or listen on \
                 127.0.0.1",
                self.listen
            );
        }
        if let Some(dir) = self.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
        let mut store = Store::open(&self.db, self.retention.as_nanos() as u64)?
            .with_view_retention(ViewRetention {
                fine_ns: self.view_minutes.as_nanos() as u64,
                rollups_ns: self.view_retention.as_nanos() as u64,
                evidence_ns: self.view_retention.as_nanos() as u64,
            })
            .with_max_bytes(self.max_store_size);
        // In a pod, the resolver's search list says the cluster's domain: lookups of names in
        // it are internal.
        if self.kube {
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            if let Some(domain) =
                outflow_core::wire::cluster::cluster_domain_from_resolv_conf(&resolv)
            {
                store.set_cluster_domain(&domain);
            }
        }
        let dir = self.capture_dir.clone().unwrap_or_else(|| {
            self.db
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
                .join("captures")
        });
        let captures = Captures::open(&dir, self.capture_budget)
            .with_context(|| format!("opening the capture directory {}", dir.display()))?;
        let agents = self.agent_auth(token.as_deref())?;
        let mut state = AppState::new(store)
            .with_token(token)
            .with_captures(captures)
            .with_ingest_limit(self.ingest_queue)
            .with_ingest_batch(self.ingest_batch.into());
        if let Some(agents) = agents {
            state = state.with_agent_auth(agents);
        }
        if self.metrics_pods {
            state = state.with_pod_metrics();
        }
        if !self.kube {
            return Ok(state);
        }
        // One cluster-wide watch names destinations for every node's records.
        let names = Arc::new(
            outflow_kube::ClusterNames::start(self.access())
                .context("naming destinations from the Kubernetes API")?,
        );
        // Not ready until the lists are in: agents keep their reports queued meanwhile, so no
        // record is stored unnamed after a restart.
        let (synced, facts) = (names.clone(), names.clone());
        Ok(state
            .with_cluster_profile(Arc::new(move || facts.profile()))
            .with_destination_names(Arc::new(move |ip| names.name_of(ip)))
            .with_ready_check(Arc::new(move || synced.status())))
    }

    /// How agents' tokens bind them to their node, when they do; `shared` is the people's
    /// token, which no agent's may be.
    fn agent_auth(&self, shared: Option<&str>) -> anyhow::Result<Option<AgentAuth>> {
        if let Some(file) = &self.agent_tokens {
            let tokens = outflow_controller::api::NodeTokens::open(file, shared)?;
            info!(file = %file.display(), "agents report with their node's token from the file");
            return Ok(Some(AgentAuth::NodeTokens(tokens)));
        }
        if self.agent_auth == AgentAuthMode::Shared {
            return Ok(None);
        }
        let reviewer = outflow_kube::TokenReviewer::new(&self.access(), &self.agent_audience)
            .context("--agent-auth tokenreview")?;
        let (namespace, name) = match self.agent_service_account.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (
                std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "outflow".into()),
                self.agent_service_account.clone(),
            ),
        };
        info!(
            service_account = %format!("{namespace}/{name}"),
            audience = %self.agent_audience,
            "agents report with their pod's token, reviewed by the Kubernetes API"
        );
        let review: outflow_controller::api::ReviewToken = Arc::new(move |token| {
            let review = reviewer.review(token);
            Box::pin(async move { review.await.map_err(Into::into) })
        });
        Ok(Some(AgentAuth::TokenReview(TokenReviews::new(
            review,
            &self.agent_audience,
            &namespace,
            &name,
        ))))
    }

    fn access(&self) -> outflow_kube::ClusterAccess {
        match &self.kubeconfig {
            Some(f) => outflow_kube::ClusterAccess::Kubeconfig(f.clone()),
            None => outflow_kube::ClusterAccess::Infer,
        }
    }

    /// The token callers must send: from the Secret, the file or OUTFLOW_TOKEN.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(name) = &self.token_secret else {
            return super::read_token(self.token_file.as_deref());
        };
        let access = self.access();
        let namespace = std::env::var("POD_NAMESPACE").ok();
        let (ns, token) = outflow_kube::ensure_token_blocking(&access, namespace.as_deref(), name)
            .with_context(|| format!("--token-secret {name}"))?;
        info!(secret = %format!("{ns}/{name}"), "token from the Kubernetes Secret");
        Ok(Some(token))
    }

    /// The URL this process's own agent reaches the API at.
    pub fn own_url(&self) -> String {
        let port = self.listen.port();
        if self.listen.ip().is_unspecified() {
            format!("http://127.0.0.1:{port}")
        } else {
            format!("http://{}", self.listen)
        }
    }

    /// Binds the listener.
    pub async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("listening on {}", self.listen))?;
        info!(listen = %self.listen, "API listening");
        Ok(listener)
    }
}

/// How agents prove which node they are (`--agent-auth`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentAuthMode {
    /// The shared token, as people send it: an agent may report as any node.
    Shared,
    /// The agent pod's service account token, reviewed by the Kubernetes API (TokenReview).
    Tokenreview,
}

/// The controller's runtime: two workers, what this machine class has.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Flags of `outflow controller`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    controller: ControllerArgs,
    /// Name destinations from the Kubernetes API (`service shop/web`, `pod shop/db-0
    /// (statefulset/db)`, `node NAME`); on by itself in a pod and with --kubeconfig.
    #[arg(long)]
    kube: bool,
    /// The kubeconfig to reach the Kubernetes API with outside a pod (for --kube and
    /// --token-secret) [default: as kubectl finds it].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

/// How often records past the retention are deleted.
pub const RETENTION_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves until SIGINT or SIGTERM.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    args.controller.kubeconfig = args.kubeconfig.clone();
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    args.controller.kube = args.kube || args.kubeconfig.is_some() || in_pod;
    let state = args.controller.state()?;
    super::controller::runtime()?.block_on(async move {
        let listener = args.controller.bind().await?;
        state.spawn_retention(RETENTION_PERIOD);
        outflow_controller::serve(
            listener,
            outflow_controller::app(state),
            ConnectionLimits::default(),
            super::shutdown_signal(),
        )
        .await
        .context("serving the API")?;
        Ok(ExitCode::SUCCESS)
    })
}
