//! The service proxy subresource, as the API server forwards it: a request to
//! `/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH` goes to the service's backend with
//! the caller's `Authorization` header removed (the API server consumed it), and the answer
//! streams back as it comes, so a running capture's pcapng flows through.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{status, Shared};

/// Forwards one request to the backend the test set for the service.
pub(crate) async fn forward(
    State(cluster): State<Shared>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    let param = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (namespace, service) = (param("namespace"), param("service"));
    // `NAME`, `NAME:PORT` or `SCHEME:NAME:PORT`, as the API server takes them.
    let parts: Vec<&str> = service.split(':').collect();
    let name = match parts.as_slice() {
        [name] | [name, _] => name.to_string(),
        [_, name, _] => name.to_string(),
        _ => return status(StatusCode::BAD_REQUEST, "BadRequest", "bad service name"),
    };
    let backend = {
        let mut c = cluster.lock().expect("replay state");
        if let Some(refused) = c.admit(req.method().as_str(), req.uri(), "services/proxy") {
            return refused;
        }
        c.backends.get(&(namespace.clone(), name.clone())).cloned()
    };
    let Some(backend) = backend else {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!("no endpoints available for service \"{name}\""),
        );
    };
    let rest = param("rest");
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::HOST);
    let Ok(uri) = format!("{backend}/{rest}{query}").parse() else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "bad proxy path");
    };
    parts.uri = uri;
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    match client
        .request(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(body.map_err(axum::Error::new))).into_response()
        }
        Err(e) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!("error trying to reach service: {e}"),
        ),
    }
}
