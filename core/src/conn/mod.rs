//! Connections: flows keyed by 5-tuple, connection attempts and their outcomes, grouped per
//! (src, dst, dst_port, proto).
//!
//! `table.rs` keeps the bounded flow table, `attempt.rs` decides TCP attempt outcomes, `group.rs`
//! accumulates the per-group counters that become `ConnectionRecord`s. Application payloads seen
//! on a flow (HTTP, TLS, DNS over TCP) are handed to `crate::app` and `crate::dns`.

pub mod attempt;
pub mod group;
pub mod table;

use serde::{Deserialize, Serialize};

/// The outcome of one TCP connection attempt (DESIGN.md §3, a contract).
///
/// Ordered as [`Outcome::ALL`], so an outcome map lists them in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// SYN answered by SYN-ACK.
    Established,
    /// SYN answered by RST.
    Refused,
    /// SYN answered by an ICMP destination-unreachable.
    Unreachable,
    /// No answer within the SYN timeout.
    Unanswered,
    /// The capture ended before the timeout.
    Incomplete,
}

impl Outcome {
    /// All outcomes, in report order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Established,
        Outcome::Refused,
        Outcome::Unreachable,
        Outcome::Unanswered,
        Outcome::Incomplete,
    ];

    /// Whether the attempt failed: refused, unreachable or unanswered. An attempt the capture
    /// cut off is neither a failure nor a success.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Refused | Outcome::Unreachable | Outcome::Unanswered
        )
    }

    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::Unanswered => "unanswered",
            Outcome::Incomplete => "incomplete",
        }
    }

    /// Position in [`Outcome::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Outcome {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A flow's 5-tuple in canonical order: the lower (address, port) endpoint first, so both
/// directions of a flow find the same entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: u128,
    hi: u128,
    lo_port: u16,
    hi_port: u16,
    proto: u8,
}

impl FlowKey {
    /// The key of a packet from (src, sport) to (dst, dport), and whether src is the `lo` side.
    pub fn new(src: u128, sport: u16, dst: u128, dport: u16, proto: u8) -> (FlowKey, bool) {
        if (src, sport) <= (dst, dport) {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    lo_port: sport,
                    hi_port: dport,
                    proto,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    lo_port: dport,
                    hi_port: sport,
                    proto,
                },
                false,
            )
        }
    }

    /// The endpoint on the `lo` (true) or `hi` side.
    pub fn endpoint(&self, lo: bool) -> (u128, u16) {
        if lo {
            (self.lo, self.lo_port)
        } else {
            (self.hi, self.hi_port)
        }
    }

    /// IP protocol number.
    pub fn proto(&self) -> u8 {
        self.proto
    }
}

/// Guesses which side of a flow first seen mid-stream is the client: the side whose port is not a
/// well-known or service port. Used only when no SYN says it.
pub fn sender_is_client(sport: u16, dport: u16) -> bool {
    let service = |p: u16| p < 1024 || matches!(p, 3128 | 8080 | 8443 | 5432 | 6379 | 9090);
    let ephemeral = |p: u16| p >= 32768;
    match (service(sport), service(dport)) {
        (true, false) => false,
        (false, true) => true,
        _ => !ephemeral(dport) || ephemeral(sport),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_a_key() {
        let (a, a_lo) = FlowKey::new(10, 40000, 20, 443, 6);
        let (b, b_lo) = FlowKey::new(20, 443, 10, 40000, 6);
        assert_eq!(a, b);
        assert_ne!(a_lo, b_lo);
    }

    #[test]
    fn mid_stream_client_is_the_ephemeral_side() {
        assert!(sender_is_client(51000, 443));
        assert!(!sender_is_client(53, 40000));
        assert!(sender_is_client(40000, 3128));
    }
}
