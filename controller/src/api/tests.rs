//! The API called in-process: what agents post is what readers get, and bad requests are 4xx
//! that say what was wrong.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use outflow_core::report::ConnectionRecord;
use outflow_core::wire::{NodePod, NodeReport, PodLink, Scope, Scoped};
use outflow_core::Category;
use outflow_core::Outcome;
use tower::ServiceExt;

use super::*;
use crate::store::Store;

pub(super) fn state() -> AppState {
    AppState::new(Store::open(Path::new(":memory:"), u64::MAX).expect("in-memory store"))
}

pub(super) fn connection(
    pod: &str,
    dst: &str,
    outcome: Outcome,
    category: Category,
) -> Scoped<ConnectionRecord> {
    let now = now_ns();
    Scoped {
        scope: Scope {
            pod: Some(pod.to_string()),
            namespace: Some("default".to_string()),
            node: "node-1".to_string(),
            window_start: outflow_core::report::rfc3339(now - 1),
            window_end: outflow_core::report::rfc3339(now),
            ..Default::default()
        },
        record: ConnectionRecord {
            src: "10.244.1.10".parse().unwrap(),
            dst: dst.parse().unwrap(),
            dst_port: 443,
            proto: "tcp".into(),
            category,
            label: None,
            destination: None,
            egress: None,
            outcomes: BTreeMap::from([(outcome, 2)]),
            unreachable_codes: BTreeMap::new(),
            icmp_from: vec![],
            syn_retransmissions: 0,
            handshake_ms: None,
            packets_out: 2,
            packets_in: 0,
            bytes_out: 120,
            bytes_in: 0,
            names: vec![],
            http_statuses: BTreeMap::new(),
            proxy_connects: vec![],
            tunnel: None,
            first_seen: String::new(),
            last_seen: String::new(),
            ingress_iface: None,
        },
    }
}

pub(super) fn report(connections: Vec<Scoped<ConnectionRecord>>) -> NodeReport {
    let now = now_ns();
    NodeReport {
        connections,
        ..NodeReport::empty("node-1", (now - 1_000, now), "ebpf")
    }
}

fn node_pod(name: &str, ip: &str) -> NodePod {
    NodePod {
        namespace: "default".into(),
        pod: name.into(),
        addresses: vec![ip.parse().unwrap()],
        interfaces: vec![PodLink {
            name: format!("veth-{name}"),
            attached_ns: Some(now_ns() - 5_000),
        }],
        ..Default::default()
    }
}

/// A pod that never spoke is still on its node: listed in health as idle, and a capture of it
/// goes to that node.
#[tokio::test]
async fn a_silent_pod_is_known_by_its_nodes_pod_list() {
    let (state, _dir) = with_captures("silent");
    let app = app(state);
    let mut r = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Established,
        Category::Public,
    )]);
    r.pods = vec![
        node_pod("web", "10.244.1.5"),
        node_pod("quiet", "10.244.1.6"),
    ];
    let (status, body) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (_, health) = call(&app, get("/api/v1/health")).await;
    let pods = health["nodes"][0]["pods"].as_array().expect("pods").clone();
    let names: Vec<_> = pods.iter().map(|p| p["pod"].as_str().unwrap()).collect();
    assert_eq!(names, ["quiet", "web"]);
    assert_eq!(pods[0]["idle"], true, "{pods:?}");
    assert!(pods[0].get("last_traffic_ns").is_none());
    assert_eq!(pods[1]["idle"], false);
    assert_eq!(pods[1]["addresses"][0], "10.244.1.5");
    assert_eq!(pods[1]["interfaces"][0]["name"], "veth-web");
    assert!(pods[1]["interfaces"][0]["attached_ns"].is_u64());

    let (status, body) = call(
        &app,
        json_req("POST", "/api/v1/captures", r#"{"pod":"default/quiet"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["node"], "node-1");

    // The pod moves: the newest list that holds it wins, and the old node's list forgets it.
    let mut moved = report(vec![]);
    moved.node = "node-2".into();
    moved.pods = vec![node_pod("quiet", "10.244.2.6")];
    call(&app, post(serde_json::to_vec(&moved).unwrap())).await;
    let mut left = report(vec![]);
    left.pods = vec![node_pod("web", "10.244.1.5")];
    call(&app, post(serde_json::to_vec(&left).unwrap())).await;
    let (_, body) = call(
        &app,
        json_req("POST", "/api/v1/captures", r#"{"pod":"default/quiet"}"#),
    )
    .await;
    assert_eq!(body["node"], "node-2", "{body}");
}

#[tokio::test]
async fn a_pod_list_beyond_kubernetes_limits_is_refused_and_nothing_is_stored() {
    let app = app(state());
    let mut r = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Established,
        Category::Public,
    )]);
    r.pods = vec![node_pod(&"x".repeat(254), "10.244.1.5")];
    let (status, body) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("a pod name 1 to 253"),
        "{body}"
    );
    r.pods = (0..5_001)
        .map(|i| node_pod(&format!("p{i}"), "10.244.1.5"))
        .collect();
    let (status, body) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("at most 5000"),
        "{body}"
    );
    let (_, rows) = call(&app, get("/api/v1/connections")).await;
    assert_eq!(
        rows.as_array().unwrap().len(),
        0,
        "refused reports leave nothing"
    );
}

#[tokio::test]
async fn readyz_answers_by_its_check_and_says_why_not() {
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ready.clone();
    let app = app(state().with_ready_check(Arc::new(move || {
        if flag.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err("the datapath is not attached yet".into())
        }
    })));
    let (status, body) = text(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: the datapath is not attached yet\n");
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        text(&app, get("/readyz")).await,
        (StatusCode::OK, "ready\n".to_string())
    );
    assert_eq!(text(&app, get("/healthz")).await.0, StatusCode::OK);
}

pub(super) async fn call(app: &Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

pub(super) fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/api/v1/reports")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

pub(super) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_posted_report_is_served_filtered_by_pod_category_and_outcome() {
    let app = app(state());
    let r = report(vec![
        connection("web", "203.0.113.7", Outcome::Unanswered, Category::Public),
        connection("web", "10.0.0.10", Outcome::Established, Category::Internal),
        connection("db", "203.0.113.8", Outcome::Refused, Category::Public),
    ]);
    let (status, _) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, rows) = call(
        &app,
        get("/api/v1/connections?pod=default/web&outcome=unanswered"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows.as_array().expect("array").clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["pod"], "web");
    assert_eq!(rows[0]["namespace"], "default");
    assert_eq!(rows[0]["node"], "node-1");
    assert_eq!(rows[0]["dst"], "203.0.113.7");
    assert_eq!(rows[0]["category"], "public");
    assert_eq!(rows[0]["outcomes"]["unanswered"], 2);
    assert!(rows[0]["window_end"].is_string());

    let (_, rows) = call(&app, get("/api/v1/connections?category=public")).await;
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let (_, rows) = call(&app, get("/api/v1/connections?pod=web&namespace=default")).await;
    assert_eq!(rows.as_array().unwrap().len(), 2, "-n with a bare pod name");
    let (_, rows) = call(&app, get("/api/v1/connections?pod=other/web")).await;
    assert_eq!(
        rows.as_array().unwrap().len(),
        0,
        "the pod's own namespace wins"
    );
    let (_, health) = call(&app, get("/api/v1/health")).await;
    assert_eq!(health["nodes"][0]["node"], "node-1");
    assert_eq!(health["nodes"][0]["datapath"]["kind"], "ebpf");
}

#[tokio::test]
async fn hostile_requests_get_a_400_that_says_what_was_wrong_and_nothing_is_stored() {
    let app = app(state());
    let (status, body) = call(&app, post("{\"node\": 5")).await;
    assert!(status.is_client_error(), "{status}");
    assert!(
        body["error"].as_str().unwrap().starts_with("report:"),
        "{body}"
    );

    let mut inverted = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Unanswered,
        Category::Public,
    )]);
    inverted.window_start_ns = inverted.window_end_ns + 1;
    let (status, body) = call(&app, post(serde_json::to_vec(&inverted).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("before"), "{body}");

    // An outcome the contract does not have is refused by name, not stored as a new one.
    let mut bogus = serde_json::to_value(report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Unanswered,
        Category::Public,
    )]))
    .unwrap();
    bogus["connections"][0]["outcomes"] = serde_json::json!({"exploded": 1});
    let (status, body) = call(&app, post(serde_json::to_vec(&bogus).unwrap())).await;
    assert!(status.is_client_error(), "{status}");
    assert!(
        body["error"].as_str().unwrap().contains("exploded"),
        "{body}"
    );

    let mut nameless = report(vec![]);
    nameless.node = String::new();
    let (status, _) = call(&app, post(serde_json::to_vec(&nameless).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let huge = vec![b' '; MAX_REPORT_BYTES + 1];
    let (status, _) = call(&app, post(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, body) = call(&app, get("/api/v1/connections?category=galactic")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("galactic"),
        "{body}"
    );
    let (status, _) = call(&app, get("/api/v1/connections?podd=web")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an unknown parameter is a mistake, not ignored"
    );
    let (status, _) = call(&app, get("/api/v1/dns?since=-5")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&app, get("/api/v1/dns?pod=x'OR'1'='1'--")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "parameters are bound, never spliced into SQL"
    );

    // Issue 17: filters that can match nothing, or everything, are refused with the grammar.
    for (uri, words) in [
        ("/api/v1/connections?outcome=establ", "established, refused"),
        ("/api/v1/connections?outcome=%25", "established, refused"),
        (
            "/api/v1/findings?outcome=unanswered",
            "error, warning, info",
        ),
        ("/api/v1/dns?outcome=refusedd", "nxdomain"),
        ("/api/v1/connections?pod=a/b/c", "NAMESPACE/NAME"),
        ("/api/v1/dns?pod=shop/", "NAMESPACE/NAME"),
        ("/api/v1/dns?category=public", "no destination category"),
    ] {
        let (status, body) = call(&app, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(words), "{uri}: {error}");
    }

    let (_, rows) = call(&app, get("/api/v1/connections")).await;
    assert_eq!(
        rows.as_array().unwrap().len(),
        0,
        "no rejected report was stored"
    );
}

/// The nodes `/api/v1/health` lists, by name.
pub(super) fn node_names(health: &serde_json::Value) -> Vec<&str> {
    health["nodes"]
        .as_array()
        .expect("health lists nodes")
        .iter()
        .map(|n| n["node"].as_str().expect("a node's name"))
        .collect()
}

pub(super) async fn text(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub(super) fn with_token(mut req: Request<Body>, token: &str) -> Request<Body> {
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    req
}

#[tokio::test]
async fn with_a_token_set_the_api_and_metrics_refuse_callers_without_it() {
    let app = app(state().with_token(Some("s3cret".into())));
    let body = serde_json::to_vec(&report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Unanswered,
        Category::Public,
    )]))
    .unwrap();
    let (status, err) = call(&app, post(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(err["error"].as_str().unwrap().contains("Bearer"), "{err}");
    let (status, _) = call(&app, with_token(post(body.clone()), "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&app, with_token(post(body), "s3cret")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for uri in ["/api/v1/connections", "/api/v1/health", "/metrics"] {
        let (status, _) = call(&app, get(uri)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, rows) = call(&app, with_token(get("/api/v1/connections"), "s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    // The page and the liveness probe hold no data.
    let (status, page) = text(&app, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/api/v1/"), "the page reads the API");
    assert_eq!(text(&app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(text(&app, get("/readyz")).await.0, StatusCode::OK);
}

/// Found by schemathesis: counters that overflow SQLite's i64 when added up made every later
/// `GET /api/v1/health` a 500.
#[tokio::test]
async fn health_saturates_loss_totals_that_overflow_instead_of_failing() {
    let app = app(state());
    for drops in [u64::MAX, i64::MAX as u64, 5] {
        let mut r = report(vec![]);
        r.datapath.event_drops = drops;
        r.capture.undecodable = drops;
        let (status, _) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, health) = call(&app, get("/api/v1/health")).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let totals = &health["nodes"][0]["totals"];
    assert_eq!(totals["event_drops"], u64::MAX, "{health}");
    assert_eq!(totals["undecodable"], u64::MAX, "{health}");
    assert_eq!(totals["flows_evicted"], 0, "{health}");
}

#[tokio::test]
async fn metrics_count_attempts_per_pod_category_and_outcome_and_the_datapath_losses() {
    let app = app(state());
    let mut r = report(vec![
        connection("web", "203.0.113.7", Outcome::Unanswered, Category::Public),
        connection("web", "203.0.113.8", Outcome::Unanswered, Category::Public),
    ]);
    r.datapath.event_drops = 7;
    r.datapath.reports_dropped = 3;
    r.datapath.attribution_mismatches = 1;
    for _ in 0..2 {
        let (status, _) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, m) = text(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let value = |prefix: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(
        value(
            r#"outflow_connection_attempts_total{node="",namespace="default",pod="",category="public",outcome="unanswered"}"#
        ),
        Some(8.0),
        "2 reports × 2 groups × 2 attempts, per namespace:\n{m}"
    );
    let by_pod = super::app(state().with_pod_metrics());
    call(&by_pod, post(serde_json::to_vec(&r).unwrap())).await;
    let (_, m) = text(&by_pod, get("/metrics")).await;
    assert!(
        m.contains(r#"outflow_connection_attempts_total{node="node-1",namespace="default",pod="web",category="public",outcome="unanswered"} 4"#),
        "with pod labels asked for:\n{m}"
    );
    assert_eq!(
        value(r#"outflow_reports_total{node="node-1"}"#),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        value(r#"outflow_datapath_event_drops_total{node="node-1"}"#),
        Some(14.0),
        "{m}"
    );
    assert_eq!(
        value(r#"outflow_agent_reports_dropped_total{node="node-1"}"#),
        Some(6.0),
        "{m}"
    );
    let (_, health) = call(&app, get("/api/v1/health")).await;
    assert_eq!(health["nodes"][0]["totals"]["event_drops"], 14, "{health}");
    assert_eq!(
        health["nodes"][0]["totals"]["reports_dropped"], 6,
        "{health}"
    );
    assert_eq!(
        health["nodes"][0]["totals"]["attribution_mismatches"], 2,
        "{health}"
    );
}

fn with_captures(name: &str) -> (AppState, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "outflow-api-captures-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let caps = crate::captures::Captures::open(&dir, u64::MAX).expect("captures");
    (state().with_captures(caps), dir)
}

fn json_req(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn capture_requests_are_checked_before_anything_starts() {
    let (state, dir) = with_captures("checks");
    let app = app(state);
    let (status, body) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/captures",
            r#"{"pod":"default/web","node":"n1","filter":"tcp port http80"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = body["error"].as_str().unwrap();
    assert!(
        e.starts_with("bad filter") && e.contains("http80"),
        "libpcap's message: {e}"
    );
    let (status, body) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/captures",
            r#"{"pod":"default/ghost","filter":""}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is on no node's pod list and has no records"),
        "{body}"
    );
    let (status, _) = call(
        &app,
        json_req("POST", "/api/v1/captures", r#"{"pod":"web"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a pod is NAMESPACE/NAME");
    let (status, _) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/captures",
            r#"{"pod":"default/web","node":"n1","path":"/etc/passwd"}"#,
        ),
    )
    .await;
    assert!(
        status.is_client_error(),
        "unknown fields are refused: {status}"
    );
    let (status, _) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/captures",
            r#"{"node":"n1","interface":"../../etc"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for uri in [
        "/api/v1/captures/..%2F..%2Fetc%2Fpasswd/pcapng",
        "/api/v1/captures/1e3",
        "/api/v1/captures/-1",
    ] {
        let (status, _) = call(&app, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
    }
    let (status, _) = call(&app, get("/api/v1/captures/99/pcapng")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_capture_is_found_by_its_pods_node_taken_by_that_agent_uploaded_and_downloaded_whole() {
    let (state, dir) = with_captures("flow");
    let app = app(state);
    // The pod's records say which node it is on.
    let r = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Unanswered,
        Category::Public,
    )]);
    call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    let (status, c) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/captures",
            r#"{"pod":"default/web","filter":"tcp","count":10}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(
        (c["node"].as_str(), c["state"].as_str()),
        (Some("node-1"), Some("pending"))
    );
    let id = c["id"].as_u64().unwrap();
    let (_, tasks) = call(&app, get("/api/v1/agent/captures?node=other")).await;
    assert_eq!(tasks, serde_json::json!([]));
    let (_, tasks) = call(&app, get("/api/v1/agent/captures?node=node-1")).await;
    assert_eq!(tasks[0]["id"], id, "{tasks}");
    assert_eq!(tasks[0]["filter"], "tcp");
    let pcapng = b"pretend this is a pcapng section".to_vec();
    let (status, _) = call(
        &app,
        Request::put(format!("/api/v1/captures/{id}/pcapng"))
            .body(Body::from(pcapng.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &app,
        json_req(
            "POST",
            &format!("/api/v1/captures/{id}/result"),
            r#"{"packets":3,"kernel_drops":1,"ended":"packet count reached"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = text(&app, get(&format!("/api/v1/captures/{id}/pcapng"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.as_bytes(),
        &pcapng[..],
        "the file as the agent sent it"
    );
    let (_, c) = call(&app, get(&format!("/api/v1/captures/{id}"))).await;
    assert_eq!(
        (
            c["state"].as_str(),
            c["packets"].as_u64(),
            c["kernel_drops"].as_u64()
        ),
        (Some("done"), Some(3), Some(1)),
        "{c}"
    );
    let (status, _) = call(
        &app,
        Request::put(format!("/api/v1/captures/{id}/pcapng"))
            .body(Body::from("more"))
            .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished capture takes no more data"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failure_inside_the_controller_is_a_500_that_keeps_its_cause_in_the_log() {
    let (state, dir) = with_captures("internal");
    let app = app(state);
    let (status, c) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/captures",
            r#"{"node":"n1","interface":"eth0"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let id = c["id"].as_u64().unwrap();
    call(&app, get("/api/v1/agent/captures?node=n1")).await;
    // The capture directory vanishes under the controller: the upload cannot be written.
    std::fs::remove_dir_all(&dir).expect("remove");
    let (status, body) = call(
        &app,
        Request::put(format!("/api/v1/captures/{id}/pcapng"))
            .body(Body::from(b"pcapng".to_vec()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let e = body["error"].as_str().expect("an error message");
    assert!(e.starts_with("internal error"), "{e}");
    let inside = dir.to_string_lossy();
    assert!(
        !e.contains(&*inside) && !e.contains("No such file"),
        "no path or OS message leaves the controller: {e}"
    );
}

#[test]
fn a_server_fault_keeps_what_it_was_doing_and_why_for_the_log() {
    let e = ApiError::internal(
        "storing a report",
        anyhow::anyhow!(std::io::Error::other("disk I/O error")).context("inserting records"),
    );
    assert_eq!(
        outflow_core::error_chain(&e),
        "internal error: storing a report: inserting records: disk I/O error"
    );
}

#[tokio::test]
async fn the_cluster_profile_is_served_only_where_a_cluster_is_watched() {
    let (status, body) = call(&app(state()), get(routes::CLUSTER_PROFILE)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("--kube")),
        "{body}"
    );
    let told = ClusterProfile {
        pod_cidrs: vec!["10.244.0.0/24".parse().unwrap()],
        cluster_dns: vec!["10.0.0.10".parse().unwrap()],
        ..ClusterProfile::default()
    };
    let served = told.clone();
    let app = app(state().with_cluster_profile(Arc::new(move || served.clone())));
    let (status, body) = call(&app, get(routes::CLUSTER_PROFILE)).await;
    assert_eq!(status, StatusCode::OK);
    let got: ClusterProfile = serde_json::from_value(body).expect("a cluster profile");
    assert_eq!(got, told);
}

fn state_keeping(retention_ns: u64) -> AppState {
    AppState::new(Store::open(Path::new(":memory:"), retention_ns).expect("in-memory store"))
}

async fn connection_rows(app: &Router) -> Vec<serde_json::Value> {
    let (status, rows) = call(app, get("/api/v1/connections?since=864000")).await;
    assert_eq!(status, StatusCode::OK);
    rows.as_array().expect("array").clone()
}

#[tokio::test]
async fn a_future_dated_report_is_refused_and_deletes_nothing() {
    const HOUR: u64 = 3_600_000_000_000;
    let state = state_keeping(24 * HOUR);
    let app = app(state.clone());
    let ok = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Established,
        Category::Public,
    )]);
    assert_eq!(
        call(&app, post(serde_json::to_vec(&ok).unwrap())).await.0,
        StatusCode::NO_CONTENT
    );
    // 48 h ahead: under the old rule its window moved the retention and emptied the store.
    let mut ahead = ok.clone();
    ahead.window_start_ns += 48 * HOUR;
    ahead.window_end_ns += 48 * HOUR;
    let (status, body) = call(&app, post(serde_json::to_vec(&ahead).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("clock")),
        "{body}"
    );
    let mut forever = ok.clone();
    forever.window_end_ns = i64::MAX as u64;
    assert_eq!(
        call(&app, post(serde_json::to_vec(&forever).unwrap()))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // Expiry runs by the controller's clock: the fresh record stays.
    state
        .store
        .lock()
        .unwrap()
        .expire(now_ns())
        .expect("expire");
    assert_eq!(connection_rows(&app).await.len(), 1);
    // A window older than the retention would be deleted at once: refused, saying why.
    let mut old = ok.clone();
    old.window_start_ns -= 25 * HOUR;
    old.window_end_ns -= 25 * HOUR;
    let (status, body) = call(&app, post(serde_json::to_vec(&old).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("retention")),
        "{body}"
    );
}

#[tokio::test]
async fn expiry_deletes_only_what_the_retention_has_passed() {
    const MINUTE: u64 = 60_000_000_000;
    let state = state_keeping(10 * MINUTE);
    let app = app(state.clone());
    let mut older = report(vec![connection(
        "old",
        "203.0.113.7",
        Outcome::Established,
        Category::Public,
    )]);
    older.window_start_ns -= 8 * MINUTE;
    older.window_end_ns -= 8 * MINUTE;
    let newer = report(vec![connection(
        "new",
        "203.0.113.7",
        Outcome::Established,
        Category::Public,
    )]);
    for r in [&older, &newer] {
        assert_eq!(
            call(&app, post(serde_json::to_vec(r).unwrap())).await.0,
            StatusCode::NO_CONTENT
        );
    }
    // Five minutes on, the older window is 13 minutes old: past the retention.
    let deleted = state
        .store
        .lock()
        .unwrap()
        .expire(now_ns() + 5 * MINUTE)
        .expect("expire");
    assert_eq!(deleted, 1);
    let rows = connection_rows(&app).await;
    let pods: Vec<&str> = rows.iter().filter_map(|r| r["pod"].as_str()).collect();
    assert_eq!(pods, ["new"]);
}

#[tokio::test]
async fn a_report_sent_again_is_stored_once() {
    let app = app(state());
    let mut r = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Unanswered,
        Category::Public,
    )]);
    r.report_id = Some("7f3a9c01d2e4b5a6-42".into());
    for _ in 0..3 {
        // The agent's retry after an answer it never got.
        assert_eq!(
            call(&app, post(serde_json::to_vec(&r).unwrap())).await.0,
            StatusCode::NO_CONTENT
        );
    }
    let rows = connection_rows(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (_, health) = call(&app, get("/api/v1/health")).await;
    assert_eq!(health["nodes"][0]["reports"], 1, "{health}");
    let (_, metrics) = text(&app, get("/metrics")).await;
    assert!(
        metrics.contains("outflow_reports_total{node=\"node-1\"} 1\n"),
        "{metrics}"
    );
    // The next report of the same agent is new; another node's with the same id is its own.
    r.report_id = Some("7f3a9c01d2e4b5a6-43".into());
    call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    r.node = "node-2".into();
    call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(connection_rows(&app).await.len(), 3);
}

#[tokio::test]
async fn records_are_filed_under_the_node_that_sent_them() {
    let app = app(state());
    let mut c = connection("web", "203.0.113.7", Outcome::Refused, Category::Public);
    c.scope.node = "someone-elses-node".into();
    let r = report(vec![c]);
    call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    let rows = connection_rows(&app).await;
    assert_eq!(rows[0]["node"], "node-1", "{rows:?}");
    let (_, none) = call(&app, get("/api/v1/connections?node=someone-elses-node")).await;
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
}

#[tokio::test]
async fn oversized_strings_from_an_agent_are_refused_and_never_become_labels() {
    let app = app(state());
    let mut c = connection("web", "203.0.113.7", Outcome::Refused, Category::Public);
    c.scope.pod = Some("p".repeat(1 << 20));
    let (status, body) = call(&app, post(serde_json::to_vec(&report(vec![c])).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("a record's pod") && e.contains("253")),
        "{body}"
    );
    let mut c = connection("web", "203.0.113.7", Outcome::Refused, Category::Public);
    c.record.names = (0..1000).map(|i| format!("n{i}.example")).collect();
    let (status, _) = call(&app, post(serde_json::to_vec(&report(vec![c])).unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(connection_rows(&app).await.is_empty());
    let (_, m) = text(&app, get("/metrics")).await;
    assert!(!m.contains("ppppp"), "{} bytes of metrics", m.len());
}

#[tokio::test]
async fn a_node_that_stopped_reporting_is_stale_in_health_and_metrics() {
    let app = app(state());
    let mut quiet = report(vec![]);
    quiet.node = "node-quiet".into();
    quiet.datapath.interval_ns = Some(10_000_000_000);
    // Its last window ended two minutes ago: twelve intervals without a report.
    quiet.window_start_ns -= 120_000_000_000;
    quiet.window_end_ns -= 120_000_000_000;
    let mut fresh = report(vec![]);
    fresh.datapath.interval_ns = Some(10_000_000_000);
    for r in [&quiet, &fresh] {
        assert_eq!(
            call(&app, post(serde_json::to_vec(r).unwrap())).await.0,
            StatusCode::NO_CONTENT
        );
    }
    let (_, health) = call(&app, get("/api/v1/health")).await;
    let stale: Vec<(&str, bool)> = health["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["stale"].as_bool().unwrap()))
        .collect();
    assert_eq!(stale, [("node-1", false), ("node-quiet", true)]);
    let (_, m) = text(&app, get("/metrics")).await;
    assert!(
        m.contains("outflow_node_stale{node=\"node-quiet\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("outflow_node_stale{node=\"node-1\"} 0\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ingest_refuses_at_once_with_retry_after_and_stores_nothing_of_it() {
    let state = state().with_ingest_limit(1);
    let app = app(state.clone());
    let first = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Established,
        Category::Public,
    )]);
    let mut second = first.clone();
    second.node = "node-2".into();
    // The store is busy (held by another thread): the first report takes the one slot and
    // waits on it.
    let (release_tx, holder) = super::tests_writer::hold_store(&state);
    let pending = tokio::spawn({
        let (app, body) = (app.clone(), serde_json::to_vec(&first).unwrap());
        async move { call(&app, post(body)).await.0 }
    });
    while state.ingest_slots.available_permits() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let resp = app
        .clone()
        .oneshot(post(serde_json::to_vec(&second).unwrap()))
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "held, not refused"
    );
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "2");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(pending.await.unwrap(), StatusCode::NO_CONTENT);
    let rows = connection_rows(&app).await;
    assert_eq!(rows.len(), 1, "the refused report was not stored: {rows:?}");
    // Sent again, as the agent does, it is stored.
    assert_eq!(
        call(&app, post(serde_json::to_vec(&second).unwrap()))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(connection_rows(&app).await.len(), 2);
    let (_, m) = text(&app, get("/metrics")).await;
    assert!(
        m.contains("outflow_reports_refused_overloaded_total 1\n"),
        "{m}"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn post_gzip(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/reports")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_gzip_report_is_stored_and_a_gzip_bomb_is_refused_by_its_decompressed_size() {
    let app = app(state());
    let r = report(
        (0..200)
            .map(|i| {
                connection(
                    &format!("web-{}", i % 30),
                    &format!("203.0.113.{}", i % 250),
                    Outcome::Established,
                    Category::Public,
                )
            })
            .collect(),
    );
    let json = serde_json::to_vec(&r).unwrap();
    let packed = gzip(&json);
    assert!(
        packed.len() * 8 < json.len(),
        "{} bytes of JSON gzip to {}",
        json.len(),
        packed.len()
    );
    assert_eq!(
        call(&app, post_gzip(packed)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(connection_rows(&app).await.len(), 200);
    // 64 MiB of zeros in 64 KiB: the limit is on what it unpacks to.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _) = call(&app, post_gzip(bomb)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Not gzip at all, though it says so.
    let (status, _) = call(&app, post_gzip(json)).await;
    assert!(status.is_client_error(), "{status}");
}
