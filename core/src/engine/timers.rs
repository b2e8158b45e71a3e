//! Timeouts that packet time has passed: unanswered SYNs, closed flows leaving the table, idle
//! flows expiring, DNS queries without a response.
//!
//! Packet time is the engine's only clock, so these run from `observe` (every 100 ms of it),
//! from `advance` when the live agent moves time on, and once more at the end of the input.

use super::config::SECOND;
use super::flows::{self, close_flow};
use super::Engine;
use crate::decode::proto;

impl Engine {
    /// Applies timeouts that packet time has passed; runs every 100 ms of packet time.
    pub(super) fn sweep(&mut self) {
        let now = self.now_ns;
        self.next_sweep_ns = now.saturating_add(SECOND / 10);
        while let Some(&(deadline, key, syn_ns)) = self.syn_deadlines.front() {
            if deadline > now {
                break;
            }
            self.syn_deadlines.pop_front();
            if let Some(flow) = self.flows.get_mut(&key) {
                let effect = flow.attempt.on_timeout(syn_ns);
                flows::defer(&mut self.groups, flow, effect);
            }
        }
        let linger = self.cfg.closed_linger_ns;
        while let Some(&(deadline, key)) = self.closing.front() {
            if deadline > now {
                break;
            }
            self.closing.pop_front();
            let Some(flow) = self.flows.get_mut(&key) else {
                continue;
            };
            if !flow.is_closed() {
                continue; // Reopened with a new SYN.
            }
            let quiet_since = flow.last_ns.saturating_add(linger);
            if quiet_since > now {
                self.closing.push_back((quiet_since, key));
            } else if let Some(mut flow) = self.flows.remove(&key) {
                close_flow(&mut self.groups, &mut self.events, &mut flow);
            }
        }
        self.dns.sweep(now);
        if now >= self.next_expire_ns {
            self.next_expire_ns = now.saturating_add(10 * SECOND);
            let tcp_cutoff = now.saturating_sub(self.cfg.flow_idle_ns);
            let udp_cutoff = now.saturating_sub(self.cfg.udp_idle_ns);
            let (groups, events) = (&mut self.groups, &mut self.events);
            self.flows.expire(
                |k, f| {
                    f.last_ns
                        >= if k.proto() == proto::UDP {
                            udp_cutoff
                        } else {
                            tcp_cutoff
                        }
                },
                |_, f| close_flow(groups, events, f),
            );
        }
    }
}
