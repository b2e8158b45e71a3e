//! Whether each node's agent is asking for its captures, and the warning a new capture carries
//! when it is not.
//!
//! A capture waits until its node's agent polls; saying so at once spares a person watching a
//! capture that cannot start. The states themselves are kept elsewhere.

use outflow_core::wire::health::is_poll_stale;

use super::Captures;

/// Nodes whose last poll is remembered (the AKS node limit, with room).
const MAX_POLLING_NODES: usize = 10_000;

impl Captures {
    /// Notes that `node`'s agent asked for its captures at `now_ns`.
    pub(super) fn note_poll(&self, node: &str, now_ns: u64) {
        let mut polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a name is kept only while there are few, or when it is already known.
        if polls.len() < MAX_POLLING_NODES || polls.contains_key(node) {
            polls.insert(node.to_string(), now_ns);
        }
    }

    /// Why a capture on `node` may wait: its agent has not asked for captures lately.
    pub fn stale_warning(&self, node: &str, now_ns: u64) -> Option<String> {
        let secs = |ns: u64| ns / 1_000_000_000;
        let last = self
            .polls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied();
        match last {
            Some(t) if is_poll_stale(t, now_ns) => Some(format!(
                "node {node}'s agent last asked for captures {} s ago: it may be down or cut off \
                 from the controller; the capture starts when it asks again",
                secs(now_ns - t)
            )),
            None if is_poll_stale(self.opened_ns, now_ns) => Some(format!(
                "no agent on node {node} has asked for captures in the {} s this controller has \
                 run: check that the agent runs there and reaches this controller (its log says \
                 why not); the capture starts when it asks",
                secs(now_ns - self.opened_ns)
            )),
            _ => None,
        }
    }
}
