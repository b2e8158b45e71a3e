//! The agent check called in-process: per-node tokens from a file bind each agent to its node,
//! the shared token keeps people's routes and loses the reports, and reviews are decided and
//! cached as the Kubernetes API answers them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use outflow_core::wire::identity::ReviewedToken;
use outflow_core::wire::NodeReport;

use super::*;
use crate::api::app;
use crate::api::tests::{call, get, node_names, post, report, state, text, with_token};

const SHARED: &str = "shared-token-for-people";
const NODE1: &str = "node-1-token-0123456789";
const NODE2: &str = "node-2-token-0123456789";

fn report_of(node: &str) -> Vec<u8> {
    let mut r: NodeReport = report(vec![]);
    r.node = node.into();
    serde_json::to_vec(&r).unwrap()
}

/// A controller with the shared token and per-node tokens for node-1 and node-2.
fn with_node_tokens(test: &str) -> (Router, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("outflow-auth-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agent-tokens");
    std::fs::write(&file, format!("node-1 {NODE1}\nnode-2 {NODE2}\n")).unwrap();
    let tokens = NodeTokens::open(&file, Some(SHARED)).unwrap();
    let state = state()
        .with_token(Some(SHARED.into()))
        .with_agent_auth(AgentAuth::NodeTokens(tokens));
    (app(state), dir)
}

#[tokio::test]
async fn an_agent_reports_as_its_own_node_and_never_as_another() {
    let (app, dir) = with_node_tokens("own-node");
    let (status, err) = call(&app, with_token(post(report_of("node-1")), NODE1)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
    let (status, err) = call(&app, with_token(post(report_of("node-2")), NODE1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.contains("\"node-1\"") && msg.contains("\"node-2\""),
        "{msg}"
    );
    // Nothing of node-2 was stored.
    let (_, health) = call(&app, with_token(get("/api/v1/health"), SHARED)).await;
    assert_eq!(node_names(&health), ["node-1"], "{health}");
    let (_, metrics) = text(&app, with_token(get("/metrics"), SHARED)).await;
    assert!(
        metrics.contains("outflow_agent_auth_refusals_total{reason=\"wrong_node\"} 1"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_shared_token_reads_but_may_not_post_reports_once_agents_have_their_own() {
    let (app, dir) = with_node_tokens("shared");
    let (status, err) = call(&app, with_token(post(report_of("node-1")), SHARED)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("shared token may not post reports"),
        "{err}"
    );
    for uri in ["/api/v1/connections", "/api/v1/health", "/api/v1/findings"] {
        let (status, _) = call(&app, with_token(get(uri), SHARED)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    // An agent's token is for the agents' routes only.
    let (status, _) = call(&app, with_token(get("/api/v1/connections"), NODE1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&app, with_token(get("/metrics"), NODE1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_agent_polls_only_its_own_nodes_captures() {
    let (app, dir) = with_node_tokens("tasks");
    let poll = |node: &str| get(&format!("/api/v1/agent/captures?node={node}&wait=0"));
    let (status, err) = call(&app, with_token(poll("node-2"), NODE1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    // No capture store in this state: the handler's own answer, past the check.
    let (status, _) = call(&app, with_token(poll("node-1"), NODE1)).await;
    assert_ne!(status, StatusCode::FORBIDDEN);
    assert_ne!(status, StatusCode::UNAUTHORIZED);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn hostile_tokens_get_a_clean_401() {
    let (app, dir) = with_node_tokens("hostile");
    let huge = "A".repeat(1 << 20);
    let just_over = "b".repeat(MAX_TOKEN_BYTES + 1);
    for token in [huge.as_str(), just_over.as_str(), "", " ", "Bearer", "\t"] {
        let (status, _) = call(&app, with_token(post(report_of("node-1")), token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} bytes", token.len());
    }
    // Bytes that are not visible ASCII: a header value the check cannot read as text.
    for raw in [
        &b"Bearer \xff\xfe\x80"[..],
        "Bearer nöde-1-tøken".as_bytes(),
        b"\xc3\xa9",
    ] {
        let mut req = post(report_of("node-1"));
        req.headers_mut().insert(
            "authorization",
            axum::http::HeaderValue::from_bytes(raw).unwrap(),
        );
        let (status, _) = call(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{raw:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A review function answering from a table, counting how often it is asked.
fn reviews(table: BTreeMap<&'static str, ReviewedToken>, asked: Arc<AtomicUsize>) -> TokenReviews {
    let review: ReviewToken = Arc::new(move |token: String| {
        asked.fetch_add(1, Ordering::SeqCst);
        let answer = table.get(token.as_str()).cloned().unwrap_or(ReviewedToken {
            error: Some("invalid bearer token".into()),
            ..Default::default()
        });
        Box::pin(async move { Ok(answer) })
    });
    TokenReviews::new(review, "outflow", "outflow", "outflow-agent")
}

fn agent_of(node: Option<&str>, username: &str) -> ReviewedToken {
    let mut extra = BTreeMap::from([(
        "authentication.kubernetes.io/pod-name".to_string(),
        vec!["outflow-agent-x7k2p".to_string()],
    )]);
    if let Some(n) = node {
        extra.insert(
            "authentication.kubernetes.io/node-name".into(),
            vec![n.into()],
        );
    }
    ReviewedToken {
        authenticated: true,
        username: username.into(),
        extra,
        audiences: vec!["outflow".into()],
        error: None,
    }
}

#[tokio::test]
async fn a_review_is_decided_once_and_its_answer_reused() {
    const AGENT: &str = "system:serviceaccount:outflow:outflow-agent";
    let table = BTreeMap::from([
        ("agent-1", agent_of(Some("node-1"), AGENT)),
        ("old-cluster", agent_of(None, AGENT)),
        (
            "other-sa",
            agent_of(Some("node-1"), "system:serviceaccount:shop:web"),
        ),
        (
            "api-audience",
            ReviewedToken {
                audiences: vec!["https://kubernetes.default.svc".into()],
                ..agent_of(Some("node-1"), AGENT)
            },
        ),
    ]);
    let asked = Arc::new(AtomicUsize::new(0));
    let app = app(state()
        .with_token(Some(SHARED.into()))
        .with_agent_auth(AgentAuth::TokenReview(reviews(table, asked.clone()))));
    for _ in 0..20 {
        let (status, err) = call(&app, with_token(post(report_of("node-1")), "agent-1")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "one review for twenty reports"
    );
    let cases = [
        ("old-cluster", StatusCode::FORBIDDEN, "names no node"),
        ("other-sa", StatusCode::FORBIDDEN, "shop:web"),
        ("api-audience", StatusCode::UNAUTHORIZED, "not for audience"),
        ("forged", StatusCode::UNAUTHORIZED, "invalid bearer token"),
    ];
    for (token, want, says) in cases {
        for _ in 0..3 {
            let (status, err) = call(&app, with_token(post(report_of("node-1")), token)).await;
            assert_eq!(status, want, "{token}: {err}");
            assert!(
                err["error"].as_str().unwrap().contains(says),
                "{token}: {err}"
            );
        }
    }
    // Refusals are kept a little too: a retrying agent costs one review, not one a retry.
    assert_eq!(asked.load(Ordering::SeqCst), 5);
    let (_, metrics) = text(&app, with_token(get("/metrics"), SHARED)).await;
    for line in [
        "outflow_agent_token_reviews_total{result=\"authenticated\"} 4",
        "outflow_agent_token_reviews_total{result=\"unauthenticated\"} 1",
        "outflow_agent_token_review_cache_hits_total 27",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn concurrent_reports_with_one_token_wait_for_one_review() {
    let asked = Arc::new(AtomicUsize::new(0));
    let table = BTreeMap::from([(
        "agent-1",
        agent_of(
            Some("node-1"),
            "system:serviceaccount:outflow:outflow-agent",
        ),
    )]);
    let app = app(state().with_agent_auth(AgentAuth::TokenReview(reviews(table, asked.clone()))));
    let calls = (0..32).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            call(&app, with_token(post(report_of("node-1")), "agent-1"))
                .await
                .0
        })
    });
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::NO_CONTENT);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
