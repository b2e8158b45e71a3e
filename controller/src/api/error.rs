//! The API's one error type: client mistakes become a 4xx that says what was wrong, server
//! faults a short 500 whose cause goes to the log.
//!
//! Its own module so that every handler file can return it without importing the routes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outflow_core::wire::ErrorBody;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The request was refused before it was read (too large, wrong content type).
    #[error("{1}")]
    Rejected(StatusCode, String),
    /// Too many reports are being stored: try again after this many seconds.
    #[error("overloaded: too many reports at once; send it again in {0} s")]
    Overloaded(u64),
    /// Something the request needs is down for now (the Kubernetes API that reviews agents'
    /// tokens): try again after `retry_after_s` seconds.
    #[error("{why}; send it again in {retry_after_s} s")]
    Unavailable {
        /// Seconds to wait.
        retry_after_s: u64,
        /// What is down, for the client.
        why: String,
    },
    /// The server failed: what it was doing, and why. The cause goes to the log, never to the
    /// client.
    #[error("internal error: {what}")]
    Internal {
        /// What the controller was doing (`storing a report`).
        what: String,
        /// Why it failed.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ApiError {
    /// A server fault while doing `what`.
    pub fn internal(
        what: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ApiError {
        ApiError::Internal {
            what: what.into(),
            cause: cause.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Rejected(status, _) => *status,
            ApiError::Overloaded(after)
            | ApiError::Unavailable {
                retry_after_s: after,
                ..
            } => {
                let body = ErrorBody {
                    error: self.to_string(),
                };
                let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, (*after).into());
                return resp;
            }
            ApiError::Internal { .. } => {
                tracing::error!(error = %outflow_core::error_chain(&self), "request failed");
                // The cause is for the operator's log; a client learns only that it was not its
                // fault (paths, SQL and library messages stay inside).
                let body = ErrorBody {
                    error: "internal error: the controller could not complete the request; its \
                            log says why"
                        .into(),
                };
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
