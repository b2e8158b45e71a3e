//! What each decoded packet does: a TCP segment, a UDP datagram (DNS), an ICMP error.
//!
//! `Engine::observe` decodes and deduplicates; these handlers find the packet's flow, drive its
//! connection attempt and application parser, and hand DNS payloads to the tracker. Timeouts
//! are `timers.rs`'s, the report `report.rs`'s.

use super::flows::{self, apply, apply_app_event, flow_entry};
use super::notes::{self, Note};
use super::Engine;
use crate::app::{App, AppEvent};
use crate::conn::attempt::Effect;
use crate::conn::table::{ANSWERED, FIN_CLIENT, FIN_SERVER, RESET};
use crate::conn::{sender_is_client, FlowKey, Outcome};
use crate::decode::{ip_bits, proto, tcp_flags, Decoded, TcpSegment};
use crate::icmp::Rejection;

impl Engine {
    pub(super) fn on_tcp(&mut self, ts: u64, iface: u32, d: &Decoded<'_>, seg: &TcpSegment<'_>) {
        let (src, dst) = (d.src, d.dst);
        let (key, src_is_lo) = FlowKey::new(src, seg.sport, dst, seg.dport, proto::TCP);
        let syn = seg.flags & tcp_flags::SYN != 0;
        let ack = seg.flags & tcp_flags::ACK != 0;
        let rst = seg.flags & tcp_flags::RST != 0;
        let src_is_client = || {
            if syn {
                !ack
            } else {
                sender_is_client(seg.sport, seg.dport)
            }
        };
        let flow = flow_entry(
            &mut self.flows,
            &mut self.groups,
            &mut self.events,
            ts,
            key,
            src_is_lo,
            src_is_client,
            (seg.sport, seg.dport),
            iface,
        );
        let from_client = src_is_lo == flow.client_is_lo;
        let effect = if syn && !ack && from_client {
            flow.attempt.on_syn(seg.seq, ts, self.cfg.syn_timeout_ns)
        } else if syn && ack && !from_client {
            flow.attempt.on_syn_ack(seg.ack, ts)
        } else if rst && !from_client {
            flow.attempt.on_rst(ack.then_some(seg.ack))
        } else {
            Effect::None
        };
        let group = flow.group;
        if let (Effect::Opened(_), Some(t)) = (effect, d.tunnel) {
            // Read on the SYN only: the group is rarely in cache.
            self.groups.saw_client_tunnel(group, t);
        }
        if let Effect::Opened(_) = effect {
            // A new connection on a reused 5-tuple starts with fresh parser state.
            flow.teardown = 0;
            flow.app = App::for_port(if from_client { seg.dport } else { seg.sport });
            self.syn_deadlines
                .push_back((ts.saturating_add(self.cfg.syn_timeout_ns), key, ts));
        }
        if seg.flags & (tcp_flags::FIN | tcp_flags::RST) != 0 && !flow.is_closed() {
            flow.teardown |= if rst {
                RESET
            } else if from_client {
                FIN_CLIENT
            } else {
                FIN_SERVER
            };
            if flow.is_closed() {
                self.closing
                    .push_back((ts.saturating_add(self.cfg.closed_linger_ns), key));
            }
        }
        if !seg.payload.is_empty() && !matches!(flow.app, App::Opaque) {
            flow.app.on_payload(
                from_client,
                seg.seq,
                seg.payload,
                seg.payload_len,
                &mut self.events,
            );
        }
        flow.saw(self.cfg.count_traffic, from_client, d.ip_len, ts);
        if self.cfg.notes {
            self.note = notes::of_effect(effect, ts, flow.attempt.syn_ns, self.cfg.syn_timeout_ns);
        }
        flows::defer(&mut self.groups, flow, effect);
        if !self.events.is_empty() {
            self.apply_events(ts, iface, group, (src, seg.sport), (dst, seg.dport));
        }
    }

    fn apply_events(
        &mut self,
        ts: u64,
        iface: u32,
        group: u32,
        src: (u128, u16),
        dst: (u128, u16),
    ) {
        for ev in std::mem::take(&mut self.events) {
            match ev {
                AppEvent::DnsMessage(bytes) => {
                    self.dns
                        .on_message(ts, iface, src.0, src.1, dst.0, dst.1, true, &bytes);
                }
                other => {
                    if let Some(g) = self.groups.get_mut(group) {
                        apply_app_event(g, other);
                    }
                }
            }
        }
    }

    pub(super) fn on_udp(
        &mut self,
        ts: u64,
        iface: u32,
        d: &Decoded<'_>,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) {
        let (src, dst) = (d.src, d.dst);
        let (key, src_is_lo) = FlowKey::new(src, sport, dst, dport, proto::UDP);
        let src_is_client = || sport != 53 && sender_is_client(sport, dport);
        let flow = flow_entry(
            &mut self.flows,
            &mut self.groups,
            &mut self.events,
            ts,
            key,
            src_is_lo,
            src_is_client,
            (sport, dport),
            iface,
        );
        let from_client = src_is_lo == flow.client_is_lo;
        flow.saw(self.cfg.count_traffic, from_client, d.ip_len, ts);
        if let (true, Some(t)) = (from_client, d.tunnel) {
            let group = flow.group;
            self.groups.saw_client_tunnel(group, t);
        }
        if sport == 53 || dport == 53 {
            // An answer ends the exchange: the flow leaves once quiet for the linger, as a closed
            // TCP connection does, not after the UDP idle time. Resolvers ask from a new port
            // each time, and these flows were most of the table, and of its cache misses.
            if !from_client && !flow.is_closed() {
                flow.teardown |= ANSWERED;
                self.closing
                    .push_back((ts.saturating_add(self.cfg.closed_linger_ns), key));
            }
            self.dns
                .on_message(ts, iface, src, sport, dst, dport, false, payload);
        }
    }

    pub(super) fn on_icmp(&mut self, ts: u64, r: &Rejection) {
        if r.reason.is_mtu_signal() || (r.proto != proto::TCP && r.proto != proto::UDP) {
            return;
        }
        let (src, dst) = (ip_bits(r.src), ip_bits(r.dst));
        let (key, src_is_lo) = FlowKey::new(src, r.sport, dst, r.dport, r.proto);
        // Only an error about what the client sent says something about the destination; one
        // about a reply (a pod refusing a DNS answer that came too late) does not.
        let known = self
            .flows
            .get_mut(&key)
            .map(|f| f.client_is_lo == src_is_lo);
        match known {
            Some(false) => return,
            None if !sender_is_client(r.sport, r.dport) => return,
            _ => {}
        }
        let flow = flow_entry(
            &mut self.flows,
            &mut self.groups,
            &mut self.events,
            ts,
            key,
            src_is_lo,
            || true,
            (r.sport, r.dport),
            // An ICMP error comes towards the client, from wherever the network sent it.
            0,
        );
        let unreachable = Effect::Decided {
            outcome: Outcome::Unreachable,
            latency_ns: None,
            retracted: None,
        };
        let effect = if r.proto == proto::TCP {
            match flow.attempt.on_icmp_error() {
                Effect::None if known.is_none() => unreachable, // the SYN was not captured
                effect => effect,
            }
        } else if !std::mem::replace(&mut flow.rejected, true) {
            unreachable
        } else {
            Effect::None
        };
        let group = flow.group;
        if self.cfg.notes && effect != Effect::None {
            self.note = Some(Note::Unreachable {
                reason: r.reason,
                from: r.from,
            });
        }
        if effect != Effect::None {
            // Rare, and the group is read for the rejection anyway: counted now, after what
            // waited.
            flows::settle(&mut self.groups, flow);
            if let Some(g) = self.groups.get_mut(group) {
                apply(g, effect);
                g.reject(r.reason, ip_bits(r.from));
            }
        }
        if r.proto == proto::UDP && r.dport == 53 {
            self.dns.on_unreachable(ts, src, r.sport, dst, r.dport);
        }
    }
}
