//! The state every handler shares: the store, the token, the metrics and the captures, and the
//! one way handlers reach the store (`blocking`).
//!
//! Apart from the routes so that every handler file, records and captures alike, depends on it and
//! not on each other. Checking a report lives here because `ingest` is the one path in.

use std::sync::{Arc, Mutex, PoisonError};

use outflow_core::wire::NodeReport;

use super::checks::{check_report, check_window};
use super::error::ApiError;
use crate::captures::Captures;
use crate::clock::now_ns;
use crate::metrics::Metrics;
use crate::store::Store;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub(super) store: Arc<Mutex<Store>>,
    /// The store as queries read it: a connection of its own when the store is a file, else
    /// the same as `store`.
    pub(super) reader: Arc<Mutex<Store>>,
    /// When set, every API call must carry it as a bearer token.
    pub(super) token: Option<Arc<str>>,
    /// How agents prove their node; none: they send the shared token, as people do.
    pub(super) agent_auth: Option<Arc<super::auth::AgentAuth>>,
    pub(super) metrics: Arc<Mutex<Metrics>>,
    captures: Option<Arc<Captures>>,
    /// How long records are kept (reports older than that are refused).
    retention_ns: u64,
    /// Reports being stored at once; when none is free a report is refused at once (503 with
    /// `Retry-After`) rather than held: the agent keeps it queued and sends it again.
    pub(super) ingest_slots: Arc<tokio::sync::Semaphore>,
    /// The thread that writes reports, many to a transaction.
    writer: super::writer::Writer,
    /// What `/readyz` asks; none: ready as soon as it serves.
    pub(super) ready: Option<crate::probes::ReadyCheck>,
    /// Who a destination address is in the cluster; none outside Kubernetes.
    names: Option<DestinationNames>,
    /// What the cluster tells of its network; none outside Kubernetes.
    pub(super) cluster_profile: Option<ClusterProfileSource>,
}

/// What the Kubernetes API tells of the cluster's network now.
pub type ClusterProfileSource =
    Arc<dyn Fn() -> outflow_core::wire::cluster::ClusterProfile + Send + Sync>;

/// Reports waiting to be stored at once by default: two batches of the writer's, so one
/// fills while the other is written. More are refused with 503 and `Retry-After`.
pub const MAX_INGEST_IN_FLIGHT: usize = 2 * super::writer::MAX_BATCH;

/// Names a destination address (`service shop/web`), from what the cluster says now.
pub type DestinationNames = Arc<dyn Fn(std::net::IpAddr) -> Option<String> + Send + Sync>;

impl AppState {
    /// State over a store, open to every caller (a loopback listener).
    pub fn new(store: Store) -> AppState {
        let reader = match store.reader() {
            Ok(r) => r,
            Err(e) => {
                // Queries then share the writer's connection: slower under load, still right.
                tracing::warn!(error = %outflow_core::error_chain(&*e), "no reader of its own for the store");
                None
            }
        };
        let retention_ns = store.retention_ns();
        let store = Arc::new(Mutex::new(store));
        let metrics: Arc<Mutex<Metrics>> = Arc::default();
        AppState {
            writer: super::writer::Writer::spawn(
                store.clone(),
                metrics.clone(),
                super::writer::MAX_BATCH,
            ),
            retention_ns,
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(MAX_INGEST_IN_FLIGHT)),
            reader: reader.map_or_else(|| store.clone(), |r| Arc::new(Mutex::new(r))),
            store,
            token: None,
            agent_auth: None,
            metrics,
            captures: None,
            ready: None,
            names: None,
            cluster_profile: None,
        }
    }

    /// Makes `/readyz` answer by `check` too (`outflow up`: the embedded agent's readiness; a
    /// controller naming destinations: the cluster's lists have arrived), after any check
    /// already set.
    pub fn with_ready_check(mut self, check: crate::probes::ReadyCheck) -> AppState {
        self.ready = Some(match self.ready.take() {
            None => check,
            Some(first) => Arc::new(move || {
                first()?;
                check()
            }),
        });
        self
    }

    /// Names each connection's destination at ingest by `names`, so a record keeps the name its
    /// address had when the traffic happened (a pod's address is soon another pod's).
    pub fn with_destination_names(mut self, names: DestinationNames) -> AppState {
        self.names = Some(names);
        self
    }

    /// Serves what the cluster tells of its network to agents, which add it to their profile.
    pub fn with_cluster_profile(mut self, profile: ClusterProfileSource) -> AppState {
        self.cluster_profile = Some(profile);
        self
    }

    /// Enables captures on demand, kept in `captures`.
    pub fn with_captures(mut self, captures: Captures) -> AppState {
        self.captures = Some(Arc::new(captures));
        self
    }

    /// The captures, when enabled.
    pub fn captures(&self) -> Option<&Captures> {
        self.captures.as_deref()
    }

    /// The node whose latest records name this pod.
    pub async fn node_of_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ApiError> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.read("finding the pod's node", move |store| {
            store.node_of_pod(&namespace, &name)
        })
        .await
    }

    /// Runs `work` on the store as queries read it, off the async threads; a failure in it is a
    /// server fault while doing `what`.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.reader.clone();
        blocking(what, move || {
            work(&store.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
    }

    /// Lets at most `n` reports wait to be stored at once; more are refused with 503 and
    /// `Retry-After`.
    pub fn with_ingest_limit(mut self, n: usize) -> AppState {
        self.ingest_slots = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// Stores at most `n` reports in one transaction (at least 1).
    pub fn with_ingest_batch(mut self, n: usize) -> AppState {
        self.writer = super::writer::Writer::spawn(self.store.clone(), self.metrics.clone(), n);
        self
    }

    /// Labels connection and DNS metrics by node and pod too (a series per pod and outcome).
    pub fn with_pod_metrics(self) -> AppState {
        *self.metrics.lock().unwrap_or_else(PoisonError::into_inner) = Metrics::with_pod_labels();
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on the API and `/metrics`.
    pub fn with_token(mut self, token: Option<String>) -> AppState {
        self.token = token.map(Arc::from);
        self
    }

    /// Takes agents' reports only with a token of their own that names their node (see
    /// [`super::auth`]); the shared token may then not post reports.
    pub fn with_agent_auth(mut self, auth: super::auth::AgentAuth) -> AppState {
        self.agent_auth = Some(Arc::new(auth));
        self
    }

    /// Stores a report (the embedded agent's path, no HTTP). A report sent again (its id
    /// stored already) is acknowledged and changes nothing.
    pub async fn ingest(&self, report: NodeReport) -> Result<(), ApiError> {
        use tracing::Instrument;
        // Checked first: the span shows the node's name, which must be a name.
        check_report(&report)?;
        let span = tracing::info_span!(
            "report",
            node = %report.node,
            id = report.report_id.as_deref().unwrap_or("-")
        );
        self.ingest_report(report).instrument(span).await
    }

    async fn ingest_report(&self, mut report: NodeReport) -> Result<(), ApiError> {
        check_window(&report, now_ns(), self.retention_ns)?;
        // Every record is the sending node's, whatever node a record names.
        let node = report.node.clone();
        let scopes = report
            .connections
            .iter_mut()
            .map(|c| &mut c.scope)
            .chain(report.dns.iter_mut().map(|d| &mut d.scope))
            .chain(report.findings.iter_mut().map(|f| &mut f.scope));
        for scope in scopes {
            scope.node.clone_from(&node);
        }
        // The controller names destinations; a name an agent sent is not taken on trust.
        for c in &mut report.connections {
            c.record.destination = self.names.as_ref().and_then(|names| names(c.record.dst));
        }
        // Counted in the metrics by the writer, once stored: a report sent again is not.
        self.writer.store(report).await.map(|_| ())
    }

    /// Deletes what is older than the retention every `period`, by the controller's clock.
    pub fn spawn_retention(&self, period: std::time::Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let store = store.clone();
                let expired = blocking("expiring old records", move || {
                    let lock = || store.lock().unwrap_or_else(PoisonError::into_inner);
                    // A tier at a time, the store let go in between: reports wait for one
                    // tier's fold, not for all of the timer's work.
                    let now = now_ns();
                    for _ in crate::store::TIERS {
                        if !lock().fold_step(now)? {
                            break;
                        }
                    }
                    lock().expire(now)
                })
                .await;
                match expired {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(records = n, "expired records past the retention"),
                    Err(e) => {
                        tracing::warn!(error = %outflow_core::error_chain(&e), "expiring old records failed")
                    }
                }
            }
        });
    }
}

/// Runs store work off the async threads. A failure in it, or a panic, is a server fault while
/// doing `what`.
pub async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(what, e)),
        Err(e) => Err(ApiError::internal(what, e)),
    }
}
