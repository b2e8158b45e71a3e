//! `GET /api/v1/view` (the matrix), `GET /api/v1/view/destinations` (one cell) and
//! `GET /api/v1/diagnoses`, read from the rollups over the range asked for.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use outflow_core::wire::diagnosis::{Diagnoses, DiagnosesQuery};
use outflow_core::wire::view::{DestinationHealth, DestinationsQuery, FlowView, ViewQuery};
use outflow_core::wire::{routes, ErrorBody};

use super::error::ApiError;
use super::state::{blocking, AppState};
use crate::clock::now_ns;
use crate::store::{CellQuery, MatrixQuery};

/// The longest look-back: the rollups keep a week.
const MAX_SINCE_S: u64 = 7 * 24 * 3600;
/// The longest namespace, workload or search text taken.
const MAX_NAME: usize = 253;

/// The view's routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(routes::VIEW, get(matrix))
        .route(routes::VIEW_DESTINATIONS, get(destinations))
        .route(routes::DIAGNOSES, get(diagnoses))
}

/// The range `[now - since, now)`, the look-back checked.
fn range(since: Option<u64>) -> Result<(u64, u64), ApiError> {
    let since_s = since.unwrap_or(outflow_core::wire::DEFAULT_SINCE.as_secs());
    if since_s == 0 || since_s > MAX_SINCE_S {
        return Err(ApiError::BadRequest(format!(
            "since must be 1 to {MAX_SINCE_S} seconds (a week, what the view keeps)"
        )));
    }
    let now = now_ns();
    Ok((now.saturating_sub(since_s * 1_000_000_000), now))
}

fn bounded(what: &str, v: &Option<String>) -> Result<(), ApiError> {
    match v {
        Some(s) if s.len() > MAX_NAME => Err(ApiError::BadRequest(format!(
            "{what} is longer than {MAX_NAME} characters"
        ))),
        _ => Ok(()),
    }
}

/// `GET /api/v1/view`.
#[utoipa::path(get, path = routes::VIEW, tag = "health",
    summary = "The flow health matrix: who (namespaces or workloads) by destination category",
    params(ViewQuery),
    responses(
        (status = 200, body = FlowView),
        (status = 400, description = "A parameter is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn matrix(
    State(state): State<AppState>,
    q: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FlowView>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    bounded("namespace", &q.namespace)?;
    bounded("search", &q.search)?;
    let (from_ns, to_ns) = range(q.since)?;
    let query = MatrixQuery {
        from_ns,
        to_ns,
        by: q.by.unwrap_or_default(),
        namespace: q.namespace,
        search: q.search.filter(|s| !s.is_empty()),
    };
    let view = state
        .read("reading the view", move |store| store.matrix(&query))
        .await?;
    Ok(Json(view))
}

/// `GET /api/v1/view/destinations`.
#[utoipa::path(get, path = routes::VIEW_DESTINATIONS, tag = "health",
    summary = "One cell's destinations",
    params(DestinationsQuery),
    responses(
        (status = 200, body = Vec<DestinationHealth>),
        (status = 400, description = "A parameter is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn destinations(
    State(state): State<AppState>,
    q: Result<Query<DestinationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<DestinationHealth>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    bounded("namespace", &Some(q.namespace.clone()))?;
    bounded("workload", &q.workload)?;
    let (from_ns, to_ns) = range(q.since)?;
    let query = CellQuery {
        from_ns,
        to_ns,
        namespace: q.namespace,
        workload: q.workload,
        category: q.category,
    };
    let list = state
        .read("reading a cell's destinations", move |store| {
            store.destinations(&query)
        })
        .await?;
    Ok(Json(list))
}

/// `GET /api/v1/diagnoses`.
#[utoipa::path(get, path = routes::DIAGNOSES, tag = "health",
    summary = "What is broken, where and since when",
    params(DiagnosesQuery),
    responses(
        (status = 200, body = Diagnoses),
        (status = 400, description = "A parameter is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ))]
async fn diagnoses(
    State(state): State<AppState>,
    q: Result<Query<DiagnosesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Diagnoses>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (from_ns, to_ns) = range(q.since)?;
    let input = state
        .read("reading the diagnoses' facts", move |store| {
            store.diagnosis_input(from_ns, to_ns, to_ns)
        })
        .await?;
    // The rules run outside the store's lock: they read only what was taken out.
    let diagnoses = blocking("diagnosing", move || Ok(outflow_diagnose::diagnose(&input))).await?;
    Ok(Json(Diagnoses { diagnoses }))
}
