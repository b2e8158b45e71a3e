//! Each node's latest report and its pods: the health API's nodes.

use rusqlite::params;

use super::{DatapathTotals, NodeHealth, PodHealth, Store};

/// How long without records makes a pod idle.
pub const IDLE_AFTER_NS: u64 = 5 * 60 * 1_000_000_000;

impl Store {
    /// Each node's latest report.
    pub fn nodes(&self) -> anyhow::Result<Vec<NodeHealth>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT node, MAX(window_end_ns), COUNT(*),
                    (SELECT datapath FROM reports r2 WHERE r2.node = r.node ORDER BY window_end_ns DESC LIMIT 1),
                    TOTAL(json_extract(datapath, '$.event_drops')),
                    TOTAL(json_extract(datapath, '$.flows_evicted')),
                    TOTAL(json_extract(datapath, '$.flow_map_full')),
                    TOTAL(json_extract(datapath, '$.attach_errors')),
                    TOTAL(json_extract(datapath, '$.reports_dropped')),
                    TOTAL(json_extract(capture, '$.dns_malformed')),
                    TOTAL(json_extract(capture, '$.undecodable')),
                    TOTAL(json_extract(datapath, '$.attribution_mismatches'))
             FROM reports r GROUP BY node ORDER BY node",
        )?;
        // TOTAL, not SUM: an agent's counters are u64, and SUM fails the whole query on an
        // i64 overflow (and a value past i64::MAX is a REAL to SQLite), so one report with huge
        // counters took /api/v1/health down for good. TOTAL adds as doubles: exact to 2^53,
        // then saturating at u64::MAX on the way out, as the metrics' counters do.
        let sum = |row: &rusqlite::Row, i: usize| row.get::<_, f64>(i).map(|v| v as u64);
        let rows = stmt.query_map([], |row| {
            Ok(NodeHealth {
                node: row.get(0)?,
                last_window_end_ns: row.get::<_, i64>(1)? as u64,
                reports: row.get::<_, i64>(2)? as u64,
                datapath: serde_json::from_str(&row.get::<_, String>(3)?).unwrap_or_default(),
                totals: DatapathTotals {
                    event_drops: sum(row, 4)?,
                    flows_evicted: sum(row, 5)?,
                    flow_map_full: sum(row, 6)?,
                    attach_errors: sum(row, 7)?,
                    reports_dropped: sum(row, 8)?,
                    dns_malformed: sum(row, 9)?,
                    undecodable: sum(row, 10)?,
                    attribution_mismatches: sum(row, 11)?,
                },
                pods: Vec::new(),
                stale: false,
            })
        })?;
        let mut nodes: Vec<NodeHealth> = rows.collect::<Result<_, _>>()?;
        for n in &mut nodes {
            n.pods = self.pods_of(&n.node, n.last_window_end_ns)?;
        }
        Ok(nodes)
    }

    /// The pods a node listed last, each with its last traffic as of `now_ns`.
    fn pods_of(&self, node: &str, now_ns: u64) -> anyhow::Result<Vec<PodHealth>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT json, (SELECT MAX(window_end_ns) FROM record_blocks r
                            WHERE r.namespace = p.namespace AND r.pod = p.pod AND r.node = p.node)
             FROM node_pods p WHERE node = ?1 ORDER BY namespace, pod",
        )?;
        let rows = stmt.query_map(params![node], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
        })?;
        let mut pods = Vec::new();
        for row in rows {
            let (json, last) = row?;
            let last_traffic_ns = last.map(|l| l as u64);
            pods.push(PodHealth {
                pod: serde_json::from_str(&json)?,
                last_traffic_ns,
                idle: last_traffic_ns.is_none_or(|l| l + IDLE_AFTER_NS < now_ns),
            });
        }
        Ok(pods)
    }
}
