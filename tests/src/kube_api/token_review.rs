//! TokenReviews, as the API server answers `POST /apis/authentication.k8s.io/v1/tokenreviews`:
//! from a table of tokens the test hands out, each with the user the API server would name
//! (a pod-bound service account token names its pod and, since Kubernetes 1.30, its node) and
//! the audiences it was issued for; anything else is an invalid bearer token. The test can make
//! the next reviews fail with a server error, as an API server going down does.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_response, status, ApiReplay, Shared};

/// What the API server knows of one token.
#[derive(Clone)]
pub(crate) struct IssuedToken {
    /// `status.user` of a review that accepts it.
    user: Value,
    /// The audiences it was issued for.
    audiences: Vec<String>,
    /// Past its expiry: reviews say so.
    expired: bool,
}

/// The API server's own audience, which a review without `spec.audiences` checks against.
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// A pod's projected service account token, as a test hands it to an agent.
pub struct PodToken<'a> {
    /// The token's text.
    pub token: &'a str,
    /// The service account's namespace and name.
    pub service_account: (&'a str, &'a str),
    /// The pod it is bound to.
    pub pod: &'a str,
    /// The pod's node; `None` as Kubernetes before 1.30 answers (no node in `extra`).
    pub node: Option<&'a str>,
    /// The audiences it was projected for (`audience:` of the volume source).
    pub audiences: &'a [&'a str],
}

impl ApiReplay {
    /// Makes the API server accept `t.token`, naming its service account, pod and node.
    pub fn issue_pod_token(&self, t: PodToken<'_>) {
        let (ns, sa) = t.service_account;
        let n = self.cluster().tokens.len() + 1;
        let mut extra = json!({
            "authentication.kubernetes.io/credential-id": [format!("JTI=7b1f0c2e-0000-4000-8000-{n:012}")],
            "authentication.kubernetes.io/pod-name": [t.pod],
            "authentication.kubernetes.io/pod-uid": [format!("5f0c6a1e-0000-4000-8000-{n:012}")],
        });
        if let Some(node) = t.node {
            extra["authentication.kubernetes.io/node-name"] = json!([node]);
            extra["authentication.kubernetes.io/node-uid"] =
                json!([format!("9d3b2c4a-0000-4000-8000-{n:012}")]);
        }
        let user = json!({
            "username": format!("system:serviceaccount:{ns}:{sa}"),
            "uid": format!("3c1e9b7d-0000-4000-8000-{n:012}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"),
                       "system:authenticated"],
            "extra": extra,
        });
        self.cluster().tokens.insert(
            t.token.to_string(),
            IssuedToken {
                user,
                audiences: t.audiences.iter().map(|a| a.to_string()).collect(),
                expired: false,
            },
        );
    }

    /// Makes an issued token expired: reviews then refuse it.
    pub fn expire_token(&self, token: &str) {
        if let Some(t) = self.cluster().tokens.get_mut(token) {
            t.expired = true;
        }
    }

    /// Answers the next `n` TokenReviews with `code` (500, 503…), as an API server that is
    /// going down or overloaded does.
    pub fn fail_token_reviews(&self, n: u32, code: u16) {
        let mut c = self.cluster();
        c.failing_reviews = n;
        c.failing_code = code;
    }

    /// How many TokenReviews were asked for so far.
    pub fn token_reviews(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews"))
            .count()
    }
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub(crate) async fn create(
    State(cluster): State<Shared>,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let mut c = cluster.lock().expect("replay state");
    if let Some(refused) = c.admit("POST", &uri, "tokenreviews.authentication.k8s.io") {
        return refused;
    }
    if c.failing_reviews > 0 {
        c.failing_reviews -= 1;
        let code = StatusCode::from_u16(c.failing_code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return status(
            code,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        );
    }
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let asked: Vec<String> = match review["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str())
            .map(String::from)
            .collect(),
        _ => vec![API_AUDIENCE.to_string()],
    };
    let reviewed = match c.tokens.get(token) {
        None => Err(
            "[invalid bearer token, square/go-jose: error in cryptographic primitive]".to_string(),
        ),
        Some(t) if t.expired => {
            Err("[invalid bearer token, service account token has expired]".to_string())
        }
        Some(t) => {
            let common: Vec<&String> = asked.iter().filter(|a| t.audiences.contains(a)).collect();
            if common.is_empty() {
                Err(format!(
                    "[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]",
                    t.audiences, asked
                ))
            } else {
                Ok((
                    t.user.clone(),
                    common.into_iter().cloned().collect::<Vec<_>>(),
                ))
            }
        }
    };
    // The API server answers 201 with the review, its spec as sent and the status filled in.
    let status_field = match reviewed {
        Ok((user, audiences)) => {
            json!({"authenticated": true, "user": user, "audiences": audiences})
        }
        Err(error) => json!({"user": {}, "error": error}),
    };
    let answer = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": review["spec"],
        "status": status_field,
    });
    json_response(StatusCode::CREATED, &answer)
}
