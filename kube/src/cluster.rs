//! The controller's one cluster-wide watch: Services, EndpointSlices, Nodes and pods, kept in a
//! [`NameIndex`] that names destinations, and in [`NetworkFacts`] that tell agents the cluster's
//! own ranges (with ServiceCIDRs where the API serves them). On a thread of its own, like the
//! agent's pod watch.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::ListParams;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tracing::{info, warn};

use outflow_core::error_chain;
use outflow_core::wire::cluster::{cluster_domain_from_resolv_conf, ClusterProfile};

use crate::background::{lock, Background};
use crate::facts::NetworkFacts;
use crate::names::NameIndex;
use crate::watch::{AccessError, ClusterAccess};

/// One event of any of the four watches. Pods are large and the most frequent: boxed, each
/// event would cost an allocation for nothing, and the stream holds one at a time.
#[allow(clippy::large_enum_variant)]
enum Change {
    Service(watcher::Event<Service>),
    Node(watcher::Event<Node>),
    Pod(watcher::Event<Pod>),
    Slice(watcher::Event<EndpointSlice>),
    ServiceCidr(watcher::Event<ServiceCIDR>),
}

/// What readers see: the index, and the last error of any watch.
#[derive(Default)]
struct Shared {
    index: NameIndex,
    facts: NetworkFacts,
    error: Option<String>,
}

/// A running watch of the cluster's named addresses; it stops when dropped.
pub struct ClusterNames {
    shared: Arc<Mutex<Shared>>,
    _thread: Background,
}

impl ClusterNames {
    /// Starts the four watches. Fails only when there is no API to talk to; errors of a watch
    /// are retried with backoff and kept for [`ClusterNames::status`].
    pub fn start(access: ClusterAccess) -> Result<ClusterNames, AccessError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        // A pod's resolver names the cluster domain in its search list; elsewhere it does not.
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        lock(&shared)
            .facts
            .set_cluster_domain(cluster_domain_from_resolv_conf(&resolv));
        let writer = shared.clone();
        let thread = Background::start("kube-names", &access, move |client| {
            watch_all(client, writer)
        })?;
        Ok(ClusterNames {
            shared,
            _thread: thread,
        })
    }

    /// The name of `ip` in the cluster now, if it has one.
    pub fn name_of(&self, ip: IpAddr) -> Option<String> {
        lock(&self.shared).index.name_of(ip)
    }

    /// What the cluster tells of its network now, for agents' profiles.
    pub fn profile(&self) -> ClusterProfile {
        lock(&self.shared).facts.profile()
    }

    /// Ok once every kind has been listed; else why not yet.
    pub fn status(&self) -> Result<(), String> {
        let s = lock(&self.shared);
        match (&s.error, s.index.synced()) {
            (_, true) => Ok(()),
            (Some(e), false) => Err(format!("naming destinations from the Kubernetes API: {e}")),
            (None, false) => Err("waiting for the Kubernetes API's lists".into()),
        }
    }
}

/// A kind's watch, its events tagged; it never ends (errors are events, retried with backoff).
fn watch_of<K>(
    client: &Client,
    tag: fn(watcher::Event<K>) -> Change,
) -> impl Stream<Item = Result<Change, (&'static str, watcher::Error)>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let kind = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("?");
    watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(move |e| e.map(tag).map_err(|err| (kind, err)))
}

/// Whether the API serves ServiceCIDRs to this controller: a cluster before 1.33 answers `404`,
/// a role without the rule `403`, and a watch of them would only fail forever. Any other answer
/// is taken as yes (its watch retries).
async fn serves_service_cidrs(client: &Client) -> bool {
    let api = Api::<ServiceCIDR>::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            warn!(
                "may not list servicecidrs (networking.k8s.io): the profile gives the service                  range; add the rule of deploy/base/rbac.yaml to the controller's role"
            );
            false
        }
        _ => true,
    }
}

async fn watch_all(client: Client, shared: Arc<Mutex<Shared>>) {
    let mut watches = vec![
        watch_of(&client, Change::Service).boxed(),
        watch_of(&client, Change::Node).boxed(),
        watch_of(&client, Change::Pod).boxed(),
        watch_of(&client, Change::Slice).boxed(),
    ];
    if serves_service_cidrs(&client).await {
        watches.push(watch_of(&client, Change::ServiceCidr).boxed());
    } else {
        info!("the API serves no ServiceCIDRs (before Kubernetes 1.33): the profile gives the service range");
        lock(&shared).facts.set_serves_service_cidrs(false);
    }
    let mut changes = futures::stream::select_all(watches);
    while let Some(change) = changes.next().await {
        let mut s = lock(&shared);
        match change {
            Ok(change) => {
                let was = s.index.synced();
                match change {
                    Change::Service(e) => {
                        s.facts.apply_service(&e);
                        s.index.apply_service(e);
                    }
                    Change::Node(e) => {
                        s.facts.apply_node(&e);
                        s.index.apply_node(e);
                    }
                    Change::ServiceCidr(e) => s.facts.apply_service_cidr(&e),
                    Change::Pod(e) => s.index.apply_pod(e),
                    Change::Slice(e) => s.index.apply_endpoint_slice(e),
                }
                if !was && s.index.synced() {
                    info!(
                        objects = s.index.len(),
                        "services, endpointslices, nodes and pods listed: destinations are named"
                    );
                }
                s.error = None;
            }
            Err((kind, e)) => {
                let why = format!("{kind}: {}", error_chain(&e));
                warn!(error = %why, "watching the cluster failed; retrying");
                s.error = Some(why);
            }
        }
    }
}
