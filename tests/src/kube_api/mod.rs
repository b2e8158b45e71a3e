//! An API replay server: the Kubernetes API's list and watch protocol over HTTP, serving
//! recorded objects (Pods, Services, Nodes, EndpointSlices), Secrets to get and create,
//! TokenReviews of the tokens a test issues, and the service proxy subresource, so the real kube
//! client and watcher can be tested without a cluster.
//!
//! The test moves the cluster on (objects added, changed, deleted), sends bookmarks, expires
//! resource versions (a watch then gets `410 Gone` and the client must relist), drops
//! connections and refuses requests, and reads back what the client asked for.

mod proxy;
mod token_review;

pub use token_review::PodToken;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as AxumPath, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The collections the replay serves, by the kind of their objects.
const RESOURCES: &[(&str, &str, &str)] = &[
    // kind, collection path, list kind
    ("Pod", "/api/v1/pods", "PodList"),
    ("Service", "/api/v1/services", "ServiceList"),
    ("Node", "/api/v1/nodes", "NodeList"),
    (
        "EndpointSlice",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSliceList",
    ),
    (
        "ServiceCIDR",
        "/apis/networking.k8s.io/v1/servicecidrs",
        "ServiceCIDRList",
    ),
];

/// One open watch: its kind, node filter and where its events go (`None` ends it).
struct Watch {
    kind: &'static str,
    node: Option<String>,
    tx: mpsc::UnboundedSender<Option<String>>,
}

/// An object's identity: kind, namespace, name.
type Key = (String, String, String);

#[derive(Default)]
pub(crate) struct Cluster {
    /// The latest resource version.
    rv: u64,
    /// Watches from before this version are answered `410 Gone`.
    expired_before: u64,
    /// Every object, Secrets included.
    objects: BTreeMap<Key, Value>,
    /// Every change: version, event type, object.
    history: Vec<(u64, &'static str, Value)>,
    watches: Vec<Watch>,
    /// Requests as they came (method, path and query).
    requests: Vec<String>,
    /// Requests still to refuse with 403.
    refuse: u32,
    /// Refuse only requests whose method and URI hold this; none: any request.
    refuse_only: Option<String>,
    /// Serve ServiceCIDRs, as an API server of Kubernetes 1.33 or later does; else `404`, as
    /// the recorded cluster's 1.31 does.
    serves_service_cidrs: bool,
    /// Services whose proxy subresource forwards to a backend: (namespace, name) → base URL.
    pub(crate) backends: BTreeMap<(String, String), String>,
    /// The tokens the API server accepts, by their text.
    tokens: BTreeMap<String, token_review::IssuedToken>,
    /// TokenReviews still to answer with `failing_code`.
    failing_reviews: u32,
    failing_code: u16,
}

/// The running server; it stops with the test process.
pub struct ApiReplay {
    addr: SocketAddr,
    cluster: Arc<Mutex<Cluster>>,
}

type Shared = Arc<Mutex<Cluster>>;

impl ApiReplay {
    /// Serves the objects of a recorded `kubectl get -A -o json` list on a loopback port.
    pub fn start(objects: &Path) -> ApiReplay {
        let cluster = Arc::new(Mutex::new(Cluster::default()));
        let mut app = Router::new();
        for (kind, path, list_kind) in RESOURCES {
            let (kind, list_kind) = (*kind, *list_kind);
            app = app.route(
                path,
                get(move |state, uri, query| collection(state, uri, query, kind, list_kind)),
            );
        }
        let app = app
            .route(
                "/api/v1/namespaces/{namespace}/secrets/{name}",
                get(get_secret).put(put_secret),
            )
            .route(
                "/api/v1/namespaces/{namespace}/secrets",
                post(create_secret),
            )
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(token_review::create),
            )
            .route(
                "/api/v1/namespaces/{namespace}/services/{service}/proxy",
                any(proxy::forward),
            )
            .route(
                "/api/v1/namespaces/{namespace}/services/{service}/proxy/{*rest}",
                any(proxy::forward),
            )
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
        let api = ApiReplay { addr, cluster };
        api.load(objects);
        api
    }

    /// Adds the objects of another recorded list (Services, Nodes, EndpointSlices, Secrets).
    pub fn load(&self, objects: &Path) {
        let list: Value = serde_json::from_slice(&std::fs::read(objects).expect("fixture"))
            .expect("fixture is JSON");
        let mut c = self.cluster();
        for object in list["items"].as_array().expect("items") {
            let v: u64 = object["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            c.rv = c.rv.max(v);
            c.objects.insert(key(object), object.clone());
        }
    }

    /// Answers as an API server of Kubernetes 1.33 or later: ServiceCIDRs are served (before,
    /// they are `404`, as on the recorded cluster's 1.31).
    pub fn serve_service_cidrs(&self) {
        self.cluster().serves_service_cidrs = true;
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

    /// Adds or changes an object: watches get ADDED or MODIFIED. Returns its resource version.
    pub fn put(&self, object: Value) -> u64 {
        self.cluster().put(object).0
    }

    /// Deletes a pod: watches get DELETED.
    pub fn delete(&self, namespace: &str, name: &str) {
        self.delete_object("Pod", namespace, name);
    }

    /// Deletes an object of `kind` (namespace "" for Nodes): watches get DELETED.
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        let mut c = self.cluster();
        let mut object = c
            .objects
            .remove(&(kind.into(), namespace.into(), name.into()))
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to delete"));
        c.rv += 1;
        object["metadata"]["resourceVersion"] = json!(c.rv.to_string());
        c.publish("DELETED", object);
    }

    /// Deletes a pod while no watch can see it: the change is compacted away with every
    /// version before it, so watches are told `410 Gone` and only a relist finds it gone.
    pub fn delete_unseen(&self, namespace: &str, name: &str) {
        self.delete_unseen_object("Pod", namespace, name);
    }

    /// [`ApiReplay::delete_unseen`] for an object of any kind.
    pub fn delete_unseen_object(&self, kind: &str, namespace: &str, name: &str) {
        let mut c = self.cluster();
        c.objects
            .remove(&(kind.into(), namespace.into(), name.into()))
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to delete"));
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
        for w in &c.watches {
            let mark = json!({"kind": w.kind, "apiVersion": api_version(w.kind),
                              "metadata": {"resourceVersion": c.rv.to_string(),
                                           "annotations": {"k8s.io/initial-events-end": "true"}}});
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
        let mut c = self.cluster();
        c.refuse = n;
        c.refuse_only = None;
    }

    /// Answers the next `n` requests whose method and URI hold `request` (`GET /api/v1/…`)
    /// `403 Forbidden`, leaving other clients of the same server (a controller's watches)
    /// answered.
    pub fn refuse_next_matching(&self, n: u32, request: &str) {
        let mut c = self.cluster();
        c.refuse = n;
        c.refuse_only = Some(request.to_string());
    }

    /// The requests so far, as method, path and query (`GET /api/v1/pods?watch=true…`).
    pub fn requests(&self) -> Vec<String> {
        self.cluster().requests.clone()
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        let mut c = self.cluster();
        c.watches.retain(|w| !w.tx.is_closed());
        c.watches.len()
    }

    /// Makes `namespace/service`'s proxy subresource forward to `backend` (a base URL), as the
    /// API server forwards to the service's endpoints.
    pub fn proxy(&self, namespace: &str, service: &str, backend: &str) {
        self.cluster().backends.insert(
            (namespace.into(), service.into()),
            backend.trim_end_matches('/').into(),
        );
    }

    /// A Secret as stored now.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.cluster()
            .objects
            .get(&("Secret".into(), namespace.into(), name.into()))
            .cloned()
    }
}

impl Cluster {
    /// Stores an object at a new version and tells the watches; returns the version and
    /// whether it was new.
    fn put(&mut self, mut object: Value) -> (u64, bool) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let new = !self.objects.contains_key(&key(&object));
        self.objects.insert(key(&object), object.clone());
        self.publish(if new { "ADDED" } else { "MODIFIED" }, object);
        (self.rv, new)
    }

    fn publish(&mut self, event: &'static str, object: Value) {
        let text = line(event, &object);
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let node = object["spec"]["nodeName"].as_str().map(String::from);
        self.watches.retain(|w| {
            if w.kind != kind || (w.node.is_some() && w.node != node) {
                return true;
            }
            w.tx.send(Some(text.clone())).is_ok()
        });
        self.history.push((self.rv, event, object));
    }

    /// Records a request; answers 403 instead when refusals are due.
    pub(crate) fn admit(&mut self, method: &str, uri: &Uri, who: &str) -> Option<Response> {
        let request = format!("{method} {uri}");
        let matches = self
            .refuse_only
            .as_ref()
            .is_none_or(|only| request.contains(only.as_str()));
        self.requests.push(request);
        if self.refuse == 0 || !matches {
            return None;
        }
        self.refuse -= 1;
        Some(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("{who} is forbidden: User \"replay-user\" cannot do that (RBAC)"),
        ))
    }
}

fn key(object: &Value) -> Key {
    let m = &object["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&object["kind"]), s(&m["namespace"]), s(&m["name"]))
}

fn api_version(kind: &str) -> &'static str {
    if kind == "EndpointSlice" {
        "discovery.k8s.io/v1"
    } else if kind == "ServiceCIDR" {
        "networking.k8s.io/v1"
    } else {
        "v1"
    }
}

fn line(event: &str, object: &Value) -> String {
    format!("{}\n", json!({"type": event, "object": object}))
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub(crate) fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = status_json(code.as_u16(), reason, message).to_string();
    (code, [("content-type", "application/json")], body).into_response()
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

/// `GET` a collection: a list, or with `watch=true` a stream of watch events.
async fn collection(
    State(cluster): State<Shared>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    kind: &'static str,
    list_kind: &'static str,
) -> Response {
    let mut c = cluster.lock().expect("replay state");
    if let Some(refused) = c.admit("GET", &uri, list_kind) {
        return refused;
    }
    if kind == "ServiceCIDR" && !c.serves_service_cidrs {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let node = match q
        .get("fieldSelector")
        .map(|f| f.strip_prefix("spec.nodeName="))
    {
        None => None,
        Some(Some(n)) if kind == "Pod" => Some(n.to_string()),
        Some(_) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "only spec.nodeName=NAME on pods is replayed",
            )
        }
    };
    let wanted = |o: &Value| {
        o["kind"] == kind && (node.is_none() || o["spec"]["nodeName"].as_str() == node.as_deref())
    };
    if q.get("watch").map(String::as_str) != Some("true") {
        let items: Vec<&Value> = c.objects.values().filter(|o| wanted(o)).collect();
        let list = json!({"kind": list_kind, "apiVersion": api_version(kind),
                          "metadata": {"resourceVersion": c.rv.to_string()}, "items": items});
        return json_response(StatusCode::OK, &list);
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
        for (_, event, o) in c.history.iter().filter(|(v, _, o)| *v > from && wanted(o)) {
            let _ = tx.send(Some(line(event, o)));
        }
        c.watches.push(Watch { kind, node, tx });
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

/// `GET /api/v1/namespaces/NS/secrets/NAME`.
async fn get_secret(
    State(cluster): State<Shared>,
    uri: Uri,
    AxumPath((namespace, name)): AxumPath<(String, String)>,
) -> Response {
    let mut c = cluster.lock().expect("replay state");
    if let Some(refused) = c.admit("GET", &uri, "secrets") {
        return refused;
    }
    match c.objects.get(&("Secret".into(), namespace, name.clone())) {
        Some(s) => json_response(StatusCode::OK, s),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
        ),
    }
}

/// `POST /api/v1/namespaces/NS/secrets`: 409 when it exists, as the API server answers.
async fn create_secret(
    State(cluster): State<Shared>,
    uri: Uri,
    AxumPath(namespace): AxumPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut c = cluster.lock().expect("replay state");
    if let Some(refused) = c.admit("POST", &uri, "secrets") {
        return refused;
    }
    let Ok(mut secret) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    secret["metadata"]["namespace"] = json!(namespace);
    secret["kind"] = json!("Secret");
    secret["apiVersion"] = json!("v1");
    if c.objects.contains_key(&key(&secret)) {
        let name = secret["metadata"]["name"].as_str().unwrap_or_default();
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
        );
    }
    // The API server keeps `data` base64 and turns `stringData` into it.
    if let Some(plain) = secret
        .as_object_mut()
        .and_then(|o| o.remove("stringData"))
        .and_then(|d| d.as_object().cloned())
    {
        for (k, v) in plain {
            let b64 = BASE64.encode(v.as_str().unwrap_or_default());
            secret["data"][k] = json!(b64);
        }
    }
    secret["metadata"]["uid"] = json!(format!("secret-uid-{}", c.rv + 1));
    c.put(secret.clone());
    let stored = c.objects.get(&key(&secret)).cloned().unwrap_or(secret);
    json_response(StatusCode::CREATED, &stored)
}

/// `PUT /api/v1/namespaces/NS/secrets/NAME`: replaces it.
async fn put_secret(
    State(cluster): State<Shared>,
    uri: Uri,
    AxumPath((namespace, _name)): AxumPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let mut c = cluster.lock().expect("replay state");
    if let Some(refused) = c.admit("PUT", &uri, "secrets") {
        return refused;
    }
    let Ok(mut secret) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    secret["metadata"]["namespace"] = json!(namespace);
    c.put(secret.clone());
    json_response(StatusCode::OK, &secret)
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
