//! What the engine concluded from one packet, said in a sentence: the comments a capture puts
//! on the packets that decided something, so Wireshark shows "connection refused" on the RST
//! and "SYN unanswered for 3.0 s" on the retransmission that proves it.
//!
//! Only packets carry notes, so a verdict reached by a timer (a SYN with no answer and no
//! retransmission) has no packet to sit on; the retransmissions a client sends while it waits
//! carry it instead.

use std::fmt;
use std::net::IpAddr;

use crate::conn::attempt::Effect;
use crate::conn::Outcome;
use crate::dns::transaction::Answered;
use crate::dns::DnsOutcome;
use crate::icmp::Reason;

/// A conclusion drawn from one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A SYN repeating an attempt's first: `after_ns` since the first; `unanswered` once that
    /// is past the SYN timeout.
    SynAgain {
        /// Time since the attempt's first SYN.
        after_ns: u64,
        /// The attempt is past the SYN timeout with no answer.
        unanswered: bool,
    },
    /// The SYN-ACK answering a SYN; `late` when the SYN had already been called unanswered.
    Established {
        /// SYN to SYN-ACK.
        latency_ns: u64,
        /// The answer came after the SYN timeout.
        late: bool,
    },
    /// The RST answering a SYN.
    Refused,
    /// An ICMP destination-unreachable about what the client sent.
    Unreachable {
        /// What the error said.
        reason: Reason,
        /// Who sent it.
        from: IpAddr,
    },
    /// A DNS response to a pending query. When its name ends in a search-list suffix, an
    /// NXDOMAIN is expected while the resolver walks its list, and a failure only if every
    /// expansion fails.
    Dns(Answered),
}

/// The note for what a TCP packet did to its flow's attempt (opened at `syn_ns`).
pub(super) fn of_effect(effect: Effect, ts_ns: u64, syn_ns: u64, timeout_ns: u64) -> Option<Note> {
    match effect {
        Effect::Retransmitted => Some(Note::SynAgain {
            after_ns: ts_ns.saturating_sub(syn_ns),
            unanswered: ts_ns >= syn_ns.saturating_add(timeout_ns),
        }),
        Effect::Decided {
            outcome: Outcome::Established,
            latency_ns,
            retracted,
        } => Some(Note::Established {
            latency_ns: latency_ns.unwrap_or(0),
            late: retracted.is_some(),
        }),
        Effect::Decided {
            outcome: Outcome::Refused,
            ..
        } => Some(Note::Refused),
        _ => None,
    }
}

/// Seconds, milliseconds or microseconds, whichever reads better.
fn span(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.1} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{} µs", ns / 1000)
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::SynAgain {
                after_ns,
                unanswered: true,
            } => write!(
                f,
                "outflow: SYN unanswered for {} (sent again)",
                span(*after_ns)
            ),
            Note::SynAgain { after_ns, .. } => write!(
                f,
                "outflow: SYN sent again {} after the first, no answer yet",
                span(*after_ns)
            ),
            Note::Established {
                latency_ns,
                late: false,
            } => write!(
                f,
                "outflow: connection established in {}",
                span(*latency_ns)
            ),
            Note::Established { latency_ns, .. } => write!(
                f,
                "outflow: connection established after {}, past the SYN timeout",
                span(*latency_ns)
            ),
            Note::Refused => write!(f, "outflow: connection refused (RST answering the SYN)"),
            Note::Unreachable { reason, from } => {
                write!(f, "outflow: unreachable, {} from {from}", reason.name())
            }
            Note::Dns(a) => {
                write!(f, "outflow: DNS {} for {}", a.outcome.as_str(), a.name)?;
                if a.expansion && matches!(a.outcome, DnsOutcome::NxDomain | DnsOutcome::NoData) {
                    write!(f, " (search-list expansion)")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_read_as_sentences() {
        let syn = Note::SynAgain {
            after_ns: 3_050_000_000,
            unanswered: true,
        };
        assert_eq!(
            syn.to_string(),
            "outflow: SYN unanswered for 3.0 s (sent again)"
        );
        let est = Note::Established {
            latency_ns: 420_000,
            late: false,
        };
        assert_eq!(est.to_string(), "outflow: connection established in 420 µs");
        let icmp = Note::Unreachable {
            reason: Reason {
                v6: false,
                code: 10,
            },
            from: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(
            icmp.to_string(),
            "outflow: unreachable, host-prohibited from 10.0.0.1"
        );
        let dns = |outcome, expansion| {
            Note::Dns(Answered {
                outcome,
                name: "nope.example.com".into(),
                expansion,
            })
        };
        assert_eq!(
            dns(DnsOutcome::NxDomain, false).to_string(),
            "outflow: DNS nxdomain for nope.example.com"
        );
        assert_eq!(
            dns(DnsOutcome::NxDomain, true).to_string(),
            "outflow: DNS nxdomain for nope.example.com (search-list expansion)"
        );
        assert_eq!(
            dns(DnsOutcome::Ok, true).to_string(),
            "outflow: DNS ok for nope.example.com"
        );
    }
}
