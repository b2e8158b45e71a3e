//! The engine: packets in, a report out.
//!
//! One engine serves offline analysis and the live agent alike, so both decide the same way. It
//! is fed packets with timestamps and interfaces, keeps bounded state (flows, groups, pending DNS
//! queries; limits in `Config`), uses packet time as its only clock, and never touches files or
//! sockets. Whatever could not be used is counted in `CaptureStats`, never dropped silently.

use std::collections::VecDeque;

mod config;
mod flows;
#[cfg(test)]
mod ingress_tests;
mod live;
mod notes;
mod packets;
mod records;
mod report;
mod timers;

pub use config::Config;
pub use live::Traffic;
pub use notes::Note;

use crate::app::AppEvent;
use crate::capfile::{Direction, LinkType, Packet};
use crate::category::Classifier;
use crate::conn::group::Groups;
use crate::conn::table::FlowTable;
use crate::conn::FlowKey;
use crate::decode::{self, DecodeError, L4};
use crate::dedup::Dedup;
use crate::dns::lookup::Folder;
use crate::dns::search_list::SearchList;
use crate::dns::transaction::DnsTracker;
use crate::profile::Profile;
use crate::report::{CaptureStats, Report};

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

    /// Classifies and folds by `profile` from now on: records drained later get its categories
    /// (a live agent learns the cluster's own ranges after it started).
    pub fn set_profile(&mut self, profile: &Profile) {
        self.classifier = Classifier::new(profile);
        self.dns.set_search(SearchList::new(
            &profile.cluster_domain,
            &profile.search_domains,
        ));
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
                    DecodeError::TunnelTruncated => self.stats.tunnel_truncated += 1,
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
        if d.tunnel.is_some() {
            self.stats.tunnelled += 1;
        }
        // A packet the interface sent came from elsewhere: on a pod's host-side veth, it goes
        // to the pod (a query from a pod on another node to this node's DNS pod), so it names
        // no interface its client came through.
        let iface = match packet.direction {
            Direction::Outbound => 0,
            Direction::Inbound | Direction::Unknown => packet.iface,
        };
        match &d.l4 {
            L4::Tcp(seg) => self.on_tcp(ts, iface, &d, seg),
            L4::Udp {
                sport,
                dport,
                payload,
            } => self.on_udp(ts, iface, &d, *sport, *dport, payload),
            L4::IcmpError(r) => self.on_icmp(ts, r),
            L4::Encapsulated { .. } | L4::Other => {}
        }
    }
}
