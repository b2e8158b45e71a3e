//! `outflow check`'s request and result (DESIGN.md §4.8): what a check ran and found, from a
//! pod's network namespace and from its node's, and the verdict drawn from the two.
//!
//! The types travel: the CLI prints them, and the controller will hand a [`CheckRequest`] to
//! the agent on the pod's node and carry its [`CheckResult`] back. Running the check and
//! drawing the verdict are `outflow-check`'s; only the shapes live here.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::conn::Outcome;
use crate::dns::DnsOutcome;

/// What to check and how long each step may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The target as given: a name, `name:port`, an address or an `http(s)://` URL.
    pub target: String,
    /// The DNS server asked directly, bypassing both resolvers (168.63.129.16 on Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<IpAddr>,
    /// How long one DNS query, one TCP connect or one HTTP exchange may take.
    pub timeout_ms: u64,
}

/// Everything one check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The target, parsed.
    pub target: CheckTarget,
    /// From the pod's network namespace.
    pub pod: SideResult,
    /// From the node's network namespace.
    pub node: SideResult,
    /// The conclusion, with its evidence and the next check.
    pub verdict: Verdict,
}

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTarget {
    /// The name or address to reach.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// What is spoken after the connect.
    pub protocol: Protocol,
    /// The path asked for over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What is spoken over the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Only the connect.
    Tcp,
    /// A GET in clear text.
    Http,
    /// A TLS handshake, then a GET.
    Https,
}

/// Which side a result is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The pod's network namespace.
    Pod,
    /// The node's.
    Node,
}

/// What one side found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideResult {
    /// Where it ran: a namespace's name, or `current` for the caller's own.
    pub netns: String,
    /// The name through this side's resolver (its resolv.conf), none for an address target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<DnsCheck>,
    /// The name asked of the upstream server directly, when one is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<DnsCheck>,
    /// A TCP connect to each address the resolver (or else the upstream) answered.
    pub connects: Vec<ConnectCheck>,
    /// The HTTP(S) exchange over the first established connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Why a step could not run at all (an unreadable resolv.conf, a namespace that is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A name looked up as a resolver does: each query it sent and the outcome of the lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsCheck {
    /// Where the servers came from (`/etc/resolv.conf`, `upstream`).
    pub source: String,
    /// The servers asked, in order.
    pub servers: Vec<IpAddr>,
    /// The lookup's outcome: the last query's, or the first that answered.
    pub outcome: DnsOutcome,
    /// The name that answered, or the last one tried.
    pub name: String,
    /// The A records of the answer.
    pub answers: Vec<IpAddr>,
    /// Each query sent, in order (search-list expansions included).
    pub queries: Vec<DnsQuery>,
    /// Time from the first query to the outcome, in milliseconds.
    pub latency_ms: f64,
}

/// One DNS query and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsQuery {
    /// The name asked, fully qualified.
    pub name: String,
    /// The server asked.
    pub server: IpAddr,
    /// What came back.
    pub outcome: DnsOutcome,
    /// The response code's name when a response came (`NOERROR`, `NXDOMAIN`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// A records answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<IpAddr>,
    /// Milliseconds until the response or the timeout.
    pub latency_ms: f64,
}

/// One TCP connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectCheck {
    /// The address connected to.
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
    /// outflow's word for what happened; `incomplete` is never used here.
    pub outcome: Outcome,
    /// For `unreachable`: what the kernel was told, `host-unreachable`, `net-unreachable`,
    /// `admin-prohibited` (an ICMP code), or `prohibited-locally` (a local route or firewall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds until the answer or the timeout.
    pub latency_ms: f64,
}

/// The HTTP(S) exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// The address it ran over.
    pub addr: IpAddr,
    /// The TLS handshake, for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsCheck>,
    /// The response's status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why no status came (handshake failed, connection closed, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds from the connect to the status line.
    pub latency_ms: f64,
}

/// The TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCheck {
    /// The handshake completed.
    pub is_established: bool,
    /// The protocol version agreed (`TLSv1.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The DNS names the server's certificate is for (subject alternative names).
    pub cert_names: Vec<String>,
    /// The certificate chains to a trusted root and names the host.
    pub is_trusted: bool,
    /// Why the certificate is not trusted, or why the handshake failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The conclusion in the AKS egress checklist's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// A stable name for scripts (`reachable`, `pod_dns`, `network_policy`, `beyond_node`, …).
    pub kind: String,
    /// One sentence for a person: what fails, from where, and the likely culprit.
    pub summary: String,
    /// The facts behind it.
    pub evidence: Vec<String>,
    /// What to look at next.
    pub next_checks: Vec<String>,
}

impl Verdict {
    /// Whether the target was reached from the pod.
    pub fn is_reachable(&self) -> bool {
        self.kind == "reachable"
    }
}
