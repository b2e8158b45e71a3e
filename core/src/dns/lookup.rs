//! Folds DNS transactions into the lookups the application made.
//!
//! Transactions from one client for one query type form a *run* while each new query follows a
//! failed (or abandoned) one within `gap` and shares a candidate name with the run (see
//! `search_list.rs`). A run ends at the first positive answer, or when it has been idle for `gap`;
//! it then becomes one lookup of the name all its queries expand. Its outcome is `ok` if any query
//! resolved, otherwise the most telling failure (a timeout or SERVFAIL explains more than the
//! NXDOMAINs of the other expansions).

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::search_list::SearchList;
use super::DnsOutcome;
use crate::decode::bits_ip;
use crate::report::{rfc3339, DnsRecord, LatencyAcc};

/// A query sent again on the same socket after this long is the resolver retrying it (with
/// `options timeout:N` shorter than outflow's DNS timeout), part of the same lookup.
const ABANDON_NS: u64 = 500_000_000;
/// Addresses kept per record.
const MAX_ANSWERS: usize = 8;

#[derive(Debug)]
struct Member {
    tx: u64,
    client_port: u16,
    qname: String,
    sent_ns: u64,
    outcome: Option<DnsOutcome>,
    done_ns: u64,
}

#[derive(Debug)]
struct Run {
    client: u128,
    qtype: u16,
    members: Vec<Member>,
    /// The names every query of the run may have expanded, as prefix lengths of the first
    /// member's name (each candidate is the queried name with a search suffix stripped).
    candidates: arrayvec::ArrayVec<u16, 8>,
    servers: Vec<u128>,
    tcp: bool,
    udp: bool,
    answers: Vec<IpAddr>,
    /// The interface the client's queries came through (0: unknown).
    iface: u32,
}

impl Run {
    fn last_activity(&self) -> u64 {
        self.members
            .iter()
            .map(|m| m.done_ns.max(m.sent_ns))
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct RecordAcc {
    /// Lookups by outcome, indexed by `DnsOutcome as usize`: in the record itself, not in a
    /// map's separate node that was another cache miss for every lookup closed.
    outcomes: [u64; DnsOutcome::ALL.len()],
    servers: Vec<u128>,
    latency: LatencyAcc,
    expansions: u32,
    queries: u64,
    resolved_as: Option<String>,
    answers: Vec<IpAddr>,
    tcp: bool,
    udp: bool,
    first_ns: u64,
    last_ns: u64,
    iface: u32,
}

/// Key of a DNS record: client, lookup name, query type.
type RecordKey = (u128, String, u16);

/// The folder.
#[derive(Debug)]
pub struct Folder {
    search: SearchList,
    gap_ns: u64,
    runs: FxHashMap<u64, Run>,
    next_run: u64,
    /// Open runs per (client, qtype).
    open: FxHashMap<(u128, u16), Vec<u64>>,
    tx_run: FxHashMap<u64, u64>,
    records: FxHashMap<RecordKey, RecordAcc>,
    record_limit: usize,
    /// Lookups not recorded because the record limit was reached.
    pub dropped: u64,
}

impl Folder {
    /// A folder for this search list; runs end after `gap_ns` idle.
    pub fn new(search: SearchList, gap_ns: u64, record_limit: usize) -> Folder {
        Folder {
            search,
            gap_ns,
            runs: FxHashMap::default(),
            next_run: 0,
            open: FxHashMap::default(),
            tx_run: FxHashMap::default(),
            records: FxHashMap::default(),
            record_limit,
            dropped: 0,
        }
    }

    /// Folds later queries by this search list (the cluster told its domain); runs under way
    /// keep the candidates they began with.
    pub fn set_search(&mut self, search: SearchList) {
        self.search = search;
    }

    /// Whether `qname` ends in one of the search list's suffixes: the resolver may have made it
    /// up from a shorter name the application asked for.
    pub fn may_be_expansion(&self, qname: &str) -> bool {
        self.search.candidates(qname).len() > 1
    }

    /// A new query (transaction `tx`) from `client`, through interface `iface` (0: unknown), to
    /// `server`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_query(
        &mut self,
        tx: u64,
        (client, client_port, iface): (u128, u16, u32),
        server: u128,
        qtype: u16,
        qname: String,
        ts_ns: u64,
        tcp: bool,
    ) {
        let cands = self.search.candidates(&qname);
        let open = self.open.entry((client, qtype)).or_default();
        let mut chosen = None;
        for &run_id in open.iter().rev() {
            let run = &self.runs[&run_id];
            let Some(last) = run.members.last() else {
                continue;
            };
            let follows = match last.outcome {
                Some(DnsOutcome::Ok) => false,
                Some(_) => ts_ns <= last.done_ns.saturating_add(self.gap_ns),
                // A resolver retrying a query it gave up on reuses its socket and the name.
                None => {
                    last.qname == qname
                        && last.client_port == client_port
                        && ts_ns >= last.sent_ns.saturating_add(ABANDON_NS)
                }
            };
            // A name the run already got a definitive answer for means the resolver started over:
            // a new lookup. Only timeouts and server failures are retried within one lookup.
            let restarts = run.members.iter().any(|m| {
                m.qname == qname
                    && matches!(
                        m.outcome,
                        Some(DnsOutcome::NxDomain | DnsOutcome::NoData | DnsOutcome::Ok)
                    )
            });
            let first = run.members[0].qname.as_str();
            let shares = run
                .candidates
                .iter()
                .any(|&len| cands.contains(&&first[..len as usize]));
            if follows && !restarts && shares {
                // Several runs may fit when one client resolves the same name twice at once;
                // the one on the same source port is the same resolver call.
                if last.client_port == client_port {
                    chosen = Some(run_id);
                    break;
                }
                chosen.get_or_insert(run_id);
            }
        }
        let run_id = match chosen {
            Some(id) => id,
            None => {
                let id = self.next_run;
                self.next_run += 1;
                self.runs.insert(
                    id,
                    Run {
                        client,
                        qtype,
                        members: Vec::new(),
                        candidates: cands.iter().map(|c| c.len() as u16).collect(),
                        servers: Vec::new(),
                        tcp: false,
                        udp: false,
                        answers: Vec::new(),
                        iface,
                    },
                );
                open.push(id);
                id
            }
        };
        let run = self
            .runs
            .get_mut(&run_id)
            .expect("run ids in `open` are live");
        if let Some(first) = run.members.first() {
            let first = first.qname.as_str();
            run.candidates
                .retain(|len| cands.contains(&&first[..*len as usize]));
        }
        if !run.servers.contains(&server) {
            run.servers.push(server);
        }
        run.tcp |= tcp;
        run.udp |= !tcp;
        if run.iface == 0 {
            run.iface = iface;
        }
        drop(cands);
        run.members.push(Member {
            tx,
            client_port,
            qname,
            sent_ns: ts_ns,
            outcome: None,
            done_ns: 0,
        });
        self.tx_run.insert(tx, run_id);
    }

    /// Transaction `tx` ended with `outcome`.
    pub fn on_answer(&mut self, tx: u64, outcome: DnsOutcome, ts_ns: u64, addresses: &[IpAddr]) {
        let Some(run_id) = self.tx_run.remove(&tx) else {
            return;
        };
        let Some(run) = self.runs.get_mut(&run_id) else {
            return;
        };
        if let Some(m) = run.members.iter_mut().find(|m| m.tx == tx) {
            m.outcome = Some(outcome);
            m.done_ns = ts_ns;
        }
        for a in addresses {
            if run.answers.len() < MAX_ANSWERS && !run.answers.contains(a) {
                run.answers.push(*a);
            }
        }
        if outcome == DnsOutcome::Ok {
            self.close(run_id);
        }
    }

    /// Closes runs idle for longer than the gap.
    pub fn sweep(&mut self, now_ns: u64) {
        let idle: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, r)| {
                r.members.iter().all(|m| m.outcome.is_some())
                    && now_ns > r.last_activity().saturating_add(self.gap_ns)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.close(id);
        }
    }

    /// Closes every run (end of input).
    pub fn close_all(&mut self) {
        let ids: Vec<u64> = self.runs.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }

    /// Closes every run (end of input) and returns the records.
    pub fn finish(&mut self) -> (Vec<DnsRecord>, u64) {
        self.close_all();
        self.take_records()
    }

    /// The records of the lookups closed so far, and how many were dropped at the record limit;
    /// runs still open stay for a later call.
    pub fn take_records(&mut self) -> (Vec<DnsRecord>, u64) {
        let mut out: Vec<DnsRecord> = std::mem::take(&mut self.records)
            .into_iter()
            .map(|((client, name, qtype), acc)| DnsRecord {
                client: bits_ip(client),
                name,
                qtype: super::message::qtype_name(qtype),
                outcomes: DnsOutcome::ALL
                    .iter()
                    .filter(|&&o| acc.outcomes[o as usize] > 0)
                    .map(|&o| (o, acc.outcomes[o as usize]))
                    .collect(),
                servers: acc.servers.iter().map(|s| bits_ip(*s)).collect(),
                latency_ms: acc.latency.summary(),
                expansions: acc.expansions,
                queries: acc.queries,
                resolved_as: acc.resolved_as,
                answers: acc.answers,
                transport: match (acc.udp, acc.tcp) {
                    (true, true) => "udp+tcp",
                    (false, true) => "tcp",
                    _ => "udp",
                }
                .to_string(),
                first_seen: rfc3339(acc.first_ns),
                last_seen: rfc3339(acc.last_ns),
                ingress_iface: (acc.iface != 0).then_some(acc.iface),
            })
            .collect();
        // Keys computed once and records moved once: records are large, comparisons many.
        out.sort_by_cached_key(|r| (r.client, r.name.clone(), r.qtype.clone()));
        (out, std::mem::take(&mut self.dropped))
    }

    fn close(&mut self, run_id: u64) {
        let Some(run) = self.runs.remove(&run_id) else {
            return;
        };
        // Emptied lists stay while there are few (the same client asks again soon); past that,
        // spoofed or scanning clients must not grow the map.
        if let Some(list) = self.open.get_mut(&(run.client, run.qtype)) {
            list.retain(|&id| id != run_id);
            if list.is_empty() && self.open.len() > 4_096 {
                self.open.remove(&(run.client, run.qtype));
            }
        }
        for m in &run.members {
            self.tx_run.remove(&m.tx);
        }
        let first = run.members[0].qname.as_str();
        // One name tried (alone or retried): that is the name asked for. Several: the one they all
        // expand.
        let name = if run.members.iter().all(|m| m.qname == first) {
            first.to_string()
        } else {
            let len = run
                .candidates
                .iter()
                .min()
                .map_or(first.len(), |&l| l as usize);
            first[..len].to_string()
        };
        let ok = run
            .members
            .iter()
            .find(|m| m.outcome == Some(DnsOutcome::Ok));
        let outcome = match ok {
            Some(_) => DnsOutcome::Ok,
            None => run
                .members
                .iter()
                .map(|m| m.outcome.unwrap_or(DnsOutcome::Incomplete))
                .max_by_key(|o| o.weight())
                .unwrap_or(DnsOutcome::Incomplete),
        };
        let first_ns = run.members.iter().map(|m| m.sent_ns).min().unwrap_or(0);
        let last_ns = run.last_activity();
        // Distinct names tried other than the asked one (retries of one name count once).
        let expansions = (0..run.members.len())
            .filter(|&i| {
                let q = &run.members[i].qname;
                *q != name && !run.members[..i].iter().any(|m| m.qname == *q)
            })
            .count() as u32;
        let resolved_as = ok.filter(|m| m.qname != name).map(|m| m.qname.clone());
        let key = (run.client, name, run.qtype);
        if self.records.len() >= self.record_limit && !self.records.contains_key(&key) {
            self.dropped += 1;
            return;
        }
        let acc = self.records.entry(key).or_insert_with(|| RecordAcc {
            first_ns,
            ..RecordAcc::default()
        });
        acc.outcomes[outcome as usize] += 1;
        for s in &run.servers {
            if !acc.servers.contains(s) {
                acc.servers.push(*s);
            }
        }
        // Latency is time to an answer; a timeout's "latency" is the timeout itself.
        if !matches!(
            outcome,
            DnsOutcome::Incomplete | DnsOutcome::Timeout | DnsOutcome::Unreachable
        ) {
            acc.latency.add(last_ns.saturating_sub(first_ns));
        }
        acc.expansions = acc.expansions.max(expansions);
        acc.queries += run.members.len() as u64;
        if resolved_as.is_some() {
            acc.resolved_as = resolved_as;
        }
        for a in run.answers {
            if acc.answers.len() < MAX_ANSWERS && !acc.answers.contains(&a) {
                acc.answers.push(a);
            }
        }
        acc.tcp |= run.tcp;
        acc.udp |= run.udp;
        if acc.iface == 0 {
            acc.iface = run.iface;
        }
        acc.first_ns = acc.first_ns.min(first_ns);
        acc.last_ns = acc.last_ns.max(last_ns);
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
