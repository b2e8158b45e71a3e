//! An API replay server: the Kubernetes API's list and watch protocol over HTTP, serving
//! recorded Pod objects, so the real kube client and watcher can be tested without a cluster.
//!
//! The test moves the cluster on (pods added, changed, deleted), sends bookmarks, expires
//! resource versions (a watch then gets `410 Gone` and the client must relist), drops
//! connections and refuses requests, and reads back what the client asked for.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// One open watch: its node filter and where its events go (`None` ends it).
struct Watch {
    node: Option<String>,
    tx: mpsc::UnboundedSender<Option<String>>,
}

#[derive(Default)]
struct Cluster {
    /// The latest resource version.
    rv: u64,
    /// Watches from before this version are answered `410 Gone`.
    expired_before: u64,
    /// Pods by namespace/name.
    pods: BTreeMap<(String, String), Value>,
    /// Every change: version, event type, object.
    history: Vec<(u64, &'static str, Value)>,
    watches: Vec<Watch>,
    /// Requests as they came (path and query).
    requests: Vec<String>,
    /// Requests still to refuse with 403.
    refuse: u32,
}

/// The running server; it stops with the test process.
pub struct ApiReplay {
    addr: SocketAddr,
    cluster: Arc<Mutex<Cluster>>,
}

impl ApiReplay {
    /// Serves the pods of a recorded `kubectl get pods -A -o json` list on a loopback port.
    pub fn start(pods: &Path) -> ApiReplay {
        let list: Value = serde_json::from_slice(&std::fs::read(pods).expect("fixture"))
            .expect("fixture is JSON");
        let mut cluster = Cluster::default();
        for pod in list["items"].as_array().expect("items") {
            let v: u64 = pod["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            cluster.rv = cluster.rv.max(v);
            cluster.pods.insert(key(pod), pod.clone());
        }
        let cluster = Arc::new(Mutex::new(cluster));
        let app = Router::new()
            .route("/api/v1/pods", get(pods_handler))
            .fallback(|uri: Uri| async move {
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("the server could not find the requested resource ({uri})"),
                )
            })
            .with_state(cluster.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx.recv().expect("server address");
        ApiReplay { addr, cluster }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig that points at this server with a bearer token, as a user's would.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: replay\nclusters:\n- name: replay\n  \
             cluster:\n    server: {}\ncontexts:\n- name: replay\n  context:\n    cluster: replay\n    \
             user: tester\n    namespace: default\nusers:\n- name: tester\n  user:\n    token: replay-token\n",
            self.url()
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("replay state")
    }

    /// Adds or changes a pod: watches get ADDED or MODIFIED. Returns its resource version.
    pub fn put(&self, mut pod: Value) -> u64 {
        let mut c = self.cluster();
        c.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(c.rv.to_string());
        let kind = if c.pods.contains_key(&key(&pod)) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        c.pods.insert(key(&pod), pod.clone());
        c.publish(kind, pod);
        c.rv
    }

    /// Deletes a pod: watches get DELETED.
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut c = self.cluster();
        let mut pod = c
            .pods
            .remove(&(namespace.into(), name.into()))
            .expect("pod to delete");
        c.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(c.rv.to_string());
        c.publish("DELETED", pod);
    }

    /// Deletes a pod while no watch can see it: the change is compacted away with every
    /// version before it, so watches are told `410 Gone` and only a relist finds it gone.
    pub fn delete_unseen(&self, namespace: &str, name: &str) {
        let mut c = self.cluster();
        c.pods
            .remove(&(namespace.into(), name.into()))
            .expect("pod to delete");
        c.rv += 1;
        c.expired_before = c.rv;
        c.history.clear();
        let gone = status_json(410, "Expired", "too old resource version");
        for w in c.watches.drain(..) {
            let _ = w.tx.send(Some(line("ERROR", &gone)));
            let _ = w.tx.send(None);
        }
    }

    /// Sends a BOOKMARK at the current version to every watch; returns the version.
    pub fn bookmark(&self) -> u64 {
        let c = self.cluster();
        let mark = json!({"kind": "Pod", "apiVersion": "v1",
                          "metadata": {"resourceVersion": c.rv.to_string(),
                                       "annotations": {"k8s.io/initial-events-end": "true"}}});
        for w in &c.watches {
            let _ = w.tx.send(Some(line("BOOKMARK", &mark)));
        }
        c.rv
    }

    /// Ends every open watch connection, as a load balancer or a restarting API server does.
    pub fn drop_watches(&self) {
        for w in self.cluster().watches.drain(..) {
            let _ = w.tx.send(None);
        }
    }

    /// Answers the next `n` requests `403 Forbidden`, as a missing RBAC rule does.
    pub fn refuse_next(&self, n: u32) {
        self.cluster().refuse = n;
    }

    /// The requests so far, as path and query.
    pub fn requests(&self) -> Vec<String> {
        self.cluster().requests.clone()
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        let mut c = self.cluster();
        c.watches.retain(|w| !w.tx.is_closed());
        c.watches.len()
    }
}

impl Cluster {
    fn publish(&mut self, kind: &'static str, pod: Value) {
        let text = line(kind, &pod);
        let node = pod["spec"]["nodeName"].as_str().map(String::from);
        self.watches.retain(|w| {
            if w.node.is_some() && w.node != node {
                return true;
            }
            w.tx.send(Some(text.clone())).is_ok()
        });
        self.history.push((self.rv, kind, pod));
    }
}

fn key(pod: &Value) -> (String, String) {
    let m = &pod["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&m["namespace"]), s(&m["name"]))
}

fn line(kind: &str, object: &Value) -> String {
    format!("{}\n", json!({"type": kind, "object": object}))
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = status_json(code.as_u16(), reason, message).to_string();
    (code, [("content-type", "application/json")], body).into_response()
}

/// `GET /api/v1/pods`: a list, or with `watch=true` a stream of watch events.
async fn pods_handler(
    State(cluster): State<Arc<Mutex<Cluster>>>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = cluster.lock().expect("replay state");
    c.requests.push(uri.to_string());
    if c.refuse > 0 {
        c.refuse -= 1;
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:outflow:outflow-agent\" cannot list resource \"pods\" in API group \"\" at the cluster scope",
        );
    }
    let node = match q
        .get("fieldSelector")
        .map(|f| f.strip_prefix("spec.nodeName="))
    {
        None => None,
        Some(Some(n)) => Some(n.to_string()),
        Some(None) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "only spec.nodeName=NAME is replayed",
            )
        }
    };
    let on_node = |p: &Value| node.is_none() || p["spec"]["nodeName"].as_str() == node.as_deref();
    if q.get("watch").map(String::as_str) != Some("true") {
        let items: Vec<&Value> = c.pods.values().filter(|p| on_node(p)).collect();
        let list = json!({"kind": "PodList", "apiVersion": "v1",
                          "metadata": {"resourceVersion": c.rv.to_string()}, "items": items});
        return ([("content-type", "application/json")], list.to_string()).into_response();
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(c.rv);
    let (tx, mut rx) = mpsc::unbounded_channel();
    if from < c.expired_before {
        let gone = status_json(
            410,
            "Expired",
            &format!("too old resource version: {from} ({})", c.expired_before),
        );
        let _ = tx.send(Some(line("ERROR", &gone)));
        let _ = tx.send(None);
    } else {
        for (_, kind, pod) in c.history.iter().filter(|(v, _, p)| *v > from && on_node(p)) {
            let _ = tx.send(Some(line(kind, pod)));
        }
        c.watches.push(Watch { node, tx });
    }
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|m| m.flatten().map(Ok::<_, Infallible>))
    });
    (
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A pod of a recorded list, renamed and readdressed: a new pod of the same workload, as a
/// rollout or a rescheduled pod brings.
pub fn pod_like(pods: &Path, template: &str, name: &str, uid: &str, addr: &str) -> Value {
    let list: Value =
        serde_json::from_slice(&std::fs::read(pods).expect("fixture")).expect("fixture is JSON");
    let mut pod = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["metadata"]["name"] == template)
        .unwrap_or_else(|| panic!("no pod {template} in {}", pods.display()))
        .clone();
    pod["metadata"]["name"] = name.into();
    pod["metadata"]["uid"] = uid.into();
    pod["metadata"]["creationTimestamp"] = "2026-12-06T08:00:00Z".into();
    pod["status"]["podIP"] = addr.into();
    pod["status"]["podIPs"] = json!([{ "ip": addr }]);
    pod
}
