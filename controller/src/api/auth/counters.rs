//! What the agent check counts for `/metrics`: token reviews by their answer, the reviews the
//! cache saved, and refusals by reason, so a flood of reviews or of refused agents shows.
//!
//! A registry of its own, spliced into the controller's exposition by the metrics handler:
//! these count requests, not reports, and live with the check that makes them.

use std::sync::Arc;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The counters; clones count into the same series.
#[derive(Clone)]
pub struct AuthCounters {
    registry: Arc<Registry>,
    reviews: Family<ResultLabel, Counter>,
    cache_hits: Counter,
    refusals: Family<ReasonLabel, Counter>,
}

impl Default for AuthCounters {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("outflow");
        let reviews = Family::<ResultLabel, Counter>::default();
        registry.register(
            "agent_token_reviews",
            "TokenReviews asked of the Kubernetes API for agents' tokens, by answer \
             (authenticated, unauthenticated, failed)",
            reviews.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "agent_token_review_cache_hits",
            "Agents' requests answered from a cached TokenReview",
            cache_hits.clone(),
        );
        let refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "agent_auth_refusals",
            "Agents' requests refused, by reason (unknown_token, not_agent, wrong_node, \
             shared_token, review_unavailable)",
            refusals.clone(),
        );
        AuthCounters {
            registry: Arc::new(registry),
            reviews,
            cache_hits,
            refusals,
        }
    }
}

impl AuthCounters {
    /// Counts a review the Kubernetes API answered (`authenticated`, `unauthenticated`) or
    /// did not (`failed`).
    pub(crate) fn reviewed(&self, result: &'static str) {
        self.reviews.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a request answered from the cache.
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// Counts a refusal.
    pub(crate) fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The series in Prometheus text, without the end-of-exposition line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        out
    }
}
