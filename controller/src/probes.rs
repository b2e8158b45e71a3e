//! `/healthz` and `/readyz`, as kubelet probes ask them: liveness says the process serves,
//! readiness says it does its job. One router for the controller, `outflow up` and the agent's
//! own probe listener, so all three answer alike.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// Whether the process is ready, or why not (a sentence for the person reading the probe).
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// `GET /healthz`: 200 while the process serves. `GET /readyz`: 200 once `ready` says so, else
/// 503 with the reason.
pub fn router<S: Clone + Send + Sync + 'static>(ready: Option<ReadyCheck>) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready.map_or(Ok(()), |check| check()) {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
}
