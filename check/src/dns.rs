//! Looks a name up as a pod's libc would: its resolv.conf's servers, search list and ndots,
//! one A query at a time over UDP, every query kept as evidence.
//!
//! The order follows glibc's `res_search`: a name with at least `ndots` dots (or a trailing
//! dot) is tried as given first, otherwise each search suffix first and the bare name last; the
//! search goes on after NXDOMAIN, NODATA and SERVFAIL and stops at an answer or a timeout. Each
//! query tries the next server on a timeout, an ICMP error, SERVFAIL or REFUSED. Responses are
//! classified by core's DNS reader, so a check and a capture of it use the same words. AAAA and
//! DNS over TCP (after a truncated answer) are left to later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use outflow_core::dns::message::{outcome_of, parse};
use outflow_core::wire::check::{DnsCheck, DnsQuery};
use outflow_core::DnsOutcome;

use crate::CheckError;

/// glibc's limit on servers (`MAXNS`); more lines are ignored, as there.
const MAX_SERVERS: usize = 3;

/// What a resolver is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Where it was read from, for the evidence.
    pub source: String,
    /// `nameserver` lines, at most three.
    pub servers: Vec<IpAddr>,
    /// `search` (or `domain`) suffixes.
    pub search: Vec<String>,
    /// `options ndots:N` (default 1).
    pub ndots: u32,
}

impl ResolvConf {
    /// Parses resolv.conf text; `source` names it in errors and evidence.
    pub fn parse(text: &str, source: &str) -> Result<ResolvConf, CheckError> {
        let conf = resolv_conf::Config::parse(text).map_err(|e| CheckError::ResolvConf {
            path: source.to_string(),
            problem: e.to_string(),
        })?;
        let servers: Vec<IpAddr> = conf
            .nameservers
            .iter()
            .map(|s| IpAddr::from(s.clone()))
            .take(MAX_SERVERS)
            .collect();
        if servers.is_empty() {
            return Err(CheckError::ResolvConf {
                path: source.to_string(),
                problem: "no nameserver line".to_string(),
            });
        }
        let search = conf
            .get_last_search_or_domain()
            .map(|s| s.trim_end_matches('.').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(ResolvConf {
            source: source.to_string(),
            servers,
            search,
            ndots: conf.ndots,
        })
    }

    /// Reads and parses a resolv.conf file.
    pub fn read(path: &str) -> Result<ResolvConf, CheckError> {
        let text = std::fs::read_to_string(path).map_err(|e| CheckError::ResolvConf {
            path: path.to_string(),
            problem: e.to_string(),
        })?;
        ResolvConf::parse(&text, path)
    }

    /// The fully qualified names a lookup of `name` tries, in order.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![format!("{absolute}.")];
        }
        let dots = name.matches('.').count() as u32;
        let searched = self.search.iter().map(|s| format!("{name}.{s}."));
        let bare = format!("{name}.");
        if dots >= self.ndots {
            std::iter::once(bare).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(bare)).collect()
        }
    }
}

/// Looks `name` up through `conf` as libc would; every query sent is in the result.
pub fn resolve(conf: &ResolvConf, name: &str, timeout: Duration) -> DnsCheck {
    let start = Instant::now();
    let mut queries = Vec::new();
    let mut last = None;
    let mut saw_nodata = false;
    for fqdn in conf.candidates(name) {
        let q = ask_servers(&conf.servers, &fqdn, timeout, &mut queries);
        saw_nodata |= q == DnsOutcome::NoData;
        last = Some(q);
        if !matches!(
            q,
            DnsOutcome::NxDomain | DnsOutcome::NoData | DnsOutcome::ServFail
        ) {
            break;
        }
    }
    let answered = queries.iter().find(|q| q.outcome == DnsOutcome::Ok);
    let outcome = match (answered, last) {
        (Some(_), _) => DnsOutcome::Ok,
        (None, _) if saw_nodata => DnsOutcome::NoData,
        (None, Some(o)) => o,
        (None, None) => DnsOutcome::Other,
    };
    DnsCheck {
        source: conf.source.clone(),
        servers: conf.servers.clone(),
        outcome,
        name: answered
            .or(queries.last())
            .map_or_else(|| name.to_string(), |q| q.name.clone()),
        answers: answered.map(|q| q.answers.clone()).unwrap_or_default(),
        queries,
        latency_ms: ms(start.elapsed()),
    }
}

/// Asks one server for `name` as an absolute name, without any search list.
pub fn ask_upstream(server: IpAddr, name: &str, timeout: Duration) -> DnsCheck {
    let conf = ResolvConf {
        source: "upstream".to_string(),
        servers: vec![server],
        search: Vec::new(),
        ndots: 1,
    };
    let absolute = format!("{}.", name.trim_end_matches('.'));
    resolve(&conf, &absolute, timeout)
}

/// One name through the servers in turn; each query is pushed to `queries`.
fn ask_servers(
    servers: &[IpAddr],
    fqdn: &str,
    timeout: Duration,
    queries: &mut Vec<DnsQuery>,
) -> DnsOutcome {
    let mut outcome = DnsOutcome::Other;
    for &server in servers {
        let q = query(server, fqdn, timeout);
        outcome = q.outcome;
        queries.push(q);
        if !matches!(
            outcome,
            DnsOutcome::Timeout
                | DnsOutcome::Unreachable
                | DnsOutcome::ServFail
                | DnsOutcome::Refused
        ) {
            break;
        }
    }
    outcome
}

/// One A query over UDP.
pub fn query(server: IpAddr, fqdn: &str, timeout: Duration) -> DnsQuery {
    let start = Instant::now();
    let result = exchange(server, fqdn, timeout);
    let (outcome, rcode, answers) = match result {
        Ok(Some(bytes)) => match parse(&bytes) {
            Ok(msg) => {
                let rcode =
                    <hickory_proto::op::ResponseCode as From<u16>>::from(msg.rcode).to_string();
                let answers: Vec<IpAddr> = msg
                    .addresses
                    .iter()
                    .copied()
                    .filter(IpAddr::is_ipv4)
                    .collect();
                (outcome_of(&msg), Some(rcode), answers)
            }
            Err(_) => (DnsOutcome::Other, None, Vec::new()),
        },
        Ok(None) => (DnsOutcome::Timeout, None, Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
            DnsOutcome::Unreachable,
            Some("port-unreachable".into()),
            Vec::new(),
        ),
        Err(e) => (DnsOutcome::Unreachable, Some(e.to_string()), Vec::new()),
    };
    DnsQuery {
        name: fqdn.to_string(),
        server,
        outcome,
        rcode,
        answers,
        latency_ms: ms(start.elapsed()),
    }
}

/// Sends the query and waits for the response with its id; `None` on timeout. ICMP errors
/// come back as the socket's error (it is connected, so the kernel hands them to us).
fn exchange(server: IpAddr, fqdn: &str, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
    let name = Name::from_ascii(fqdn)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let id: u16 = rand_id();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, RecordType::A));
    let bytes = msg
        .to_vec()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let local: SocketAddr = match server {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect((server, 53))?;
    socket.send(&bytes)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buf) {
            Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                return Ok(Some(buf[..n].to_vec()))
            }
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

/// A query id nobody off the path can guess: std's randomly keyed SipHash over a counter
/// (no RNG crate for one number per query).
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish() as u16
}

/// The mnemonic of a response code, as dig prints it (`NXDOMAIN`).
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".to_string(),
        1 => "FORMERR".to_string(),
        2 => "SERVFAIL".to_string(),
        3 => "NXDOMAIN".to_string(),
        4 => "NOTIMP".to_string(),
        5 => "REFUSED".to_string(),
        n => format!("RCODE{n}"),
    }
}

/// Milliseconds with a tenth's precision.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBE: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
                        nameserver 10.0.0.10\noptions ndots:5\n";

    #[test]
    fn a_kubernetes_resolv_conf_searches_before_the_bare_name() {
        let conf = ResolvConf::parse(KUBE, "pod").unwrap();
        assert_eq!(conf.ndots, 5);
        assert_eq!(
            conf.candidates("web.example.com"),
            [
                "web.example.com.default.svc.cluster.local.",
                "web.example.com.svc.cluster.local.",
                "web.example.com.cluster.local.",
                "web.example.com.",
            ]
        );
    }

    #[test]
    fn names_with_ndots_dots_or_a_trailing_dot_go_as_given_first() {
        let conf = ResolvConf::parse("nameserver 1.1.1.1\nsearch corp\n", "node").unwrap();
        assert_eq!(conf.candidates("a.b"), ["a.b.", "a.b.corp."]);
        assert_eq!(conf.candidates("host"), ["host.corp.", "host."]);
        assert_eq!(conf.candidates("a.b."), ["a.b."]);
    }

    #[test]
    fn a_resolv_conf_without_servers_is_an_error_naming_the_file() {
        let e = ResolvConf::parse("search x\n", "/etc/resolv.conf").unwrap_err();
        assert!(e.to_string().contains("/etc/resolv.conf"), "{e}");
    }

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..50).map(|_| rand_id()).collect();
        assert!(ids.len() > 1);
    }
}
