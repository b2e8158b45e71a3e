//! Agents' tokens checked by the Kubernetes API (`--agent-auth tokenreview`): the agent pod's
//! projected service account token, reviewed for outflow's audience, names the service
//! account and the node of the pod it is bound to.
//!
//! Answers are cached by the token's SHA-256 digest (never the token), for at most
//! [`MAX_TTL`] and never past the token's own expiry, in at most [`MAX_ENTRIES`] entries, so
//! 5,000 agents reporting every 10 s cost a review per agent per few minutes, not one per report.
//! Concurrent requests with one token wait for one review. An API server that does not answer
//! is not cached: its requests get 503 and come again. The review itself is a function the
//! caller gives (the kube crate's, through the real client), so this file decides what an
//! answer lets an agent do and nothing about HTTP to the API server.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use outflow_core::wire::identity::{ReviewedToken, EXTRA_NODE_NAME, EXTRA_POD_NAME};
use tokio::sync::{OnceCell, Semaphore};

use super::counters::AuthCounters;
use super::node_tokens::{digest, Digest};
use super::Refusal;

/// Asks the Kubernetes API who a token is (a TokenReview for the agents' audience). An error
/// is an API server that did not answer, never a bad token.
pub type ReviewToken = Arc<
    dyn Fn(
            String,
        ) -> Pin<
            Box<
                dyn Future<Output = Result<ReviewedToken, Box<dyn std::error::Error + Send + Sync>>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// Longest an answer is kept: a token revoked (its pod deleted) is refused within this.
pub const MAX_TTL: Duration = Duration::from_secs(120);
/// How long a refusal is kept, so an agent with a bad token retrying costs few reviews.
const REFUSAL_TTL: Duration = Duration::from_secs(10);
/// Most answers kept: every node's token, twice over while tokens rotate.
pub const MAX_ENTRIES: usize = 12_000;
/// Reviews asked at once; more wait for a turn, up to [`REVIEW_TIMEOUT`].
const MAX_IN_FLIGHT: usize = 16;
/// Longest a request waits for its review.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// What a review decided, and until when it holds.
#[derive(Clone)]
struct Answer {
    verdict: Result<Arc<str>, Refusal>,
    until: Instant,
}

/// The reviews, their cache and what an answer must say.
pub struct TokenReviews {
    review: ReviewToken,
    audience: String,
    /// The agents' service account as the API names it: `system:serviceaccount:NS:NAME`.
    username: String,
    cache: Mutex<HashMap<Digest, Arc<OnceCell<Answer>>>>,
    turns: Semaphore,
    counters: AuthCounters,
}

impl TokenReviews {
    /// Reviews with `review`, for tokens of `audience`, taking only the service account
    /// `namespace/name`.
    pub fn new(review: ReviewToken, audience: &str, namespace: &str, name: &str) -> TokenReviews {
        TokenReviews {
            review,
            audience: audience.to_string(),
            username: format!("system:serviceaccount:{namespace}:{name}"),
            cache: Mutex::default(),
            turns: Semaphore::new(MAX_IN_FLIGHT),
            counters: AuthCounters::default(),
        }
    }

    pub(super) fn counters(&self) -> &AuthCounters {
        &self.counters
    }

    /// The node `token` is for: from the cache, else from a review.
    pub(super) async fn node_of(&self, token: &str) -> Result<Arc<str>, Refusal> {
        let cell = self.cell(digest(token));
        let reviewed = AtomicBool::new(false);
        let answer = cell
            .get_or_try_init(|| {
                reviewed.store(true, Ordering::Relaxed);
                self.ask(token)
            })
            .await?;
        if !reviewed.load(Ordering::Relaxed) {
            self.counters.cache_hit();
        }
        answer.verdict.clone()
    }

    /// The cache's entry for `key`: the one there while it holds or is being reviewed, else a
    /// new one. Full, it drops what has expired, then refusals, then everything.
    fn cell(&self, key: Digest) -> Arc<OnceCell<Answer>> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let holds = |c: &OnceCell<Answer>| c.get().is_none_or(|a| a.until > now);
        if let Some(c) = cache.get(&key).filter(|c| holds(c)) {
            return c.clone();
        }
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, c| holds(c));
        }
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, c| c.get().is_none_or(|a| a.verdict.is_ok()));
        }
        if cache.len() >= MAX_ENTRIES {
            tracing::warn!(
                entries = cache.len(),
                "the token review cache is full of live agents' tokens: emptied"
            );
            cache.clear();
        }
        let cell = Arc::new(OnceCell::new());
        cache.insert(key, cell.clone());
        cell
    }

    /// Reviews `token` now. Err: the API did not answer, nothing to cache.
    async fn ask(&self, token: &str) -> Result<Answer, Refusal> {
        let unavailable = |why: String| {
            self.counters.reviewed("failed");
            Refusal::Unavailable(format!(
                "the Kubernetes API cannot review the agent's token now ({why})"
            ))
        };
        let review = async {
            let _turn = self.turns.acquire().await;
            (self.review)(token.to_string()).await
        };
        let reviewed = match tokio::time::timeout(REVIEW_TIMEOUT, review).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "no answer in {} s",
                    REVIEW_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) => {
                let why = outflow_core::error_chain(&*e);
                tracing::error!(error = %why, "a TokenReview failed");
                return Err(unavailable(why));
            }
            Ok(Ok(r)) => r,
        };
        self.counters.reviewed(if reviewed.authenticated {
            "authenticated"
        } else {
            "unauthenticated"
        });
        let verdict = self.decide(&reviewed);
        let now = Instant::now();
        let until = match &verdict {
            Ok(_) => now + ttl(token, SystemTime::now()),
            Err(_) => now + REFUSAL_TTL,
        };
        Ok(Answer { verdict, until })
    }

    /// What a review lets the token do: report as the node it names, when it is the agents'
    /// service account's for outflow's audience.
    fn decide(&self, r: &ReviewedToken) -> Result<Arc<str>, Refusal> {
        if !r.authenticated {
            return Err(Refusal::UnknownToken(format!(
                "the Kubernetes API does not accept the token ({}): an agent sends its pod's \
                 projected service account token for audience {:?}, read again for every \
                 report (deploy/base/agent.yaml)",
                r.error.as_deref().unwrap_or("no reason given"),
                self.audience
            )));
        }
        // An API server that ignores audiences answers without them; the token might then
        // be one meant for the API server itself, which outflow must not take.
        if !r.audiences.contains(&self.audience) {
            return Err(Refusal::UnknownToken(format!(
                "the token is not for audience {:?} (it is for {:?}): project the agent's token \
                 with `audience: {}`",
                self.audience, r.audiences, self.audience
            )));
        }
        if r.username != self.username {
            return Err(Refusal::NotAgent(format!(
                "the token is {:?}'s; only the agents' service account {:?} reports \
                 (--agent-service-account)",
                r.username, self.username
            )));
        }
        let first = |key: &str| r.extra.get(key).and_then(|v| v.first()).cloned();
        match first(EXTRA_NODE_NAME) {
            Some(node) if !node.is_empty() => Ok(Arc::from(node)),
            _ => Err(Refusal::NotAgent(format!(
                "the token names no node (user.extra {EXTRA_NODE_NAME:?}{}): Kubernetes 1.30 and \
                 later put it in a pod's projected token; on an older cluster, or with a token \
                 not bound to a pod, agents cannot report with --agent-auth tokenreview",
                match first(EXTRA_POD_NAME) {
                    Some(pod) => format!(", though it is pod {pod:?}'s"),
                    None => String::new(),
                }
            ))),
        }
    }
}

/// How long an answer for `token` holds: [`MAX_TTL`], or less when the token (a JWT the API
/// server has just accepted) expires sooner.
fn ttl(token: &str, now: SystemTime) -> Duration {
    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    match expiry_s(token) {
        Some(exp) => Duration::from_secs(exp.saturating_sub(now_s)).min(MAX_TTL),
        None => MAX_TTL,
    }
}

/// The `exp` claim of a JWT, unverified: read only after the API server accepted the token.
fn expiry_s(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<u64>,
    }
    serde_json::from_slice::<Claims>(&bytes).ok()?.exp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: u64) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(&format!(r#"{{"aud":["outflow"],"exp":{exp}}}"#))
        )
    }

    #[test]
    fn an_answer_holds_no_longer_than_its_token() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(ttl(&jwt(1_000_030), now), Duration::from_secs(30));
        assert_eq!(ttl(&jwt(2_000_000), now), MAX_TTL);
        assert_eq!(ttl(&jwt(999_999), now), Duration::ZERO);
        assert_eq!(ttl("not-a-jwt", now), MAX_TTL);
        assert_eq!(ttl("a.!!!.c", now), MAX_TTL);
    }
}
