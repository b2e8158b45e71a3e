//! The engine's limits and timeouts, and their defaults.
//!
//! Kept apart from the engine so the knobs that callers (cli flags, the agent's settings) set
//! read as one list, without the packet handling around them.

pub(super) const SECOND: u64 = 1_000_000_000;

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct Config {
    /// A SYN with no answer for this long is `unanswered` (DESIGN.md: 3 s).
    pub syn_timeout_ns: u64,
    /// A DNS query with no response for this long is `timeout` (DESIGN.md: 5 s).
    pub dns_timeout_ns: u64,
    /// Search-list runs end after this long without a new query.
    pub dns_fold_gap_ns: u64,
    /// Flows tracked at once.
    pub max_flows: usize,
    /// Connection groups recorded.
    pub max_groups: usize,
    /// DNS queries awaiting an answer at once.
    pub max_dns_pending: usize,
    /// DNS records (client, name, type) recorded.
    pub max_dns_records: usize,
    /// TCP flows idle this long are forgotten.
    pub flow_idle_ns: u64,
    /// UDP flows idle this long are forgotten (a DNS exchange is over in seconds).
    pub udp_idle_ns: u64,
    /// A closed TCP flow (both FINs or a RST) stays this long for its last ACKs, then leaves;
    /// so does a UDP DNS flow once answered, for a late or repeated answer.
    pub closed_linger_ns: u64,
    /// Recognise packets seen on several interfaces (`tcpdump -i any`) and count them once.
    pub dedup: bool,
    /// How far apart two copies of one packet may be.
    pub dedup_window_ns: u64,
    /// Count packets and bytes from the packets observed. The live agent turns it off: its
    /// datapath counts every packet in the kernel and shows the engine only the control ones, so
    /// the counts come through [`Engine::add_traffic`](super::Engine::add_traffic) instead.
    pub count_traffic: bool,
    /// Say what each packet decided ([`Engine::take_note`](super::Engine::take_note)), for a
    /// capture's packet comments.
    pub notes: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            syn_timeout_ns: 3 * SECOND,
            dns_timeout_ns: 5 * SECOND,
            dns_fold_gap_ns: SECOND,
            max_flows: 1 << 20,
            max_groups: 200_000,
            max_dns_pending: 65_536,
            max_dns_records: 200_000,
            flow_idle_ns: 300 * SECOND,
            udp_idle_ns: 30 * SECOND,
            closed_linger_ns: 2 * SECOND,
            dedup: false,
            dedup_window_ns: 50_000_000,
            count_traffic: true,
            notes: false,
        }
    }
}
