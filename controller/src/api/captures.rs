//! The capture endpoints (DESIGN.md §4.4): people create, watch, download and stop captures;
//! agents take their node's tasks (long poll), stream the pcapng up and report how it ended.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use outflow_core::wire::health::CAPTURE_POLL_MAX_WAIT_S;
use outflow_core::wire::{routes, ErrorBody};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use outflow_core::query::PodRef;

use super::error::ApiError;
use super::state::AppState;
use crate::captures::{CaptureInfo, CaptureResult, CaptureSpec, CaptureState, Captures};
use crate::clock::now_ns;

/// Longest filter accepted.
const MAX_FILTER: usize = 4096;

/// The routes, all behind the token check.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(routes::CAPTURES, get(list).post(create))
        .route(
            &format!("{}/{{id}}", routes::CAPTURES),
            get(one).delete(stop),
        )
        .route(
            &format!("{}/{{id}}/pcapng", routes::CAPTURES),
            get(download).put(upload),
        )
        .route(&format!("{}/{{id}}/result", routes::CAPTURES), post(result))
        .route(routes::AGENT_CAPTURES, get(tasks))
}

fn captures(state: &AppState) -> Result<&Captures, ApiError> {
    state.captures().ok_or_else(|| {
        ApiError::Rejected(
            StatusCode::SERVICE_UNAVAILABLE,
            "captures are not enabled on this controller (no --capture-dir)".into(),
        )
    })
}

fn id_of(p: Result<Path<u64>, PathRejection>) -> Result<u64, ApiError> {
    p.map(|Path(id)| id).map_err(|_| {
        ApiError::BadRequest(
            "a capture id is a number, as POST /api/v1/captures returned it".into(),
        )
    })
}

fn not_found(e: impl std::fmt::Display) -> ApiError {
    ApiError::Rejected(StatusCode::NOT_FOUND, e.to_string())
}

/// A capture's pod: `NAMESPACE/NAME` in the shared pod grammar, the namespace required (a
/// capture names one pod).
fn pod_of(pod: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("pod {pod:?}: expected NAMESPACE/NAME"));
    let p = PodRef::parse(pod).map_err(|_| bad())?;
    Ok((p.namespace.ok_or_else(bad)?, p.name))
}

/// Checks a request; the filter with libpcap, so a typo is a 400 with libpcap's words.
fn check_spec(s: &CaptureSpec) -> Result<(), ApiError> {
    if s.filter.len() > MAX_FILTER {
        return Err(ApiError::BadRequest(format!(
            "filter: longer than {MAX_FILTER} bytes"
        )));
    }
    if let Some(pod) = &s.pod {
        pod_of(pod)?;
    } else if s.node.is_none() || s.interface.is_none() {
        return Err(ApiError::BadRequest(
            "say what to capture: a pod (NAMESPACE/NAME), or a node and an interface".into(),
        ));
    }
    if let Some(i) = &s.interface {
        if i.is_empty() || i.len() > 15 || i.contains(['/', '\0']) {
            return Err(ApiError::BadRequest(format!(
                "interface {i:?}: not an interface name"
            )));
        }
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(|e| ApiError::internal("opening libpcap to check the filter", e))?;
    dead.compile(&s.filter, true)
        .map_err(|e| ApiError::BadRequest(format!("bad filter {:?}: {e}", s.filter)))?;
    Ok(())
}

/// `POST /api/v1/captures`.
#[utoipa::path(post, path = routes::CAPTURES, tag = "captures",
    summary = "Starts a capture on a pod, or on a node's interface",
    request_body(content = CaptureSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the node's agent takes it up", body = CaptureInfo),
        (status = 400, description = "Malformed JSON, a bad pod or interface, or a filter libpcap \
         cannot compile", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "The pod is on no node", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON that is not a capture request", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    body: Result<Json<CaptureSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<CaptureInfo>), ApiError> {
    let Json(spec) =
        body.map_err(|e| ApiError::Rejected(e.status(), format!("capture: {}", e.body_text())))?;
    check_spec(&spec)?;
    let node = match (&spec.node, &spec.pod) {
        (Some(n), _) => n.clone(),
        (None, pod) => {
            let pod = pod.as_deref().unwrap_or_default();
            let (namespace, name) = pod_of(pod)?;
            state.node_of_pod(&namespace, &name).await?.ok_or_else(|| {
                not_found(format!(
                    "pod {pod} is on no node's pod list and has no records: check its name \
                     and namespace (-n), wait for its node's agent to report (its first report \
                     comes at start), or give its node (--node)"
                ))
            })?
        }
    };
    let info = captures(&state)?.create(spec, node, now_ns());
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /api/v1/captures`.
#[utoipa::path(get, path = routes::CAPTURES, tag = "captures",
    summary = "Every capture, newest first",
    responses(
        (status = 200, body = Vec<CaptureInfo>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<CaptureInfo>>, ApiError> {
    Ok(Json(captures(&state)?.list()))
}

/// `GET /api/v1/captures/{id}`.
#[utoipa::path(get, path = "/api/v1/captures/{id}", tag = "captures",
    summary = "One capture",
    params(("id" = u64, Path, description = "The capture's id, as `POST /api/v1/captures` returned it")),
    responses(
        (status = 200, body = CaptureInfo),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such capture", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn one(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<CaptureInfo>, ApiError> {
    let id = id_of(id)?;
    captures(&state)?.get(id).map(Json).map_err(not_found)
}

/// `DELETE /api/v1/captures/{id}`.
#[utoipa::path(delete, path = "/api/v1/captures/{id}", tag = "captures",
    summary = "Stops a capture; what it caught stays downloadable",
    params(("id" = u64, Path, description = "The capture's id, as `POST /api/v1/captures` returned it")),
    responses(
        (status = 200, description = "The capture, stopping or over", body = CaptureInfo),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such capture", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn stop(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<CaptureInfo>, ApiError> {
    let id = id_of(id)?;
    captures(&state)?
        .stop(id, now_ns())
        .map(Json)
        .map_err(not_found)
}

#[utoipa::path(get, path = "/api/v1/captures/{id}/pcapng", tag = "captures",
    summary = "The capture's pcapng, streamed until the capture ends",
    params(("id" = u64, Path, description = "The capture's id, as `POST /api/v1/captures` returned it")),
    responses(
        (status = 200, content_type = "application/x-pcapng", body = Vec<u8>),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such capture", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
/// The pcapng: what is there, then more as the agent sends it, until the capture ends.
async fn download(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = id_of(id)?;
    captures(&state)?.get(id).map_err(not_found)?;
    let path = captures(&state)?.path(id);
    let rx = captures(&state)?.subscribe();
    let stream = futures_util::stream::unfold(
        (state, 0u64, rx, false),
        move |(state, offset, mut rx, over)| {
            let path = path.clone();
            async move {
                if over {
                    return None;
                }
                loop {
                    let chunk = read_at(&path, offset).await;
                    if !chunk.is_empty() {
                        let n = chunk.len() as u64;
                        return Some((
                            Ok::<_, std::io::Error>(chunk),
                            (state, offset + n, rx, false),
                        ));
                    }
                    let ended = state
                        .captures()
                        .and_then(|c| c.get(id).ok())
                        .is_none_or(|c| {
                            matches!(c.state, CaptureState::Done | CaptureState::Failed)
                        });
                    if ended {
                        // Bytes appended just before the end.
                        let last = read_at(&path, offset).await;
                        return (!last.is_empty()).then(|| (Ok(last), (state, offset, rx, true)));
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                }
            }
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/x-pcapng")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Up to 256 KiB of a file from `offset`; empty at the end or when it does not exist yet.
async fn read_at(path: &std::path::Path, offset: u64) -> Bytes {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Bytes::new();
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Bytes::new();
    }
    let mut buf = vec![0u8; 256 << 10];
    match f.read(&mut buf).await {
        Ok(n) => {
            buf.truncate(n);
            Bytes::from(buf)
        }
        Err(_) => Bytes::new(),
    }
}

/// The agent's stream: appended as it comes.
#[utoipa::path(put, path = "/api/v1/captures/{id}/pcapng", tag = "agents",
    summary = "The agent streams a running capture's pcapng up",
    params(("id" = u64, Path, description = "The capture's id, as `POST /api/v1/captures` returned it")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Appended"),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such capture", body = ErrorBody),
        (status = 409, description = "The capture is not running", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn upload(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = id_of(id)?;
    let caps = captures(&state)?;
    let info = caps.get(id).map_err(not_found)?;
    if !matches!(info.state, CaptureState::Running | CaptureState::Stopping) {
        return Err(ApiError::Rejected(
            StatusCode::CONFLICT,
            format!("capture {id} is {}, not running", info.state),
        ));
    }
    let write_err = |e: std::io::Error| ApiError::internal(format!("writing capture {id}"), e);
    let mut file = caps.open_upload(id).map_err(write_err)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("capture stream: {e}")))?;
        caps.append(id, &mut file, &chunk).map_err(write_err)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/captures/{id}/result`.
#[utoipa::path(post, path = "/api/v1/captures/{id}/result", tag = "agents",
    summary = "The agent's summary at a capture's end",
    params(("id" = u64, Path, description = "The capture's id, as `POST /api/v1/captures` returned it")),
    request_body(content = CaptureResult, content_type = "application/json"),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "The id is not a number, or malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such capture", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON that is not a result", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn result(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<CaptureResult>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let id = id_of(id)?;
    let Json(r) =
        body.map_err(|e| ApiError::Rejected(e.status(), format!("result: {}", e.body_text())))?;
    captures(&state)?
        .finish(id, r, now_ns())
        .map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The long poll's parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TaskQuery {
    /// The agent's node.
    node: String,
    /// Seconds to wait for a task; more than 30 waits 30.
    wait: Option<u64>,
}

/// An agent's long poll: its node's new captures, as soon as there is one.
#[utoipa::path(get, path = routes::AGENT_CAPTURES, tag = "agents",
    summary = "An agent's long poll for its node's new captures",
    params(TaskQuery),
    responses(
        (status = 200, description = "The node's new captures (empty when none came in time)",
         body = Vec<CaptureInfo>),
        (status = 400, description = "A parameter is wrong", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 503, description = "Captures are not enabled (no `--capture-dir`)", body = ErrorBody),
    ))]
async fn tasks(
    State(state): State<AppState>,
    q: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CaptureInfo>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let caps = captures(&state)?;
    let mut rx = caps.subscribe();
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(q.wait.unwrap_or(0).min(CAPTURE_POLL_MAX_WAIT_S));
    loop {
        let tasks = caps.take_tasks(&q.node, now_ns());
        if !tasks.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(tasks));
        }
        let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
    }
}
