//! The engine: packets in, a report out.
//!
//! One engine serves offline analysis and the live agent alike, so both decide the same way. It
//! is fed packets with timestamps and interfaces, keeps bounded state (flows, groups, pending DNS
//! queries; limits in `Config`), uses packet time as its only clock, and never touches files or
//! sockets. Whatever could not be used is counted in `CaptureStats`, never dropped silently.

use std::collections::VecDeque;

mod flows;
mod live;
mod notes;
mod records;

pub use live::Traffic;
pub use notes::Note;

use flows::{apply, apply_app_event, close_flow, flow_entry};
use records::record;

use crate::app::{App, AppEvent};
use crate::capfile::{LinkType, Packet};
use crate::category::Classifier;
use crate::conn::attempt::Effect;
use crate::conn::group::{self as conn_group, Groups};
use crate::conn::table::{FlowTable, ANSWERED, FIN_CLIENT, FIN_SERVER, RESET};
use crate::conn::{sender_is_client, FlowKey, Outcome};
use crate::decode::{
    self, bits_ip, ip_bits, proto, tcp_flags, DecodeError, Decoded, TcpSegment, L4,
};
use crate::dedup::Dedup;
use crate::dns::lookup::Folder;
use crate::dns::search_list::SearchList;
use crate::dns::transaction::DnsTracker;
use crate::icmp::Rejection;
use crate::profile::Profile;
use crate::report::{rfc3339, CaptureStats, ConnectionRecord, Report};

const SECOND: u64 = 1_000_000_000;

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
    /// the counts come through [`Engine::add_traffic`] instead.
    pub count_traffic: bool,
    /// Say what each packet decided ([`Engine::take_note`]), for a capture's packet comments.
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

/// The engine.
pub struct Engine {
    cfg: Config,
    classifier: Classifier,
    flows: FlowTable,
    groups: Groups,
    dns: DnsTracker,
    dedup: Option<Dedup>,
    syn_deadlines: VecDeque<(u64, FlowKey, u64)>,
    /// Closed TCP flows and when they may leave the table. Removing finished connections keeps
    /// the table as small as the set of live ones, which is what keeps lookups in cache.
    closing: VecDeque<(u64, FlowKey)>,
    events: Vec<AppEvent>,
    stats: CaptureStats,
    first_ns: Option<u64>,
    /// Where the current live window began (`drain`).
    window_start_ns: Option<u64>,
    now_ns: u64,
    next_sweep_ns: u64,
    next_expire_ns: u64,
    /// What the last packet decided, when `cfg.notes`.
    note: Option<Note>,
}

impl Engine {
    /// An engine with default limits.
    pub fn new(profile: &Profile) -> Engine {
        Engine::with_config(profile, Config::default())
    }

    /// An engine with these limits.
    pub fn with_config(profile: &Profile, cfg: Config) -> Engine {
        let search = SearchList::new(&profile.cluster_domain, &profile.search_domains);
        let folder = Folder::new(search, cfg.dns_fold_gap_ns, cfg.max_dns_records);
        let mut dns = DnsTracker::new(folder, cfg.dns_timeout_ns, cfg.max_dns_pending);
        dns.noting = cfg.notes;
        Engine {
            classifier: Classifier::new(profile),
            flows: FlowTable::new(cfg.max_flows),
            groups: Groups::new(cfg.max_groups),
            dns,
            dedup: cfg.dedup.then(|| Dedup::new(cfg.dedup_window_ns)),
            syn_deadlines: VecDeque::new(),
            closing: VecDeque::new(),
            events: Vec::new(),
            stats: CaptureStats::default(),
            first_ns: None,
            window_start_ns: None,
            now_ns: 0,
            next_sweep_ns: 0,
            next_expire_ns: 0,
            note: None,
            cfg,
        }
    }

    /// Turns on recognition of packets captured on several interfaces.
    pub fn enable_dedup(&mut self) {
        if self.dedup.is_none() {
            self.dedup = Some(Dedup::new(self.cfg.dedup_window_ns));
        }
    }

    /// Records that a capture file ended mid-record; it becomes a finding.
    pub fn note_truncated_file(&mut self, name: &str) {
        self.stats.truncated_files.push(name.to_string());
    }

    /// Records a read error; it becomes a finding.
    pub fn note_error(&mut self, message: String) {
        self.stats.errors.push(message);
    }

    /// Flows in the table now (live connections, plus closed ones lingering for their last ACKs).
    pub fn tracked_flows(&self) -> usize {
        self.flows.len()
    }

    /// Names DNS answers gave each address so far (what a capture's name-resolution block
    /// holds).
    pub fn dns_names(&self) -> impl Iterator<Item = (std::net::IpAddr, &[String])> {
        self.dns.names.iter()
    }

    /// How many (address, name) pairs DNS answers gave so far; it grows with each new one.
    pub fn dns_names_learned(&self) -> u64 {
        self.dns.names.learned()
    }

    /// What the last packet observed decided (a connection's outcome, a SYN sent again, a DNS
    /// answer), when the engine was made with `Config::notes`.
    pub fn take_note(&mut self) -> Option<Note> {
        let answered = self.dns.answered.take();
        self.note.take().or_else(|| answered.map(Note::Dns))
    }

    /// Feeds one packet.
    pub fn observe(&mut self, packet: &Packet<'_>) {
        self.stats.packets += 1;
        if self.cfg.notes {
            self.note = None;
            self.dns.answered = None;
        }
        if (packet.data.len() as u32) < packet.orig_len {
            self.stats.snapped_frames += 1;
        }
        let ts = packet.ts_ns;
        self.first_ns.get_or_insert(ts);
        if ts > self.now_ns {
            self.now_ns = ts;
        }
        if self.now_ns >= self.next_sweep_ns {
            self.sweep();
        }
        let d = match decode::decode(packet) {
            Ok(d) => d,
            Err(e) => {
                match e {
                    DecodeError::NotIp => self.stats.non_ip += 1,
                    DecodeError::Truncated => self.stats.truncated_frames += 1,
                    DecodeError::Undecodable => self.stats.undecodable += 1,
                    DecodeError::UnsupportedLink => self.stats.unsupported_link += 1,
                }
                return;
            }
        };
        if self.dedup.is_none() && matches!(packet.link, LinkType::LinuxSll | LinkType::LinuxSll2) {
            // An `any` capture shows forwarded packets on every interface they cross.
            self.enable_dedup();
        }
        if let Some(dedup) = &mut self.dedup {
            let origin = match (packet.link, d.cooked_origin) {
                (LinkType::LinuxSll, _) => None,
                (_, Some((ifindex, pkttype))) => {
                    Some(((packet.iface as u64) << 32) ^ ((ifindex as u64) << 8) ^ pkttype as u64)
                }
                (_, None) => Some(packet.iface as u64),
            };
            if dedup.is_copy(d.fingerprint(), origin, ts) {
                self.stats.duplicates += 1;
                return;
            }
        }
        self.stats.ip_packets += 1;
        match &d.l4 {
            L4::Tcp(seg) => self.on_tcp(ts, &d, seg),
            L4::Udp {
                sport,
                dport,
                payload,
            } => self.on_udp(ts, &d, *sport, *dport, payload),
            L4::IcmpError(r) => self.on_icmp(ts, r),
            L4::Other => {}
        }
    }

    fn on_tcp(&mut self, ts: u64, d: &Decoded<'_>, seg: &TcpSegment<'_>) {
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
            self.apply_events(ts, group, (src, seg.sport), (dst, seg.dport));
        }
    }

    fn apply_events(&mut self, ts: u64, group: u32, src: (u128, u16), dst: (u128, u16)) {
        for ev in std::mem::take(&mut self.events) {
            match ev {
                AppEvent::DnsMessage(bytes) => {
                    self.dns
                        .on_message(ts, src.0, src.1, dst.0, dst.1, true, &bytes);
                }
                other => {
                    if let Some(g) = self.groups.get_mut(group) {
                        apply_app_event(g, other);
                    }
                }
            }
        }
    }

    fn on_udp(&mut self, ts: u64, d: &Decoded<'_>, sport: u16, dport: u16, payload: &[u8]) {
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
        );
        let from_client = src_is_lo == flow.client_is_lo;
        flow.saw(self.cfg.count_traffic, from_client, d.ip_len, ts);
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
                .on_message(ts, src, sport, dst, dport, false, payload);
        }
    }

    fn on_icmp(&mut self, ts: u64, r: &Rejection) {
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

    /// Applies timeouts that packet time has passed; runs every 100 ms of packet time.
    fn sweep(&mut self) {
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

    /// Ends the input and builds the report.
    pub fn finish(mut self) -> Report {
        self.sweep();
        let (groups, events) = (&mut self.groups, &mut self.events);
        self.flows.for_each(|_, f| close_flow(groups, events, f));
        self.dns.finish(self.now_ns);
        self.dns.folder.close_all();
        let first_ns = self.first_ns;
        self.report(first_ns, |_| true)
    }

    /// The report of the groups `include` picks, the DNS records closed so far, and the counts
    /// since `since_ns`; DNS records and counts are taken, so the next report starts afresh.
    fn report(
        &mut self,
        since_ns: Option<u64>,
        include: impl Fn(&conn_group::GroupStats) -> bool,
    ) -> Report {
        // Sort keys computed once, not the records (moving records of a few hundred bytes around
        // dominated the sort), nor keys computed per comparison (reading each group's key through
        // its index and testing its family cost ten times the sort itself).
        let stats_by_group = &self.groups.stats;
        let mut keyed: Vec<_> = stats_by_group
            .iter()
            .enumerate()
            .filter(|(_, g)| include(g))
            .map(|(i, g)| {
                let k = &g.key;
                let v6 = |a: u128| bits_ip(a).is_ipv6();
                ((v6(k.src), k.src, v6(k.dst), k.dst, k.dst_port, k.proto), i)
            })
            .collect();
        keyed.sort_unstable();
        let order = keyed.into_iter().map(|(_, i)| i);
        let connections: Vec<ConnectionRecord> = order
            .map(|i| record(&stats_by_group[i], &self.classifier, &self.dns.names))
            .collect();
        let servers = std::mem::take(&mut self.dns.servers);
        let (dns_records, dns_dropped) = self.dns.folder.take_records();
        let mut stats = std::mem::take(&mut self.stats);
        stats.dns_malformed = std::mem::take(&mut self.dns.malformed);
        stats.dns_unmatched_responses = std::mem::take(&mut self.dns.unmatched);
        stats.dns_dropped = std::mem::take(&mut self.dns.dropped) + dns_dropped;
        stats.flows_evicted = std::mem::take(&mut self.flows.evicted);
        stats.groups_dropped = std::mem::take(&mut self.groups.dropped);
        stats.first_seen = since_ns.map(rfc3339);
        stats.last_seen = since_ns.map(|_| rfc3339(self.now_ns));
        let findings = crate::findings::build(
            &connections,
            &dns_records,
            &servers,
            &stats,
            self.classifier.platform(),
        );
        Report {
            connections,
            dns: dns_records,
            findings,
            capture: stats,
        }
    }
}
