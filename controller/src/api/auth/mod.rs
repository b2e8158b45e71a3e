//! Who a request is from, and what that lets it do: the shared token for people and scripts,
//! and, when agents have their own (`--agent-auth tokenreview`, `--agent-tokens FILE`), the node
//! an agent's token is for, so an agent writes only as that node.
//!
//! One layer in front of every guarded route. An agent's credential opens only the routes
//! agents call (reports, the cluster profile, its node's capture tasks and their uploads) and
//! only for its own node: the report handler compares the report's `node` with [`AgentNode`],
//! the one thing it takes from here. How a token maps to a node is [`node_tokens`]'s (a file)
//! or [`review`]'s (the Kubernetes API); what to count is [`counters`]'s.

mod counters;
mod node_tokens;
mod review;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use outflow_core::wire::routes;

pub use counters::AuthCounters;
pub use node_tokens::{NodeTokens, NodeTokensError};
pub use review::{ReviewToken, TokenReviews};

use super::error::ApiError;
use super::state::AppState;

/// Longest credential looked at. A service account token is 1 to 2 KiB; anything much longer is
/// refused before it is hashed or sent to the Kubernetes API.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;

/// How agents prove which node they are; without one, agents send the shared token and may
/// report as any node (the default, as before per-node tokens).
pub enum AgentAuth {
    /// `--agent-tokens FILE`: a token per node, from a file.
    NodeTokens(NodeTokens),
    /// `--agent-auth tokenreview`: the agent pod's projected service account token, reviewed
    /// by the Kubernetes API, which names the pod's node.
    TokenReview(TokenReviews),
}

impl AgentAuth {
    /// The node `token` is for, or why it is for none.
    async fn node_of(&self, token: &str) -> Result<Arc<str>, Refusal> {
        match self {
            AgentAuth::NodeTokens(t) => t.node_of(token).ok_or(Refusal::UnknownToken(format!(
                "the token is no node's in {}: give the agent its node's line's token \
                 (--token-file)",
                t.path().display()
            ))),
            AgentAuth::TokenReview(r) => r.node_of(token).await,
        }
    }

    fn counters(&self) -> &AuthCounters {
        match self {
            AgentAuth::NodeTokens(t) => t.counters(),
            AgentAuth::TokenReview(r) => r.counters(),
        }
    }

    /// What an agent's token is, for messages.
    fn wanted(&self) -> &'static str {
        match self {
            AgentAuth::NodeTokens(_) => "its node's token from the --agent-tokens file",
            AgentAuth::TokenReview(_) => {
                "its pod's projected service account token (deploy/base/agent.yaml)"
            }
        }
    }

    /// The auth counters in Prometheus text, for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.counters().render()
    }
}

/// Why a credential was refused; each is counted by its reason.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// No node's token (not in the file, or not recognised by the Kubernetes API): 401.
    UnknownToken(String),
    /// A real token, but not an agent's (another service account, no node named): 403.
    NotAgent(String),
    /// The token may not do this (the shared token posting reports, an agent another node's
    /// work): 403.
    Forbidden(&'static str, String),
    /// The Kubernetes API cannot say now: 503, the agent sends it again.
    Unavailable(String),
}

/// Seconds an agent waits before sending again when its token cannot be reviewed now.
pub const REVIEW_RETRY_AFTER_S: u64 = 5;

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownToken(_) => "unknown_token",
            Refusal::NotAgent(_) => "not_agent",
            Refusal::Forbidden(reason, _) => reason,
            Refusal::Unavailable(_) => "review_unavailable",
        }
    }

    fn into_response(self, counters: &AuthCounters) -> Response {
        counters.refused(self.reason());
        match self {
            Refusal::UnknownToken(why) => unauthorized(why),
            Refusal::NotAgent(why) | Refusal::Forbidden(_, why) => {
                ApiError::Rejected(StatusCode::FORBIDDEN, why).into_response()
            }
            Refusal::Unavailable(why) => {
                tracing::warn!(%why, "an agent's token cannot be reviewed now: refused with 503");
                ApiError::Unavailable {
                    retry_after_s: REVIEW_RETRY_AFTER_S,
                    why,
                }
                .into_response()
            }
        }
    }
}

/// The node an agent's token is for, put on the request for the report handler.
#[derive(Clone)]
pub struct AgentNode {
    node: Arc<str>,
    counters: AuthCounters,
}

impl AgentNode {
    /// Ok when `node` (a report's) is the token's node; else a 403 naming both.
    pub fn check(&self, node: &str) -> Result<(), ApiError> {
        if *self.node == *node {
            return Ok(());
        }
        self.counters.refused("wrong_node");
        tracing::warn!(token_node = %self.node, report_node = %node, "a report for another node refused");
        Err(ApiError::Rejected(
            StatusCode::FORBIDDEN,
            wrong_node(&self.node, node),
        ))
    }
}

fn wrong_node(token: &str, asked: &str) -> String {
    format!(
        "this agent's token is for node {token:?}, not {asked:?}: an agent reports only as its \
         own node (check the agent's --node / NODE_NAME and which token it was given)"
    )
}

/// The routes an agent calls, with what binds them to a node.
#[derive(Debug, PartialEq, Eq)]
enum AgentRoute {
    /// `POST /api/v1/reports`: the report's `node`, checked by the handler.
    Report,
    /// `GET /api/v1/cluster/profile`: the same for every node.
    ClusterProfile,
    /// `GET /api/v1/agent/captures?node=N`: the `node` parameter.
    Tasks,
    /// `GET /api/v1/captures/ID`, `POST …/ID/pcapng`, `POST …/ID/result`: the capture's node.
    Capture(u64),
}

impl AgentRoute {
    fn of(method: &Method, path: &str) -> Option<AgentRoute> {
        match (method, path) {
            (&Method::POST, routes::REPORTS) => return Some(AgentRoute::Report),
            (&Method::GET, routes::CLUSTER_PROFILE) => return Some(AgentRoute::ClusterProfile),
            (&Method::GET, routes::AGENT_CAPTURES) => return Some(AgentRoute::Tasks),
            _ => {}
        }
        let rest = path.strip_prefix(routes::CAPTURES)?.strip_prefix('/')?;
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let id = id.parse().ok()?;
        match (method, tail) {
            (&Method::GET, "") | (&Method::POST, "pcapng" | "result") => {
                Some(AgentRoute::Capture(id))
            }
            _ => None,
        }
    }
}

/// The credential a request carries: `Authorization: Bearer TOKEN`, else `X-Outflow-Token`
/// (the header the API server's service proxy lets through; it keeps `Authorization` for
/// itself). A header that is not visible ASCII, empty or longer than [`MAX_TOKEN_BYTES`]
/// counts as none.
fn credential(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            headers
                .get(outflow_core::wire::TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
}

/// Compares in time independent of where the inputs differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const SHARED_TOKEN_HINT: &str = "send `Authorization: Bearer TOKEN` (or `X-Outflow-Token: \
     TOKEN` through the Kubernetes API's service proxy) with the controller's token (outflow \
     commands read it from --token-file or OUTFLOW_TOKEN; kubectl outflow from the Secret \
     outflow-token)";

fn unauthorized(why: String) -> Response {
    let mut resp = ApiError::Rejected(StatusCode::UNAUTHORIZED, why).into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Lets a request through when it may do what it asks: no token is set, it carries the shared
/// token, or an agent's token for the node it acts for.
pub(super) async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = credential(req.headers());
    let is_shared = match (&state.token, given) {
        (Some(t), Some(g)) => same_secret(g.as_bytes(), t.as_bytes()),
        _ => false,
    };
    let Some(agents) = state.agent_auth.clone() else {
        if state.token.is_none() || is_shared {
            return next.run(req).await;
        }
        return unauthorized(format!("missing or wrong token: {SHARED_TOKEN_HINT}"));
    };
    let route = AgentRoute::of(req.method(), req.uri().path());
    if is_shared {
        if route == Some(AgentRoute::Report) {
            return Refusal::Forbidden(
                "shared_token",
                format!(
                    "the shared token may not post reports: this controller takes each agent's \
                     report only with {}, which binds it to its node",
                    agents.wanted()
                ),
            )
            .into_response(agents.counters());
        }
        return next.run(req).await;
    }
    let Some(route) = route else {
        // People's routes: the shared token's rule, as without agent tokens.
        if state.token.is_none() {
            return next.run(req).await;
        }
        return unauthorized(format!("missing or wrong token: {SHARED_TOKEN_HINT}"));
    };
    let Some(token) = given else {
        // A listener without a shared token is open to people (loopback), not to reports.
        if state.token.is_none() && route != AgentRoute::Report {
            return next.run(req).await;
        }
        return Refusal::UnknownToken(format!(
            "missing token: an agent sends {} as `Authorization: Bearer TOKEN`",
            agents.wanted()
        ))
        .into_response(agents.counters());
    };
    let node = match agents.node_of(token).await {
        Ok(node) => node,
        Err(refusal) => return refusal.into_response(agents.counters()),
    };
    if let Err(refusal) = bind_to_node(&state, &route, &req, &node) {
        return refusal.into_response(agents.counters());
    }
    let mut req = req;
    if route == AgentRoute::Report {
        req.extensions_mut().insert(AgentNode {
            node,
            counters: agents.counters().clone(),
        });
    }
    next.run(req).await
}

/// Checks that what the request names is `node`'s: the node of a capture-task poll, the node a
/// capture runs on. Reports are checked by their handler, which reads the body.
fn bind_to_node(
    state: &AppState,
    route: &AgentRoute,
    req: &Request,
    node: &str,
) -> Result<(), Refusal> {
    let asked = match route {
        AgentRoute::Report | AgentRoute::ClusterProfile => return Ok(()),
        AgentRoute::Tasks => {
            #[derive(serde::Deserialize)]
            struct Node {
                node: Option<String>,
            }
            // A query the handler cannot read is the handler's to refuse.
            match axum::extract::Query::<Node>::try_from_uri(req.uri()) {
                Ok(q) => q.0.node,
                Err(_) => None,
            }
        }
        AgentRoute::Capture(id) => state
            .captures()
            .and_then(|c| c.get(*id).ok())
            .map(|c| c.node),
    };
    match asked {
        Some(asked) if asked != node => {
            Err(Refusal::Forbidden("wrong_node", wrong_node(node, &asked)))
        }
        _ => Ok(()),
    }
}
