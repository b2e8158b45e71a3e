//! Asks the API server who a bearer token belongs to (a TokenReview, authentication.k8s.io/v1),
//! for the controller's check that an agent writes only as its own node.
//!
//! Thin on purpose: one `create` of a TokenReview through the kube client, its status handed
//! back as [`ReviewedToken`]. Which service account may report, which node a token is for and
//! how long an answer is kept are the controller's to decide.

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use outflow_core::wire::identity::ReviewedToken;
use tokio::sync::OnceCell;

use crate::watch::{config, AccessError, ClusterAccess};

/// Why a token could not be reviewed: the API server did not answer, or not with a review.
/// Never "the token is bad": that is a [`ReviewedToken`] with `authenticated: false`.
#[derive(Debug, thiserror::Error)]
pub enum TokenReviewError {
    /// The API server is down, unreachable, or answered a server error.
    #[error("the Kubernetes API did not review the token")]
    Api(#[source] kube::Error),
    /// The controller's service account may not create TokenReviews.
    #[error("the Kubernetes API forbids this controller to create tokenreviews (authentication.k8s.io): bind its service account to the ClusterRole outflow-controller-tokenreview of deploy/base/rbac.yaml")]
    Forbidden(#[source] kube::Error),
    /// The client cannot be built.
    #[error("cannot reach the Kubernetes API to review tokens")]
    Access(#[source] AccessError),
}

/// Reviews tokens for one audience. Cheap to clone; the client is made on the first review, in
/// the runtime that serves the controller (the kube client spawns its workers there).
#[derive(Clone)]
pub struct TokenReviewer {
    inner: Arc<Inner>,
}

struct Inner {
    config: kube::Config,
    audience: String,
    client: OnceCell<Client>,
}

impl TokenReviewer {
    /// Reads the client configuration `access` names now, so a controller without a usable
    /// one fails at start rather than at its first report. Tokens are reviewed for `audience`
    /// (the audience of the agents' projected tokens).
    pub fn new(access: &ClusterAccess, audience: &str) -> Result<TokenReviewer, AccessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AccessError::Runtime)?;
        let mut config = runtime.block_on(config(access))?;
        // No retries inside the client (it would retry a 503 for minutes while the report's
        // request waits): the controller answers 503 with Retry-After at once and the agent,
        // which keeps the report queued, is the one that tries again.
        config.default_retry = false;
        // A review is one small POST; an API server slower than this is down for the agents.
        config.read_timeout = Some(std::time::Duration::from_secs(5));
        Ok(TokenReviewer {
            inner: Arc::new(Inner {
                config,
                audience: audience.to_string(),
                client: OnceCell::new(),
            }),
        })
    }

    /// The audience tokens are reviewed for.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Who the API server says `token` is, for this reviewer's audience.
    pub fn review(
        &self,
        token: String,
    ) -> impl std::future::Future<Output = Result<ReviewedToken, TokenReviewError>> + Send + 'static
    {
        let inner = self.inner.clone();
        async move {
            let client = inner
                .client
                .get_or_try_init(|| async {
                    Client::try_from(inner.config.clone())
                        .map_err(|e| TokenReviewError::Access(AccessError::Client(e)))
                })
                .await?;
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token),
                    audiences: Some(vec![inner.audience.clone()]),
                },
                ..Default::default()
            };
            let api: Api<TokenReview> = Api::all(client.clone());
            let answer =
                api.create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| match e {
                        kube::Error::Api(ref s) if s.code == 403 => TokenReviewError::Forbidden(e),
                        e => TokenReviewError::Api(e),
                    })?;
            let status = answer.status.unwrap_or_default();
            let user = status.user.unwrap_or_default();
            Ok(ReviewedToken {
                authenticated: status.authenticated.unwrap_or(false),
                username: user.username.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
                audiences: status.audiences.unwrap_or_default(),
                error: status.error.filter(|e| !e.is_empty()),
            })
        }
    }
}
