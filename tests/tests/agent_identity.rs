//! Agents' identity through the real kube client against the API replay server: a TokenReview
//! names the node of the pod a token is bound to, and the controller takes an agent's report
//! only as that node, reviews a token once for many reports, and answers 503 with Retry-After
//! while the API server cannot review.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use outflow_controller::api::{AgentAuth, ReviewToken, TokenReviews};
use outflow_controller::{app, AppState, Store};
use outflow_core::wire::NodeReport;
use outflow_kube::{ClusterAccess, TokenReviewError, TokenReviewer};
use outflow_tests::kube_api::{ApiReplay, PodToken};
use tower::ServiceExt;

const AGENT_SA: (&str, &str) = ("outflow", "outflow-agent");
const SHARED: &str = "people-token-0123456789";

/// A replay server with the agent pods' tokens of two nodes, an agent token of a cluster
/// before 1.30 (no node named), one of another service account and one for another audience.
fn replay(test: &str) -> (ApiReplay, PathBuf) {
    let fixtures = outflow_tests::root().join("tests/fixtures/kube");
    let api = ApiReplay::start(&fixtures.join("pods.json"));
    let dir = std::env::temp_dir().join(format!("outflow-identity-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let agent = |token, pod, node| PodToken {
        token,
        service_account: AGENT_SA,
        pod,
        node,
        audiences: &["outflow"],
    };
    api.issue_pod_token(agent(
        "tok-node-1",
        "outflow-agent-4xk2p",
        Some("aks-np1-0"),
    ));
    api.issue_pod_token(agent(
        "tok-node-2",
        "outflow-agent-9qz7d",
        Some("aks-np1-1"),
    ));
    api.issue_pod_token(agent("tok-1.29", "outflow-agent-m2n8c", None));
    api.issue_pod_token(PodToken {
        service_account: ("shop", "web"),
        ..agent("tok-shop-web", "web-7d9f6c-abcde", Some("aks-np1-0"))
    });
    api.issue_pod_token(PodToken {
        audiences: &["https://kubernetes.default.svc.cluster.local"],
        ..agent("tok-api-audience", "outflow-agent-4xk2p", Some("aks-np1-0"))
    });
    (api, dir)
}

fn reviewer(kubeconfig: &Path) -> TokenReviewer {
    TokenReviewer::new(
        &ClusterAccess::Kubeconfig(kubeconfig.to_path_buf()),
        "outflow",
    )
    .expect("reviewer")
}

/// The controller's review function, as `outflow controller` wires it.
fn review_fn(reviewer: TokenReviewer) -> ReviewToken {
    Arc::new(move |token| {
        let review = reviewer.review(token);
        Box::pin(async move { review.await.map_err(Into::into) })
    })
}

fn controller(reviewer: TokenReviewer) -> Router {
    let store = Store::open(Path::new(":memory:"), u64::MAX).expect("store");
    let reviews = TokenReviews::new(review_fn(reviewer), "outflow", AGENT_SA.0, AGENT_SA.1);
    app(AppState::new(store)
        .with_token(Some(SHARED.into()))
        .with_agent_auth(AgentAuth::TokenReview(reviews)))
}

/// The replay server and a controller reviewing through it.
fn started(test: &str) -> (ApiReplay, PathBuf, Router) {
    let (api, dir) = replay(test);
    let app = controller(reviewer(&api.kubeconfig(&dir)));
    (api, dir, app)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn report(node: &str) -> Request<Body> {
    let now = now_ns();
    let body = serde_json::to_vec(&NodeReport::empty(node, (now - 1_000, now), "ebpf")).unwrap();
    Request::post("/api/v1/reports")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn bearer(mut req: Request<Body>, token: &str) -> Request<Body> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// Status, `Retry-After` and the error message.
async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    (
        status,
        after,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn a_review_names_the_pods_node_and_says_why_a_token_is_refused() {
    let (api, dir) = replay("kube");
    let r = reviewer(&api.kubeconfig(&dir));
    runtime().block_on(async {
        let ok = r.review("tok-node-1".into()).await.expect("reviewed");
        assert!(ok.authenticated);
        assert_eq!(ok.username, "system:serviceaccount:outflow:outflow-agent");
        assert_eq!(ok.audiences, ["outflow"]);
        assert_eq!(
            ok.extra["authentication.kubernetes.io/node-name"],
            ["aks-np1-0"]
        );
        assert_eq!(
            ok.extra["authentication.kubernetes.io/pod-name"],
            ["outflow-agent-4xk2p"]
        );
        let old = r.review("tok-1.29".into()).await.expect("reviewed");
        assert!(
            old.authenticated
                && !old
                    .extra
                    .contains_key("authentication.kubernetes.io/node-name")
        );
        for (token, says) in [
            ("forged", "invalid bearer token"),
            ("tok-api-audience", "invalid for the target audiences"),
        ] {
            let no = r.review(token.into()).await.expect("reviewed");
            assert!(!no.authenticated, "{token}");
            assert!(
                no.error.as_deref().unwrap_or_default().contains(says),
                "{token}: {no:?}"
            );
        }
        api.expire_token("tok-node-2");
        let expired = r.review("tok-node-2".into()).await.expect("reviewed");
        assert!(expired.error.unwrap().contains("expired"));
        // Not a review: the API server failing, or refusing this controller.
        api.fail_token_reviews(1, 503);
        assert!(matches!(
            r.review("tok-node-1".into()).await,
            Err(TokenReviewError::Api(_))
        ));
        api.refuse_next_matching(1, "tokenreviews");
        let forbidden = r.review("tok-node-1".into()).await.unwrap_err();
        assert!(
            matches!(forbidden, TokenReviewError::Forbidden(_)),
            "{forbidden:?}"
        );
        assert!(forbidden.to_string().contains("rbac.yaml"), "{forbidden}");
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_agent_writes_as_its_own_node_only() {
    let (_api, dir, app) = started("own-node");
    runtime().block_on(async {
        let (status, _, err) = call(&app, bearer(report("aks-np1-0"), "tok-node-1")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
        let (status, _, err) = call(&app, bearer(report("aks-np1-1"), "tok-node-1")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            err.contains("\"aks-np1-0\"") && err.contains("\"aks-np1-1\""),
            "{err}"
        );
        let (status, _, err) = call(&app, bearer(report("aks-np1-1"), "tok-node-2")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
        // Not the agents' service account, or no node named: a real token, but not an agent's.
        for (token, says) in [("tok-shop-web", "shop:web"), ("tok-1.29", "1.30")] {
            let (status, _, err) = call(&app, bearer(report("aks-np1-0"), token)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{token}");
            assert!(err.contains(says), "{token}: {err}");
        }
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_wrong_or_expired_token_is_401() {
    let (api, dir, app) = started("wrong");
    api.expire_token("tok-node-2");
    runtime().block_on(async {
        for (token, says) in [
            ("forged", "invalid bearer token"),
            ("tok-node-2", "expired"),
            ("tok-api-audience", "invalid for the target audiences"),
        ] {
            let (status, _, err) = call(&app, bearer(report("aks-np1-1"), token)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {err}");
            assert!(err.contains(says), "{token}: {err}");
        }
        let (status, _, _) = call(&app, report("aks-np1-1")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no token at all");
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn many_reports_cost_one_review() {
    let (api, dir, app) = started("cache");
    runtime().block_on(async {
        let sends = (0..100).map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                call(&app, bearer(report("aks-np1-0"), "tok-node-1"))
                    .await
                    .0
            })
        });
        for s in sends {
            assert_eq!(s.await.unwrap(), StatusCode::NO_CONTENT);
        }
        assert_eq!(api.token_reviews(), 1, "{:?}", api.requests());
        let resp = app
            .clone()
            .oneshot(bearer(
                Request::get("/metrics").body(Body::empty()).unwrap(),
                SHARED,
            ))
            .await
            .unwrap();
        let text = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            text.contains("outflow_agent_token_reviews_total{result=\"authenticated\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("outflow_agent_token_review_cache_hits_total 99"),
            "{text}"
        );
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn while_the_api_server_is_down_agents_are_told_to_come_back() {
    let (api, dir, app) = started("down");
    runtime().block_on(async {
        for code in [503, 500] {
            api.fail_token_reviews(1, code);
            let (status, after, err) = call(&app, bearer(report("aks-np1-0"), "tok-node-1")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{code}: {err}");
            assert_eq!(after.as_deref(), Some("5"));
            assert!(err.contains("cannot review"), "{err}");
        }
        // A failed review is not kept: the next report is reviewed and stored.
        let (status, _, err) = call(&app, bearer(report("aks-np1-0"), "tok-node-1")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
    });
    // No API server at all: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = dir.join("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let dead = dir.join("kubeconfig-dead");
    std::fs::write(
        &dead,
        text.replace(&api.url(), &format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let app = controller(reviewer(&dead));
    runtime().block_on(async {
        let (status, after, err) = call(&app, bearer(report("aks-np1-0"), "tok-node-1")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
        assert!(after.is_some());
    });
    std::fs::remove_dir_all(dir).unwrap();
}
