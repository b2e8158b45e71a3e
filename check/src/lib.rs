//! Runs `outflow check` from network namespaces: DNS through the pod's resolver, the node's and
//! the upstream, TCP to each answered address, HTTP(S) over the first that connects, and the
//! verdict drawn from the pod's side against the node's.
//!
//! One job: a typed result ([`outflow_core::wire::check::CheckResult`]) from namespaces this
//! process can enter (`/run/netns/NAME`, or its own). It runs only these checks, with a
//! validated target and bounded timeouts, and execs nothing. Which namespace belongs to which
//! pod, and carrying the request to the right node, are the agent's and the controller's.
#![forbid(unsafe_code)]

pub mod dns;
pub mod http;
pub mod netns;
pub mod reach;
pub mod target;
pub mod verdict;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use outflow_core::wire::check::{CheckResult, CheckTarget, Protocol, SideResult};
use outflow_core::DnsOutcome;

pub use target::TargetError;

/// Timeouts accepted for one step: below, a healthy lab path would fail; above, a check held
/// by a silent destination would take minutes.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(10);
/// The default step timeout: DESIGN's SYN timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Addresses connected to per side, so a name with many records stays bounded.
pub const MAX_ADDRESSES: usize = 4;

/// What cannot be checked, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A timeout outside [`TIMEOUT_RANGE`].
    #[error("timeout {ms} ms is out of range; give 100ms to 10s")]
    Timeout {
        /// What was asked, in milliseconds.
        ms: u128,
    },
    /// A resolv.conf that cannot be read or has no server.
    #[error(
        "resolver config {path}: {problem}; give a readable resolv.conf with a nameserver line"
    )]
    ResolvConf {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A namespace name that is not a plain name under /run/netns.
    #[error("network namespace {0:?} is not a name from `ip netns list` (letters, digits, '-', '_', '.')")]
    NetnsName(String),
}

/// Where one side runs and which resolver config it reads.
#[derive(Debug, Clone)]
pub struct SidePlan {
    /// The named namespace, or `None` for this process's own.
    pub netns: Option<String>,
    /// The resolv.conf its lookups follow.
    pub resolv_conf: String,
}

impl SidePlan {
    /// A side in `netns` (or the current namespace) whose resolver config is `resolv_conf`, or
    /// else `/etc/netns/NAME/resolv.conf` when that exists (as `ip netns exec` would show it),
    /// else `/etc/resolv.conf`.
    pub fn new(netns: Option<&str>, resolv_conf: Option<&str>) -> Result<SidePlan, CheckError> {
        if let Some(name) = netns {
            let plain = !name.is_empty()
                && name != "."
                && name != ".."
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !plain {
                return Err(CheckError::NetnsName(name.to_string()));
            }
        }
        let resolv_conf = match (resolv_conf, netns) {
            (Some(path), _) => path.to_string(),
            (None, Some(name)) if Path::new(&format!("/etc/netns/{name}/resolv.conf")).exists() => {
                format!("/etc/netns/{name}/resolv.conf")
            }
            _ => "/etc/resolv.conf".to_string(),
        };
        Ok(SidePlan {
            netns: netns.map(str::to_string),
            resolv_conf,
        })
    }

    fn label(&self) -> String {
        self.netns.clone().unwrap_or_else(|| "current".to_string())
    }
}

/// A whole check: the target, both sides, the upstream and the step timeout.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to reach.
    pub target: CheckTarget,
    /// The pod's side.
    pub pod: SidePlan,
    /// The node's side.
    pub node: SidePlan,
    /// The DNS server asked directly.
    pub upstream: Option<IpAddr>,
    /// One step's timeout.
    pub timeout: Duration,
}

impl Plan {
    /// Validates the target and the timeout.
    pub fn new(
        target: &str,
        pod: SidePlan,
        node: SidePlan,
        upstream: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Plan, CheckError> {
        if !TIMEOUT_RANGE.contains(&timeout) {
            return Err(CheckError::Timeout {
                ms: timeout.as_millis(),
            });
        }
        Ok(Plan {
            target: target::parse(target)?,
            pod,
            node,
            upstream,
            timeout,
        })
    }
}

/// Runs the check: DNS on both sides at once, then TCP and HTTP on both sides at once, to the
/// same addresses (the pod's answers, else the node's, else the upstream's), so the two sides
/// are compared on one destination.
pub fn run(plan: &Plan) -> CheckResult {
    let (mut pod, mut node) = both(plan, lookups);
    let addrs: Vec<IpAddr> = match target::host_addr(&plan.target) {
        Some(a) => vec![a],
        None => [&pod.resolver, &node.resolver, &node.upstream, &pod.upstream]
            .into_iter()
            .flatten()
            .find(|d| d.outcome == DnsOutcome::Ok)
            .map(|d| d.answers.iter().copied().take(MAX_ADDRESSES).collect())
            .unwrap_or_default(),
    };
    if !addrs.is_empty() {
        let (pod_reach, node_reach) = both(plan, move |p, side| {
            let mut r = empty(side);
            reach_all(p, &addrs, &mut r);
            r
        });
        for (into, from) in [(&mut pod, pod_reach), (&mut node, node_reach)] {
            into.connects = from.connects;
            into.http = from.http;
            into.error = into.error.take().or(from.error);
        }
    }
    let verdict = verdict::decide(&plan.target, &pod, &node);
    CheckResult {
        target: plan.target.clone(),
        pod,
        node,
        verdict,
    }
}

fn empty(side: &SidePlan) -> SideResult {
    SideResult {
        netns: side.label(),
        resolver: None,
        upstream: None,
        connects: Vec::new(),
        http: None,
        error: None,
    }
}

/// Runs `f` for the pod's side and the node's side at once, each on a thread in its namespace.
fn both(
    plan: &Plan,
    f: impl Fn(&Plan, &SidePlan) -> SideResult + Send + Sync + Clone + 'static,
) -> (SideResult, SideResult) {
    let run_side = |side: SidePlan| {
        let plan = plan.clone();
        let f = f.clone();
        std::thread::spawn(move || {
            let label = empty(&side);
            let result = match &side.netns {
                Some(name) => {
                    let side2 = side.clone();
                    netns::run_in(name, move || Ok(f(&plan, &side2)))
                }
                None => Ok(f(&plan, &side)),
            };
            result.unwrap_or_else(|e| SideResult {
                error: Some(e.to_string()),
                ..label
            })
        })
    };
    let pod = run_side(plan.pod.clone());
    let node = run_side(plan.node.clone());
    let join = |h: std::thread::JoinHandle<SideResult>, side: &SidePlan| {
        h.join().unwrap_or_else(|_| SideResult {
            error: Some("the check's thread panicked".to_string()),
            ..empty(side)
        })
    };
    (join(pod, &plan.pod), join(node, &plan.node))
}

/// The side's resolver and upstream lookups (none for an address target).
fn lookups(plan: &Plan, side: &SidePlan) -> SideResult {
    let mut r = empty(side);
    if target::host_addr(&plan.target).is_some() {
        return r;
    }
    match dns::ResolvConf::read(&side.resolv_conf) {
        Ok(conf) => r.resolver = Some(dns::resolve(&conf, &plan.target.host, plan.timeout)),
        Err(e) => r.error = Some(e.to_string()),
    }
    r.upstream = plan
        .upstream
        .map(|u| dns::ask_upstream(u, &plan.target.host, plan.timeout));
    r
}

/// TCP to each address; HTTP(S) over the first established one.
fn reach_all(plan: &Plan, addrs: &[IpAddr], r: &mut SideResult) {
    for &addr in addrs {
        let (check, stream) = reach::connect(addr, plan.target.port, plan.timeout);
        r.connects.push(check);
        if let Some(stream) = stream {
            if r.http.is_none() && plan.target.protocol != Protocol::Tcp {
                r.http = Some(http::request(&plan.target, addr, stream, plan.timeout));
            }
        }
    }
}
