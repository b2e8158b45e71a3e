//! The REST API (DESIGN.md §4.3): agents post window reports, people and the CLI read records.
//!
//! Handlers are thin: parse and check the request, call the store on a blocking thread, answer
//! JSON. Client mistakes are 4xx with a message saying what was wrong; store faults are a short
//! 500 with the cause logged.

//!
//! The routes and the report and record handlers are here; the shared state (`state`), the error
//! type (`error`), who may call what (`auth`), the capture endpoints (`captures`) and the OpenAPI
//! document (`openapi`) have their own files, which never import this one.

mod auth;
mod captures;
mod checks;
mod error;
mod flow_view;
mod openapi;
mod state;
mod writer;

use std::sync::PoisonError;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use outflow_core::report::{ConnectionRecord, DnsRecord, Finding};
use outflow_core::wire::cluster::ClusterProfile;
use outflow_core::wire::{routes, ErrorBody, NodeReport, RecordQuery, Scoped};
use tower_http::decompression::RequestDecompressionLayer;

pub use auth::{
    AgentAuth, NodeTokens, NodeTokensError, ReviewToken, TokenReviews, MAX_TOKEN_BYTES,
};
pub use error::ApiError;
pub use openapi::document;
pub use state::{blocking, AppState, ClusterProfileSource, DestinationNames, MAX_INGEST_IN_FLIGHT};
pub use writer::MAX_BATCH;

use crate::clock::now_ns;
use crate::store::{Filter, Kind};
use crate::view;
use outflow_core::query::PodRef;

/// Largest report body accepted.
pub const MAX_REPORT_BYTES: usize = 16 << 20;
/// Default look-back of queries.
const DEFAULT_SINCE_S: u64 = outflow_core::wire::DEFAULT_SINCE.as_secs();
/// Most rows one query returns.
const MAX_LIMIT: u32 = 10_000;

/// The API's routes. The health page at `/` holds no data (its script calls the API, with the
/// token when there is one) and the probes (`/healthz`, `/readyz`) say only whether it serves and
/// is ready, so these stay open.
pub fn app(state: AppState) -> Router {
    let guarded = Router::new()
        // Agents send reports gzip-compressed (`Content-Encoding: gzip`); plain JSON, from
        // older agents, stays accepted. The body limit counts the decompressed bytes.
        .route(
            routes::REPORTS,
            post(post_report).layer(RequestDecompressionLayer::new().gzip(true)),
        )
        .route(routes::CONNECTIONS, get(connections))
        .route(routes::DNS, get(dns))
        .route(routes::FINDINGS, get(findings))
        .route(routes::HEALTH, get(health))
        .route(routes::CLUSTER_PROFILE, get(cluster_profile))
        .route("/metrics", get(metrics))
        .merge(captures::routes())
        .merge(flow_view::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ));
    Router::new()
        .merge(guarded)
        .route("/", get(view::page))
        .route(routes::OPENAPI, get(openapi::serve))
        .merge(crate::probes::router(state.ready.clone()))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        .with_state(state)
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "controller",
    summary = "Prometheus metrics of the controller and of the agents' reports",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4",
         content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state
        .metrics
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .render_at(now_ns());
    if let Some(agents) = &state.agent_auth {
        // Before the exposition's end line, which closes it.
        let end = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(end, &agents.render_metrics());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `POST /api/v1/reports`.
#[utoipa::path(post, path = routes::REPORTS, tag = "agents",
    summary = "An agent's window report",
    description = "Plain JSON or gzip-compressed (`Content-Encoding: gzip`); at most 16 MiB \
        once decompressed. A report sent again with the same `report_id` is stored once.",
    request_body(content = NodeReport, content_type = "application/json"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Malformed JSON, or a report the controller refuses (bounds, \
         clock)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token, or an agent's token the controller \
         does not take (not in --agent-tokens, not accepted by the Kubernetes API's TokenReview)",
         body = ErrorBody),
        (status = 403, description = "The token may not post this report: an agent's token is for \
         another node than the report's `node`, a service account token is not the agents' or \
         names no node, or the shared token while agents have their own", body = ErrorBody),
        (status = 413, description = "Larger than 16 MiB"),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON that is not a report", body = ErrorBody),
        (status = 503, description = "Overloaded, or the Kubernetes API cannot review the agent's \
         token now (--agent-auth tokenreview): send it again after `Retry-After` seconds",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn post_report(
    State(state): State<AppState>,
    agent: Option<axum::Extension<auth::AgentNode>>,
    body: Result<Json<NodeReport>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(report) =
        body.map_err(|e| ApiError::Rejected(e.status(), format!("report: {}", e.body_text())))?;
    if let Some(axum::Extension(agent)) = &agent {
        agent.check(&report.node)?;
    }
    // Full: say so now. Holding the request would only make the agent's request time out,
    // and a report stored after its request failed would be counted once more on the retry.
    let Ok(_slot) = state.ingest_slots.clone().try_acquire_owned() else {
        state
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused_overloaded();
        tracing::warn!(node = %report.node, "overloaded: report refused, the agent sends it again");
        return Err(ApiError::Overloaded(RETRY_AFTER_S));
    };
    state.ingest(report).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Seconds an overloaded controller asks agents to wait.
const RETRY_AFTER_S: u64 = 2;

/// `GET /api/v1/cluster/profile`: what the Kubernetes API tells of the cluster's network.
#[utoipa::path(get, path = routes::CLUSTER_PROFILE, tag = "agents",
    summary = "What the Kubernetes API tells of the cluster's network, for agents' profiles",
    responses(
        (status = 200, body = ClusterProfile),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "The controller watches no cluster", body = ErrorBody),
    ))]
async fn cluster_profile(State(state): State<AppState>) -> Result<Json<ClusterProfile>, ApiError> {
    match &state.cluster_profile {
        Some(p) => Ok(Json(p())),
        None => Err(ApiError::Rejected(
            StatusCode::NOT_FOUND,
            "this controller does not watch a Kubernetes cluster (start it with --kube or in a              pod): the agents' profile is all there is"
                .into(),
        )),
    }
}

/// The record endpoints' parameters (the contract type), checked and made a store filter.
fn filter_of(q: RecordQuery, kind: Kind) -> Result<Filter, ApiError> {
    let bad = |e: outflow_core::query::QueryError| ApiError::BadRequest(e.to_string());
    let (namespace, pod) = match q.pod.as_deref().map(PodRef::parse).transpose() {
        Ok(Some(p)) => (p.namespace.or(q.namespace), Some(p.name)),
        Ok(None) => (q.namespace, None),
        Err(e) => return Err(bad(e)),
    };
    if let Some(c) = &q.category {
        kind.record_kind().check_category(c).map_err(bad)?;
    }
    if let Some(o) = &q.outcome {
        kind.record_kind().check_outcome(o).map_err(bad)?;
    }
    let since_s = q.since.unwrap_or(DEFAULT_SINCE_S);
    Ok(Filter {
        pod,
        namespace,
        node: q.node,
        category: q.category,
        outcome: q.outcome,
        since_ns: now_ns().saturating_sub(since_s.saturating_mul(1_000_000_000)),
        limit: q.limit.unwrap_or(1_000).min(MAX_LIMIT),
    })
}

async fn records(
    state: AppState,
    kind: Kind,
    q: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = filter_of(q, kind)?;
    let rows = state
        .read("reading records", move |store| store.query(kind, &filter))
        .await?;
    Ok(Json(serde_json::Value::Array(rows)))
}

/// `GET /api/v1/connections`.
#[utoipa::path(get, path = routes::CONNECTIONS, tag = "records",
    summary = "Connection groups with their pod, node and window, newest windows first",
    params(RecordQuery),
    responses(
        (status = 200, body = [Scoped<ConnectionRecord>]),
        (status = 400, description = "A parameter is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn connections(
    State(s): State<AppState>,
    q: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    records(s, Kind::Connection, q).await
}

/// `GET /api/v1/dns`.
#[utoipa::path(get, path = routes::DNS, tag = "records",
    summary = "DNS lookups with their pod, node and window, newest windows first",
    params(RecordQuery),
    responses(
        (status = 200, body = [Scoped<DnsRecord>]),
        (status = 400, description = "A parameter is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn dns(
    State(s): State<AppState>,
    q: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    records(s, Kind::Dns, q).await
}

/// `GET /api/v1/findings`.
#[utoipa::path(get, path = routes::FINDINGS, tag = "records",
    summary = "Findings with their pod, node and window, newest windows first",
    params(RecordQuery),
    responses(
        (status = 200, body = [Scoped<Finding>]),
        (status = 400, description = "A parameter is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn findings(
    State(s): State<AppState>,
    q: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    records(s, Kind::Finding, q).await
}

use outflow_core::wire::health::Health;

/// `GET /api/v1/health`.
#[utoipa::path(get, path = routes::HEALTH, tag = "health",
    summary = "Nodes, their datapaths and pods, and the latest captures",
    responses(
        (status = 200, body = Health),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let mut nodes = state
        .read("reading node health", |store| store.nodes())
        .await?;
    let now = now_ns();
    for n in &mut nodes {
        n.stale =
            outflow_core::wire::health::is_stale(n.last_window_end_ns, n.datapath.interval_ns, now);
    }
    // The latest captures beside the nodes: the evidence next to the findings it explains.
    let captures: Vec<_> = state
        .captures()
        .map(|c| c.list().into_iter().take(20).collect())
        .unwrap_or_default();
    Ok(Json(Health { nodes, captures }))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_view;
#[cfg(test)]
mod tests_writer;
