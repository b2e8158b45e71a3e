//! Matches DNS queries with responses and times out the rest.
//!
//! A query is keyed by client address and port, server address and port, transport and id; a
//! response matches only if it also repeats the question's name and type (RFC 5452's checks, so a
//! stray or spoofed response does not close a transaction). The same query sent again while
//! pending is a retransmission, not a new transaction. Queries with no response within the DNS
//! timeout (packet time) are `timeout`. Results go to the lookup folder, and positive answers
//! feed the address → name map used to name connection destinations.

use std::collections::VecDeque;
use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::lookup::Folder;
use super::message::{self, DnsMessage};
use super::DnsOutcome;
use crate::decode::ip_bits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TxKey {
    client: u128,
    server: u128,
    client_port: u16,
    server_port: u16,
    id: u16,
    tcp: bool,
}

/// A query awaiting its response. The name itself moves to the lookup folder; its hash is enough
/// to check that a response repeats the question.
#[derive(Debug)]
struct Pending {
    tx: u64,
    qname_hash: u64,
    qtype: u16,
}

fn name_hash(name: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(name.as_bytes());
    h.finish()
}

/// Per-server tallies, for findings about a server rather than a name.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerStats {
    /// Transactions sent to it.
    pub queries: u64,
    /// Transactions it answered.
    pub answered: u64,
    /// Transactions that timed out.
    pub timeouts: u64,
    /// SERVFAIL answers.
    pub servfails: u64,
}

/// Names learned from DNS answers, per address (bounded).
#[derive(Debug, Default)]
pub struct NameMap {
    map: FxHashMap<u128, Vec<String>>,
    /// Names learned so far: grows exactly when a new (address, name) pair arrives.
    learned: u64,
}

const MAX_NAMED_ADDRESSES: usize = 100_000;
/// Distinct DNS servers tallied; a cluster has a handful.
const MAX_SERVERS: usize = 4_096;
const MAX_NAMES_PER_ADDRESS: usize = 4;

impl NameMap {
    fn add(&mut self, ip: IpAddr, name: &str) {
        let bits = ip_bits(ip);
        if !self.map.contains_key(&bits) && self.map.len() >= MAX_NAMED_ADDRESSES {
            return;
        }
        let names = self.map.entry(bits).or_default();
        if names.len() < MAX_NAMES_PER_ADDRESS && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
            self.learned += 1;
        }
    }

    /// How many (address, name) pairs were learned: a reader that wants only news compares it
    /// with what it saw last.
    pub fn learned(&self) -> u64 {
        self.learned
    }

    /// Names answered for this address.
    pub fn get(&self, ip_bits: u128) -> &[String] {
        self.map.get(&ip_bits).map_or(&[], |v| v.as_slice())
    }

    /// Every address with its names.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &[String])> {
        self.map
            .iter()
            .map(|(bits, names)| (crate::decode::bits_ip(*bits), names.as_slice()))
    }
}

/// A query's answer, for a packet's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// How it was answered.
    pub outcome: DnsOutcome,
    /// The name asked.
    pub name: String,
    /// The name ends in a search-list suffix: the resolver may have made it up from a shorter
    /// name the application asked for.
    pub expansion: bool,
}

/// Tracks DNS transactions.
#[derive(Debug)]
pub struct DnsTracker {
    pending: FxHashMap<TxKey, Pending>,
    deadlines: VecDeque<(u64, TxKey, u64)>,
    next_tx: u64,
    timeout_ns: u64,
    limit: usize,
    /// The lookup folder.
    pub folder: Folder,
    /// Names learned from answers.
    pub names: NameMap,
    /// Per-server tallies.
    pub servers: FxHashMap<u128, ServerStats>,
    overflow_server: ServerStats,
    /// Messages that could not be parsed.
    pub malformed: u64,
    /// Responses with no matching query.
    pub unmatched: u64,
    /// Queries not tracked because the pending limit was reached.
    pub dropped: u64,
    /// Keep the outcome and name of each answered query in `answered` (packet comments).
    pub noting: bool,
    /// The last answered query's outcome and name, while `noting`.
    pub answered: Option<Answered>,
}

impl DnsTracker {
    /// Folds later lookups by this search list.
    pub fn set_search(&mut self, search: super::search_list::SearchList) {
        self.folder.set_search(search);
    }

    /// A tracker with this timeout and pending-query limit.
    pub fn new(folder: Folder, timeout_ns: u64, limit: usize) -> DnsTracker {
        DnsTracker {
            pending: FxHashMap::default(),
            deadlines: VecDeque::new(),
            next_tx: 0,
            timeout_ns,
            limit,
            folder,
            noting: false,
            answered: None,
            names: NameMap::default(),
            servers: FxHashMap::default(),
            overflow_server: ServerStats::default(),
            malformed: 0,
            unmatched: 0,
            dropped: 0,
        }
    }

    /// A DNS message from (src, sport) to (dst, dport) that came through interface `iface` (0:
    /// unknown).
    #[allow(clippy::too_many_arguments)]
    pub fn on_message(
        &mut self,
        ts_ns: u64,
        iface: u32,
        src: u128,
        sport: u16,
        dst: u128,
        dport: u16,
        tcp: bool,
        bytes: &[u8],
    ) {
        let msg = match message::parse(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.malformed += 1;
                // Cut short (snapshot length, a first fragment): the header still says that the
                // server answered and how, which is better than calling it a timeout.
                if let Some(h) = message::header_only(bytes).filter(|h| h.is_response) {
                    let key = TxKey {
                        client: dst,
                        server: src,
                        client_port: dport,
                        server_port: sport,
                        id: h.id,
                        tcp,
                    };
                    if let Some(p) = self.pending.remove(&key) {
                        self.server_stats(key.server).answered += 1;
                        self.folder
                            .on_answer(p.tx, message::outcome_of(&h), ts_ns, &[]);
                    }
                }
                return;
            }
        };
        if msg.is_response {
            let key = TxKey {
                client: dst,
                server: src,
                client_port: dport,
                server_port: sport,
                id: msg.id,
                tcp,
            };
            self.on_response(ts_ns, key, &msg);
        } else {
            let key = TxKey {
                client: src,
                server: dst,
                client_port: sport,
                server_port: dport,
                id: msg.id,
                tcp,
            };
            self.on_query(ts_ns, iface, key, msg);
        }
    }

    fn on_query(&mut self, ts_ns: u64, iface: u32, key: TxKey, msg: DnsMessage) {
        // Time out what is due first, so a query sent right at another's timeout sees it failed.
        self.expire(ts_ns);
        let qname_hash = name_hash(&msg.qname);
        if let Some(p) = self.pending.get(&key) {
            if p.qname_hash == qname_hash && p.qtype == msg.qtype {
                return; // Retransmission of a pending query.
            }
        }
        if self.pending.len() >= self.limit {
            self.dropped += 1;
            return;
        }
        let tx = self.next_tx;
        self.next_tx += 1;
        self.server_stats(key.server).queries += 1;
        self.folder.on_query(
            tx,
            (key.client, key.client_port, iface),
            key.server,
            msg.qtype,
            msg.qname,
            ts_ns,
            key.tcp,
        );
        if let Some(old) = self.pending.insert(
            key,
            Pending {
                tx,
                qname_hash,
                qtype: msg.qtype,
            },
        ) {
            // The same id reused for another question: the old one got no answer in time to matter.
            self.folder
                .on_answer(old.tx, DnsOutcome::Timeout, ts_ns, &[]);
        }
        self.deadlines
            .push_back((ts_ns.saturating_add(self.timeout_ns), key, tx));
    }

    fn on_response(&mut self, ts_ns: u64, key: TxKey, msg: &DnsMessage) {
        let matches = self
            .pending
            .get(&key)
            .is_some_and(|p| p.qname_hash == name_hash(&msg.qname) && p.qtype == msg.qtype);
        if !matches {
            self.unmatched += 1;
            return;
        }
        let p = self.pending.remove(&key).expect("checked just above");
        let outcome = message::outcome_of(msg);
        let stats = self.server_stats(key.server);
        stats.answered += 1;
        if outcome == DnsOutcome::ServFail {
            stats.servfails += 1;
        }
        if outcome == DnsOutcome::Ok {
            for a in &msg.addresses {
                self.names.add(*a, &msg.qname);
            }
        }
        if self.noting {
            self.answered = Some(Answered {
                outcome,
                expansion: self.folder.may_be_expansion(&msg.qname),
                name: msg.qname.clone(),
            });
        }
        self.folder.on_answer(p.tx, outcome, ts_ns, &msg.addresses);
    }

    /// The tallies of a server; beyond `MAX_SERVERS` distinct servers (a port-53 scan), a shared
    /// scratch entry absorbs them.
    fn server_stats(&mut self, server: u128) -> &mut ServerStats {
        if self.servers.len() >= MAX_SERVERS && !self.servers.contains_key(&server) {
            return &mut self.overflow_server;
        }
        self.servers.entry(server).or_default()
    }

    /// An ICMP error quoting a UDP packet from (client, client_port) to (server, server_port).
    pub fn on_unreachable(
        &mut self,
        ts_ns: u64,
        client: u128,
        client_port: u16,
        server: u128,
        server_port: u16,
    ) {
        let keys: Vec<TxKey> = self
            .pending
            .keys()
            .filter(|k| {
                !k.tcp
                    && k.client == client
                    && k.client_port == client_port
                    && k.server == server
                    && k.server_port == server_port
            })
            .copied()
            .collect();
        for key in keys {
            if let Some(p) = self.pending.remove(&key) {
                self.folder
                    .on_answer(p.tx, DnsOutcome::Unreachable, ts_ns, &[]);
            }
        }
    }

    /// Times out queries whose deadline has passed, and closes idle lookups.
    pub fn sweep(&mut self, now_ns: u64) {
        self.expire(now_ns);
        self.folder.sweep(now_ns);
    }

    fn expire(&mut self, now_ns: u64) {
        while let Some(&(deadline, key, tx)) = self.deadlines.front() {
            if deadline > now_ns {
                break;
            }
            self.deadlines.pop_front();
            if self.pending.get(&key).is_some_and(|p| p.tx == tx) {
                self.pending.remove(&key);
                self.server_stats(key.server).timeouts += 1;
                self.folder
                    .on_answer(tx, DnsOutcome::Timeout, deadline, &[]);
            }
        }
    }

    /// Ends the input at `now_ns`: due timeouts fire, the rest stay incomplete.
    pub fn finish(&mut self, now_ns: u64) {
        self.sweep(now_ns);
        let pending: Vec<(TxKey, Pending)> = self.pending.drain().collect();
        for (_, p) in pending {
            self.folder
                .on_answer(p.tx, DnsOutcome::Incomplete, now_ns, &[]);
        }
    }
}
