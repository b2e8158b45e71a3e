//! Builds the report: once at the end of the input, or for each live window (`drain`).
//!
//! Connection records are made from the groups in a stable order, DNS records and counts are
//! taken so the next report starts afresh, and findings are drawn from them all.

use super::flows::close_flow;
use super::records::record;
use super::Engine;
use crate::conn::group as conn_group;
use crate::decode::bits_ip;
use crate::report::{rfc3339, ConnectionRecord, Report};

impl Engine {
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
    pub(super) fn report(
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
