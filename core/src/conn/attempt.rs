//! Decides the outcome of each TCP connection attempt.
//!
//! An attempt opens on a SYN and closes on the first SYN-ACK, RST or ICMP error for its 5-tuple.
//! SYNs repeating the attempt's initial sequence number are retransmissions of it, not new
//! attempts. Attempts still open once packet time passes the SYN timeout are `unanswered`; an
//! answer that comes later still turns them into `established` (the person wants to know it
//! worked, slowly), and the early verdict is taken back. Attempts open when the input ends are
//! `incomplete`. Which pod sent it and what category the peer is are not decided here.

use super::Outcome;

/// State of the latest attempt on a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    /// No SYN seen on this flow (captured mid-stream).
    #[default]
    None,
    /// SYN sent, no answer yet.
    Open,
    /// Decided.
    Decided(Outcome),
}

/// The latest connection attempt on a flow.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt {
    /// Where it stands.
    pub state: State,
    /// Initial sequence number of the SYN.
    pub isn: u32,
    /// Time of the first SYN.
    pub syn_ns: u64,
}

/// What a packet did to an attempt, for the group counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing to count.
    None,
    /// A new attempt started; its timeout must be scheduled. Carries the outcome the previous
    /// attempt on this 5-tuple got, if it was still open.
    Opened(Option<Outcome>),
    /// The SYN was sent again.
    Retransmitted,
    /// The attempt is decided; `latency_ns` for established ones.
    Decided {
        /// The outcome.
        outcome: Outcome,
        /// SYN to SYN-ACK.
        latency_ns: Option<u64>,
        /// The outcome counted earlier and now taken back (a late answer after `unanswered`).
        retracted: Option<Outcome>,
    },
}

impl Attempt {
    /// A SYN (without ACK) from the client.
    pub fn on_syn(&mut self, isn: u32, ts_ns: u64, timeout_ns: u64) -> Effect {
        if self.state != State::None && self.isn == isn {
            return Effect::Retransmitted;
        }
        let previous = match self.state {
            State::Open if ts_ns >= self.syn_ns.saturating_add(timeout_ns) => {
                Some(Outcome::Unanswered)
            }
            // The client gave up and reused the port before the timeout.
            State::Open => Some(Outcome::Incomplete),
            _ => None,
        };
        *self = Attempt {
            state: State::Open,
            isn,
            syn_ns: ts_ns,
        };
        Effect::Opened(previous)
    }

    /// A SYN-ACK from the server acknowledging `ack`.
    pub fn on_syn_ack(&mut self, ack: u32, ts_ns: u64) -> Effect {
        if ack != self.isn.wrapping_add(1) {
            return Effect::None;
        }
        let retracted = match self.state {
            State::Open => None,
            State::Decided(Outcome::Unanswered) => Some(Outcome::Unanswered),
            _ => return Effect::None,
        };
        self.state = State::Decided(Outcome::Established);
        Effect::Decided {
            outcome: Outcome::Established,
            latency_ns: Some(ts_ns.saturating_sub(self.syn_ns)),
            retracted,
        }
    }

    /// A RST from the server; `ack` when the ACK bit is set.
    pub fn on_rst(&mut self, ack: Option<u32>) -> Effect {
        if ack.is_some_and(|a| a != self.isn.wrapping_add(1)) {
            return Effect::None;
        }
        self.answer(Outcome::Refused)
    }

    /// Decides an open attempt, or one already called unanswered (the answer came after the SYN
    /// timeout; the early verdict is taken back).
    fn answer(&mut self, outcome: Outcome) -> Effect {
        let retracted = match self.state {
            State::Open => None,
            State::Decided(Outcome::Unanswered) => Some(Outcome::Unanswered),
            _ => return Effect::None,
        };
        self.state = State::Decided(outcome);
        Effect::Decided {
            outcome,
            latency_ns: None,
            retracted,
        }
    }

    /// An ICMP destination-unreachable quoting this flow's client packet.
    pub fn on_icmp_error(&mut self) -> Effect {
        self.answer(Outcome::Unreachable)
    }

    /// The SYN timeout scheduled for the attempt that opened at `syn_ns` has passed.
    pub fn on_timeout(&mut self, syn_ns: u64) -> Effect {
        if self.state != State::Open || self.syn_ns != syn_ns {
            return Effect::None;
        }
        self.state = State::Decided(Outcome::Unanswered);
        Effect::Decided {
            outcome: Outcome::Unanswered,
            latency_ns: None,
            retracted: None,
        }
    }

    /// The input ended or the flow was evicted: an open attempt is incomplete.
    pub fn on_end(&mut self) -> Effect {
        if self.state != State::Open {
            return Effect::None;
        }
        self.state = State::Decided(Outcome::Incomplete);
        Effect::Decided {
            outcome: Outcome::Incomplete,
            latency_ns: None,
            retracted: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 3_000_000_000;

    fn decided(e: Effect) -> Outcome {
        match e {
            Effect::Decided { outcome, .. } => outcome,
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn syn_answered_by_syn_ack_is_established_with_latency() {
        let mut a = Attempt::default();
        assert_eq!(a.on_syn(100, 1_000, T), Effect::Opened(None));
        match a.on_syn_ack(101, 5_000) {
            Effect::Decided {
                outcome,
                latency_ns,
                ..
            } => {
                assert_eq!(outcome, Outcome::Established);
                assert_eq!(latency_ns, Some(4_000));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn syn_answered_by_rst_is_refused() {
        let mut a = Attempt::default();
        a.on_syn(7, 0, T);
        assert_eq!(decided(a.on_rst(Some(8))), Outcome::Refused);
    }

    #[test]
    fn rst_for_another_sequence_is_ignored() {
        let mut a = Attempt::default();
        a.on_syn(7, 0, T);
        assert_eq!(a.on_rst(Some(99)), Effect::None);
    }

    #[test]
    fn same_isn_is_a_retransmission() {
        let mut a = Attempt::default();
        a.on_syn(7, 0, T);
        assert_eq!(a.on_syn(7, 1_000_000_000, T), Effect::Retransmitted);
    }

    #[test]
    fn timeout_makes_unanswered_and_late_answer_retracts_it() {
        let mut a = Attempt::default();
        a.on_syn(7, 0, T);
        assert_eq!(decided(a.on_timeout(0)), Outcome::Unanswered);
        match a.on_syn_ack(8, 3_500_000_000) {
            Effect::Decided {
                outcome, retracted, ..
            } => {
                assert_eq!(outcome, Outcome::Established);
                assert_eq!(retracted, Some(Outcome::Unanswered));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn icmp_error_after_the_syn_timeout_still_explains_the_attempt() {
        // A router gives up on ARP after ~3 s and only then sends host-unreachable.
        let mut a = Attempt::default();
        a.on_syn(1, 0, T);
        a.on_timeout(0);
        match a.on_icmp_error() {
            Effect::Decided {
                outcome, retracted, ..
            } => {
                assert_eq!(outcome, Outcome::Unreachable);
                assert_eq!(retracted, Some(Outcome::Unanswered));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn icmp_error_makes_unreachable_and_open_at_end_is_incomplete() {
        let mut a = Attempt::default();
        a.on_syn(1, 0, T);
        assert_eq!(decided(a.on_icmp_error()), Outcome::Unreachable);
        let mut b = Attempt::default();
        b.on_syn(1, 0, T);
        assert_eq!(decided(b.on_end()), Outcome::Incomplete);
    }

    #[test]
    fn new_isn_while_open_closes_the_previous_attempt() {
        let mut a = Attempt::default();
        a.on_syn(1, 0, T);
        assert_eq!(
            a.on_syn(50, T + 1, T),
            Effect::Opened(Some(Outcome::Unanswered))
        );
    }
}
