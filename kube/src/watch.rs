//! The watch of this node's pods, on a thread of its own so the agent's loop stays synchronous.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tracing::{info, warn};

use outflow_core::error_chain;

use crate::background::{lock, Background};
use crate::index::{PodIndex, Snapshot};

/// Where the API server and credentials come from, as kubectl finds them.
#[derive(Debug, Clone)]
pub enum ClusterAccess {
    /// In a pod, its service account; else `KUBECONFIG` or `~/.kube/config`.
    Infer,
    /// This kubeconfig file, its current context.
    Kubeconfig(PathBuf),
    /// As kubectl: this kubeconfig or else `KUBECONFIG`/`~/.kube/config`, this context or else
    /// the current one; never the in-cluster account.
    Kubectl {
        /// `--kubeconfig`.
        kubeconfig: Option<PathBuf>,
        /// `--context`.
        context: Option<String>,
    },
}

/// Why the API cannot be reached at all.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No in-cluster account and no usable kubeconfig.
    #[error("no Kubernetes API to talk to (not in a pod, and KUBECONFIG or ~/.kube/config gives none); give --kubeconfig FILE")]
    Infer(#[source] kube::config::InferConfigError),
    /// The kubeconfig file is unreadable or wrong.
    #[error("kubeconfig {path}: cannot be used")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client cannot be built (TLS settings, proxy).
    #[error("cannot build a Kubernetes client from that configuration")]
    Client(#[source] kube::Error),
    /// No thread, runtime or loopback socket to run the client on.
    #[error("cannot start the Kubernetes client's runtime")]
    Runtime(#[source] std::io::Error),
}

/// Connects as kubectl would.
pub async fn client(access: &ClusterAccess) -> Result<Client, AccessError> {
    Client::try_from(config(access).await?).map_err(AccessError::Client)
}

/// The client configuration `access` names, as kubectl would read it.
pub async fn config(access: &ClusterAccess) -> Result<kube::Config, AccessError> {
    Ok(match access {
        ClusterAccess::Infer => kube::Config::infer().await.map_err(AccessError::Infer)?,
        ClusterAccess::Kubeconfig(path) => {
            let wrap = |source| AccessError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(wrap)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(wrap)?
        }
        ClusterAccess::Kubectl {
            kubeconfig,
            context,
        } => {
            let options = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            let path = kubeconfig.clone().unwrap_or_else(|| "KUBECONFIG".into());
            let wrap = |source| AccessError::Kubeconfig {
                path: path.clone(),
                source,
            };
            match kubeconfig {
                Some(f) => {
                    let kc = kube::config::Kubeconfig::read_from(f).map_err(wrap)?;
                    kube::Config::from_custom_kubeconfig(kc, &options)
                        .await
                        .map_err(wrap)?
                }
                None => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(wrap)?,
            }
        }
    })
}

/// What readers see of the watch.
#[derive(Debug, Default)]
struct Shared {
    snapshot: Arc<Snapshot>,
    /// Bumped with every new snapshot.
    generation: u64,
    synced: bool,
    /// The last error of the watch, until the next complete list or event.
    error: Option<String>,
}

/// A running watch of one node's pods; it stops when dropped.
pub struct PodWatch {
    shared: Arc<Mutex<Shared>>,
    _thread: Background,
}

impl PodWatch {
    /// Starts watching the pods whose `spec.nodeName` is `node`. Fails only when there is no
    /// API to talk to; an API that is down or answers errors is retried with backoff, and
    /// [`PodWatch::status`] says why it is not synced.
    pub fn start(access: ClusterAccess, node: &str) -> Result<PodWatch, AccessError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let fields = format!("spec.nodeName={node}");
        let writer = shared.clone();
        let thread = Background::start("kube-pods", &access, move |client| {
            watch_pods(client, fields, writer)
        })?;
        Ok(PodWatch {
            shared,
            _thread: thread,
        })
    }

    /// The latest complete view and its generation (bumped at every change).
    pub fn snapshot(&self) -> (u64, Arc<Snapshot>) {
        let s = lock(&self.shared);
        (s.generation, s.snapshot.clone())
    }

    /// Ok once the first complete pod list has arrived; else why not yet.
    pub fn status(&self) -> Result<(), String> {
        let s = lock(&self.shared);
        match (&s.error, s.synced) {
            (_, true) => Ok(()),
            (Some(e), false) => Err(format!(
                "the pod list from the Kubernetes API has not arrived: {e}"
            )),
            (None, false) => Err("waiting for the pod list from the Kubernetes API".into()),
        }
    }

    /// The watch's last error since it last made progress, if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared).error.clone()
    }
}

/// The watch loop. It never ends on an error: a 410 Gone relists, a dropped connection
/// watches again from the last version, and anything else is retried with backoff.
async fn watch_pods(client: Client, fields: String, shared: Arc<Mutex<Shared>>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&fields);
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut index = PodIndex::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let snapshot = index.apply(event);
                let mut s = lock(&shared);
                if let Some(snapshot) = snapshot {
                    if !s.synced {
                        info!(pods = snapshot.pods.len(), %fields, "pod list from the Kubernetes API");
                    }
                    s.snapshot = snapshot;
                    s.generation += 1;
                    s.synced = index.synced();
                }
                s.error = None;
            }
            Err(e) => {
                let why = error_chain(&e);
                warn!(error = %why, "watching pods failed; retrying");
                lock(&shared).error = Some(why);
            }
        }
    }
}
