//! Turns a group's counters into the `ConnectionRecord` of the report contract.

use crate::category::{Category, Classifier};
use crate::conn::group::GroupStats;
use crate::conn::Outcome;
use crate::decode::{bits_ip, proto};
use crate::dns::transaction::NameMap;
use crate::report::{rfc3339, ConnectionRecord, ProxyConnect, TunnelRecord};

/// The report record of a group.
pub(super) fn record(g: &GroupStats, classifier: &Classifier, names: &NameMap) -> ConnectionRecord {
    let dst = bits_ip(g.key.dst);
    let category = classifier.category(dst);
    let mut all_names: Vec<String> = names.get(g.key.dst).to_vec();
    for n in &g.names {
        if !all_names.contains(n) {
            all_names.push(n.clone());
        }
    }
    ConnectionRecord {
        src: bits_ip(g.key.src),
        dst,
        dst_port: g.key.dst_port,
        proto: if g.key.proto == proto::TCP {
            "tcp"
        } else {
            "udp"
        }
        .to_string(),
        category,
        label: classifier.platform_label(dst).map(str::to_string),
        destination: None,
        egress: (category == Category::Public).then(|| classifier.egress_label().to_string()),
        outcomes: Outcome::ALL
            .iter()
            .filter(|o| g.outcomes[o.index()] > 0)
            .map(|&o| (o, g.outcomes[o.index()]))
            .collect(),
        unreachable_codes: g
            .unreachable_codes
            .iter()
            .map(|(r, n)| (r.name().to_string(), *n))
            .collect(),
        icmp_from: g.icmp_from.iter().map(|b| bits_ip(*b)).collect(),
        syn_retransmissions: g.syn_retransmissions,
        handshake_ms: g.handshake.summary(),
        packets_out: g.packets_out,
        packets_in: g.packets_in,
        bytes_out: g.bytes_out,
        bytes_in: g.bytes_in,
        names: all_names,
        http_statuses: g
            .http_statuses
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect(),
        proxy_connects: g
            .proxy_connects
            .iter()
            .map(|(t, s)| ProxyConnect {
                target: t.clone(),
                statuses: s.clone(),
            })
            .collect(),
        tunnel: g.tunnel.map(|t| TunnelRecord {
            kind: t.kind.as_str().to_string(),
            outer_src: bits_ip(t.src),
            outer_dst: bits_ip(t.dst),
            id: t.id,
            depth: t.depth,
        }),
        first_seen: rfc3339(g.first_ns),
        last_seen: rfc3339(g.last_ns),
        ingress_iface: (g.ingress_iface != 0).then_some(g.ingress_iface),
    }
}
