//! `kubectl outflow`'s way to the controller: a loopback listener whose requests go through the
//! API server's service proxy (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/…`) with the
//! user's kubeconfig credentials, so nothing new is exposed and RBAC (`services/proxy`) decides
//! who may ask. The rest of the CLI talks to the listener as to any controller.
//!
//! The API server keeps the `Authorization` header for itself, so the controller's token
//! travels as `X-Outflow-Token`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use kube::Client;

use crate::watch::{config, AccessError, ClusterAccess};

use outflow_core::wire::TOKEN_HEADER;

/// Where the controller runs in the cluster.
#[derive(Debug, Clone)]
pub struct ServiceRef {
    /// Its namespace.
    pub namespace: String,
    /// Its Service.
    pub name: String,
    /// The Service's port (name or number).
    pub port: String,
}

/// A running loopback forwarder; it stops with the process.
pub struct ServiceProxy {
    addr: SocketAddr,
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl ServiceProxy {
    /// Connects as kubectl would and listens on a loopback port.
    pub fn start(access: &ClusterAccess, service: ServiceRef) -> Result<ServiceProxy, AccessError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(AccessError::Runtime)?;
        // A 503 through the proxy is the API server saying the Service has no endpoints (the
        // controller is not running): the user wants that answer now, not after retries.
        let client = runtime.block_on(async {
            let mut config = config(access).await?;
            config.default_retry = false;
            Client::try_from(config).map_err(AccessError::Client)
        })?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(AccessError::Runtime)?;
        let addr = listener.local_addr().map_err(AccessError::Runtime)?;
        let handle = runtime.handle().clone();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state((client.clone(), service));
        std::thread::Builder::new()
            .name("kube-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = axum::serve(listener, app).await;
                })
            })
            .map_err(AccessError::Runtime)?;
        Ok(ServiceProxy {
            addr,
            client,
            runtime: handle,
        })
    }

    /// `http://127.0.0.1:PORT`, the controller as the CLI sees it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The controller's token from the Secret `namespace/name`, read with the user's
    /// credentials; None when there is no such Secret.
    pub fn read_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, crate::TokenError> {
        self.runtime
            .block_on(crate::secret::read_token(&self.client, namespace, name))
    }
}

/// Sends one request through the service proxy and streams the answer back.
async fn forward(State((client, svc)): State<(Client, ServiceRef)>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    // The CLI's bearer token becomes the header the API server lets through; the client
    // adds the user's own Authorization.
    if let Some(token) = parts.headers.remove(header::AUTHORIZATION).and_then(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(String::from)
    }) {
        if let Ok(v) = HeaderValue::from_str(&token) {
            parts.headers.insert(TOKEN_HEADER, v);
        }
    }
    parts.headers.remove(header::HOST);
    let uri = format!(
        "/api/v1/namespaces/{}/services/{}:{}/proxy{path}",
        svc.namespace, svc.name, svc.port
    );
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad path").into_response(),
    };
    let req = axum::http::Request::from_parts(parts, kube::client::Body::from(body));
    match client.send(req).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(body.map_err(axum::Error::new)))
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!(
                "the Kubernetes API server did not pass the request to service {}/{}: {}",
                svc.namespace,
                svc.name,
                outflow_core::error_chain(&e)
            ),
        )
            .into_response(),
    }
}
