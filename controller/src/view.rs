//! The health view at `/`: one static page whose script reads the API and refreshes itself.
//!
//! The page holds no data, so it is served without a token; the script sends the token it finds
//! after `#token=` in the address (never sent to the server) with each API call.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("view/index.html");

/// `GET /`.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        PAGE,
    )
}
