//! The report: what `outflow analyze --json` prints and what agents ship (DESIGN.md §4.2).
//!
//! These types are a contract. Fields may be added; none may be renamed or dropped. Maps are
//! `BTreeMap` so the JSON is stable from run to run, and empty optional parts are left out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::category::Category;
use crate::conn::Outcome;
use crate::dns::DnsOutcome;

/// Everything an analysis found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Connection groups, by (src, dst, dst_port, proto).
    pub connections: Vec<ConnectionRecord>,
    /// DNS lookups, by (client, name, qtype), with search expansions folded in.
    pub dns: Vec<DnsRecord>,
    /// Problems stated for a person, most severe first.
    pub findings: Vec<Finding>,
    /// What was read and what could not be used.
    pub capture: CaptureStats,
}

/// One (src, dst, dst_port, proto) group of connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionRecord {
    /// The side that opened the connection.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub src: IpAddr,
    /// The side that was connected to.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    /// Where the destination sits.
    pub category: Category,
    /// A well-known platform address (`azure-dns`, `azure-imds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Who the destination is in the cluster, named by the controller from the Kubernetes API
    /// when the record arrived: `service shop/web`, `pod shop/db-0 (statefulset/db)`,
    /// `node aks-nodepool1-1`, or a platform address's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// How public traffic leaves (`loadBalancer`, `natGateway`, `firewall`, `proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
    /// Connection attempts by outcome (`established`, `refused`, `unreachable`, `unanswered`,
    /// `incomplete`).
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Unreachable attempts by ICMP code name (`host-prohibited`, `port-unreachable`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreachable_codes: BTreeMap<String, u64>,
    /// Who sent the ICMP errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub icmp_from: Vec<IpAddr>,
    /// SYNs sent again for an attempt already under way.
    pub syn_retransmissions: u64,
    /// SYN to SYN-ACK time of established attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<Latency>,
    /// Packets from src to dst.
    pub packets_out: u64,
    /// Packets from dst to src.
    pub packets_in: u64,
    /// IP bytes from src to dst.
    pub bytes_out: u64,
    /// IP bytes from dst to src.
    pub bytes_in: u64,
    /// Names for the destination: DNS answers in the capture, TLS SNI, HTTP Host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// HTTP response status → count, for cleartext HTTP.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_statuses: BTreeMap<String, u64>,
    /// CONNECT requests through an HTTP proxy, by the host:port asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_connects: Vec<ProxyConnect>,
    /// The tunnel the client's packets were captured in (an overlay's VXLAN, Geneve, GRE or
    /// IP-in-IP between nodes), when they came encapsulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelRecord>,
    /// First packet of the group (RFC 3339).
    pub first_seen: String,
    /// Last packet of the group (RFC 3339).
    pub last_seen: String,
    /// The host-side interface index the client's packets came through, as the datapath gave
    /// it (0, unknown, is `None`). Not part of the contract: the agent decides the pod with it.
    #[serde(skip)]
    pub ingress_iface: Option<u32>,
}

/// The encapsulation a connection's packets came in: which node (or gateway) sent the client's
/// packets to which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunnelRecord {
    /// `vxlan`, `geneve`, `gre` or `ipip` (IPv4 or IPv6 inside IPv4 or IPv6).
    pub kind: String,
    /// Outer source of the client's packets: the node the client runs on.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outer_src: IpAddr,
    /// Outer destination of the client's packets: the node the destination is reached through.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outer_dst: IpAddr,
    /// The VXLAN or Geneve network identifier, or the GRE key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Encapsulations around the packet, 1 for one tunnel; when more, the outer addresses are
    /// the innermost tunnel's.
    pub depth: u8,
}

/// CONNECT requests to one target through a proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProxyConnect {
    /// The `host:port` asked for: the real destination behind the proxy.
    pub target: String,
    /// Proxy status → count; `none` when the proxy never answered.
    pub statuses: BTreeMap<String, u64>,
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latency {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub avg: f64,
    /// Largest.
    pub max: f64,
    /// How many samples.
    pub count: u64,
}

/// One (client, name, qtype) group of DNS lookups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsRecord {
    /// Who asked.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub client: IpAddr,
    /// The name the application asked for, search expansions folded away.
    pub name: String,
    /// Query type (`A`, `AAAA`, …).
    pub qtype: String,
    /// Lookups by outcome (`ok`, `nodata`, `nxdomain`, `servfail`, `refused`, `timeout`, `other`,
    /// `unreachable`, `truncated`, `incomplete`).
    pub outcomes: BTreeMap<DnsOutcome, u64>,
    /// Servers asked.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub servers: Vec<IpAddr>,
    /// First query to final answer, per lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// Most search-list expansions tried in one lookup.
    pub expansions: u32,
    /// DNS queries sent for these lookups, expansions and retries included.
    pub queries: u64,
    /// The name that finally answered, when it differs from `name` (e.g. `web.default.svc.cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_as: Option<String>,
    /// Addresses answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub answers: Vec<IpAddr>,
    /// Transport (`udp`, `tcp`, or `udp+tcp`).
    pub transport: String,
    /// First query (RFC 3339).
    pub first_seen: String,
    /// Last answer or timeout (RFC 3339).
    pub last_seen: String,
    /// The host-side interface index the client's queries came through, as the datapath gave
    /// it (0, unknown, is `None`). Not part of the contract: the agent decides the pod with it.
    #[serde(skip)]
    pub ingress_iface: Option<u32>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something fails every time.
    Error,
    /// Something fails sometimes, or is slow.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// A problem stated for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// What kind of problem (`syn_unanswered`, `dns_nxdomain`, …).
    pub kind: String,
    /// How bad.
    pub severity: Severity,
    /// One sentence: what fails, from where, to what, how often.
    pub message: String,
    /// Who is affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub src: Option<IpAddr>,
    /// What they fail to reach (`203.0.113.7:443/tcp`, a DNS name, a server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Destination category, for connection findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// How many attempts or lookups failed.
    pub count: u64,
    /// The facts behind it.
    pub evidence: Vec<String>,
    /// What to check next, in order.
    pub next_checks: Vec<String>,
    /// The interface of `src`'s packets, from the record behind the finding. Not part of the
    /// contract.
    #[serde(skip)]
    pub ingress_iface: Option<u32>,
}

/// What was read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureStats {
    /// Frames read.
    pub packets: u64,
    /// IP packets decoded.
    pub ip_packets: u64,
    /// Frames that were not IP (ARP, LLDP, …).
    pub non_ip: u64,
    /// Frames cut before the end of their IP header.
    pub truncated_frames: u64,
    /// Frames whose headers are malformed.
    pub undecodable: u64,
    /// Frames of a link type outflow does not read.
    pub unsupported_link: u64,
    /// IP packets taken out of a tunnel (VXLAN, Geneve, GRE, IP-in-IP) and analysed as the
    /// packet inside; counted in `ip_packets` too.
    #[serde(default)]
    pub tunnelled: u64,
    /// Tunnelled packets the capture cut before the inner IP header ended; skipped.
    #[serde(default)]
    pub tunnel_truncated: u64,
    /// The same packet seen again on another interface, not counted twice.
    pub duplicates: u64,
    /// Frames captured shorter than they were on the wire (the capture's snapshot length).
    #[serde(default)]
    pub snapped_frames: u64,
    /// DNS messages that could not be parsed (cut by the snapshot length, or malformed).
    pub dns_malformed: u64,
    /// DNS responses with no matching query.
    pub dns_unmatched_responses: u64,
    /// Flows dropped from the bounded flow table before they ended.
    pub flows_evicted: u64,
    /// Flows not counted in any group because the group limit was reached.
    pub groups_dropped: u64,
    /// DNS transactions dropped because the pending-query limit was reached.
    pub dns_dropped: u64,
    /// Files whose last record was cut short (capture killed); everything before was analysed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated_files: Vec<String>,
    /// Read errors; the packets before each were analysed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// First packet (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// Last packet (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// Formats packet time as RFC 3339 with microseconds.
pub fn rfc3339(ts_ns: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(ts_ns)).to_string()
}

/// Accumulates latency samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyAcc {
    min_ns: u64,
    max_ns: u64,
    sum_ns: u64,
    count: u64,
}

impl LatencyAcc {
    /// Adds a sample.
    pub fn add(&mut self, ns: u64) {
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        self.max_ns = self.max_ns.max(ns);
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.count += 1;
    }

    /// The summary, if there were samples.
    pub fn summary(&self) -> Option<Latency> {
        (self.count > 0).then(|| Latency {
            min: ms(self.min_ns),
            avg: ms(self.sum_ns / self.count),
            max: ms(self.max_ns),
            count: self.count,
        })
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}
