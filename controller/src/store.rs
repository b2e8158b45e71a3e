//! The SQLite store of window reports.
//!
//! One row per record (connection group, DNS lookup, finding) with the columns the API filters
//! on, and the record's JSON as the agent sent it; one row per report for the health view.
//! Rows older than the retention are deleted by [`Store::expire`], which the controller runs on
//! a timer by its own clock: never on the ingest path, and never moved by a report's dates.

use std::path::Path;

use outflow_core::wire::NodeReport;
use rusqlite::{params, Connection};

/// What kind of record a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A connection group.
    Connection,
    /// A DNS lookup.
    Dns,
    /// A finding.
    Finding,
}

impl Kind {
    /// The query grammar's name for these records.
    pub fn record_kind(self) -> outflow_core::query::RecordKind {
        match self {
            Kind::Connection => outflow_core::query::RecordKind::Connection,
            Kind::Dns => outflow_core::query::RecordKind::Dns,
            Kind::Finding => outflow_core::query::RecordKind::Finding,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Connection => "connection",
            Kind::Dns => "dns",
            Kind::Finding => "finding",
        }
    }
}

/// Filters of a query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Pod name.
    pub pod: Option<String>,
    /// Pod namespace.
    pub namespace: Option<String>,
    /// Node.
    pub node: Option<String>,
    /// Destination category (connections, findings).
    pub category: Option<String>,
    /// Outcome (connections, DNS) or severity (findings).
    pub outcome: Option<String>,
    /// Windows ending at or after this time (ns since the epoch).
    pub since_ns: u64,
    /// Most rows returned.
    pub limit: u32,
}

/// Whether a report was stored or had been already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Its id was stored before: nothing changed.
    Again,
}

/// How long without records makes a pod idle.
pub const IDLE_AFTER_NS: u64 = 5 * 60 * 1_000_000_000;

pub use outflow_core::wire::health::{DatapathTotals, NodeHealth, PodHealth};

/// The store.
pub struct Store {
    db: Connection,
    retention_ns: u64,
}

impl Store {
    /// Opens (or creates) the store at `path`; `:memory:` for one in memory.
    pub fn open(path: &Path, retention_ns: u64) -> anyhow::Result<Store> {
        let db = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the store {}: {e}", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS records (
                 id INTEGER PRIMARY KEY,
                 kind TEXT NOT NULL,
                 node TEXT NOT NULL,
                 namespace TEXT,
                 pod TEXT,
                 category TEXT,
                 outcomes TEXT NOT NULL,
                 window_end_ns INTEGER NOT NULL,
                 json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS records_by_kind_time ON records(kind, window_end_ns);
             CREATE INDEX IF NOT EXISTS records_by_pod ON records(namespace, pod, window_end_ns);
             CREATE TABLE IF NOT EXISTS reports (
                 id INTEGER PRIMARY KEY,
                 node TEXT NOT NULL,
                 window_start_ns INTEGER NOT NULL,
                 window_end_ns INTEGER NOT NULL,
                 datapath TEXT NOT NULL,
                 capture TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS reports_by_node ON reports(node, window_end_ns);
             CREATE INDEX IF NOT EXISTS reports_by_time ON reports(window_end_ns);
             CREATE TABLE IF NOT EXISTS node_pods (
                 node TEXT NOT NULL,
                 namespace TEXT NOT NULL,
                 pod TEXT NOT NULL,
                 reported_ns INTEGER NOT NULL,
                 json TEXT NOT NULL,
                 PRIMARY KEY (node, namespace, pod));
             CREATE INDEX IF NOT EXISTS node_pods_by_pod ON node_pods(namespace, pod);",
        )?;
        // Stores made before reports had ids gain the column.
        let has_id: bool = db
            .prepare("SELECT 1 FROM pragma_table_info('reports') WHERE name = 'report_id'")?
            .exists([])?;
        if !has_id {
            db.execute_batch("ALTER TABLE reports ADD COLUMN report_id TEXT")?;
        }
        db.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS reports_by_id ON reports(node, report_id)
                 WHERE report_id IS NOT NULL",
        )?;
        Ok(Store { db, retention_ns })
    }

    /// How long records are kept.
    pub fn retention_ns(&self) -> u64 {
        self.retention_ns
    }

    /// Stores a report in one transaction: all of it or none. A report whose id this node's
    /// reports already hold is not stored again (`Stored::Again`): the agent sent it again
    /// because the answer to the first send was lost.
    pub fn insert(&mut self, r: &NodeReport) -> anyhow::Result<Stored> {
        let tx = self.db.transaction()?;
        if let Some(id) = &r.report_id {
            let seen = tx
                .prepare_cached("SELECT 1 FROM reports WHERE node = ?1 AND report_id = ?2")?
                .exists(params![r.node, id])?;
            if seen {
                return Ok(Stored::Again);
            }
        }
        {
            let mut rec = tx.prepare_cached(
                "INSERT INTO records (kind, node, namespace, pod, category, outcomes, window_end_ns, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut put = |kind: Kind,
                           scope: &outflow_core::wire::Scope,
                           category: Option<String>,
                           outcomes: String,
                           json: String| {
                rec.execute(params![
                    kind.as_str(),
                    scope.node,
                    scope.namespace,
                    scope.pod,
                    category,
                    outcomes,
                    r.window_end_ns as i64,
                    json
                ])
            };
            for c in &r.connections {
                put(
                    Kind::Connection,
                    &c.scope,
                    Some(c.record.category.as_str().to_string()),
                    keys(c.record.outcomes.keys()),
                    serde_json::to_string(c)?,
                )?;
            }
            for d in &r.dns {
                put(
                    Kind::Dns,
                    &d.scope,
                    None,
                    keys(d.record.outcomes.keys()),
                    serde_json::to_string(d)?,
                )?;
            }
            for f in &r.findings {
                put(
                    Kind::Finding,
                    &f.scope,
                    f.record.category.map(|c| c.as_str().to_string()),
                    keys([f.record.severity.as_str().to_string()].iter()),
                    serde_json::to_string(f)?,
                )?;
            }
        }
        tx.execute(
            "INSERT INTO reports (node, report_id, window_start_ns, window_end_ns, datapath, capture)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.node,
                r.report_id,
                r.window_start_ns as i64,
                r.window_end_ns as i64,
                serde_json::to_string(&r.datapath)?,
                serde_json::to_string(&r.capture)?
            ],
        )?;
        // Each report lists all of the node's pods: the list replaces the one before.
        tx.execute("DELETE FROM node_pods WHERE node = ?1", params![r.node])?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO node_pods (node, namespace, pod, reported_ns, json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in &r.pods {
                put.execute(params![
                    r.node,
                    p.namespace,
                    p.pod,
                    r.window_end_ns as i64,
                    serde_json::to_string(p)?
                ])?;
            }
        }
        tx.commit()?;
        Ok(Stored::New)
    }

    /// Deletes what is older than the retention as of `now_ns` (the controller's clock).
    /// Returns the records deleted.
    pub fn expire(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let cutoff = now_ns
            .saturating_sub(self.retention_ns)
            .min(i64::MAX as u64) as i64;
        let tx = self.db.transaction()?;
        // By kind, so the (kind, window_end_ns) index finds the old rows without a scan.
        let records = tx.execute(
            "DELETE FROM records WHERE kind IN ('connection', 'dns', 'finding')
               AND window_end_ns < ?1",
            params![cutoff],
        )?;
        tx.execute(
            "DELETE FROM reports WHERE window_end_ns < ?1",
            params![cutoff],
        )?;
        tx.commit()?;
        Ok(records)
    }

    /// Records of one kind matching the filter, newest first, as stored JSON objects.
    pub fn query(&self, kind: Kind, f: &Filter) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT json FROM records WHERE kind = ?1 AND window_end_ns >= ?2
               AND (?3 IS NULL OR pod = ?3) AND (?4 IS NULL OR namespace = ?4)
               AND (?5 IS NULL OR node = ?5) AND (?6 IS NULL OR category = ?6)
               AND (?7 IS NULL OR outcomes LIKE '% ' || ?7 || ' %')
             ORDER BY window_end_ns DESC, id LIMIT ?8",
        )?;
        let rows = stmt.query_map(
            params![
                kind.as_str(),
                f.since_ns as i64,
                f.pod,
                f.namespace,
                f.node,
                f.category,
                f.outcome,
                f.limit
            ],
            |row| row.get::<_, String>(0),
        )?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok(out)
    }

    /// The node a pod is on: the newest node report listing it, else the node of its latest
    /// records (agents that list no pods).
    pub fn node_of_pod(&self, namespace: &str, name: &str) -> anyhow::Result<Option<String>> {
        let mut listed = self.db.prepare_cached(
            "SELECT node FROM node_pods WHERE namespace = ?1 AND pod = ?2
             ORDER BY reported_ns DESC LIMIT 1",
        )?;
        if let Some(row) = listed.query(params![namespace, name])?.next()? {
            return Ok(Some(row.get(0)?));
        }
        let mut stmt = self.db.prepare_cached(
            "SELECT node FROM records WHERE namespace = ?1 AND pod = ?2
             ORDER BY window_end_ns DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![namespace, name])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// Each node's latest report.
    pub fn nodes(&self) -> anyhow::Result<Vec<NodeHealth>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT node, MAX(window_end_ns), COUNT(*),
                    (SELECT datapath FROM reports r2 WHERE r2.node = r.node ORDER BY window_end_ns DESC LIMIT 1),
                    SUM(json_extract(datapath, '$.event_drops')),
                    SUM(json_extract(datapath, '$.flows_evicted')),
                    SUM(json_extract(datapath, '$.flow_map_full')),
                    SUM(json_extract(datapath, '$.attach_errors')),
                    SUM(json_extract(datapath, '$.reports_dropped')),
                    SUM(json_extract(capture, '$.dns_malformed')),
                    SUM(json_extract(capture, '$.undecodable')),
                    SUM(json_extract(datapath, '$.attribution_mismatches'))
             FROM reports r GROUP BY node ORDER BY node",
        )?;
        let sum = |row: &rusqlite::Row, i: usize| {
            row.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0) as u64)
        };
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
            "SELECT json, (SELECT MAX(window_end_ns) FROM records r
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

/// Space-delimited on both sides, so `LIKE '% key %'` matches whole keys.
fn keys<'a, S: AsRef<str> + 'a>(it: impl Iterator<Item = &'a S>) -> String {
    let mut s = String::from(" ");
    for k in it {
        s.push_str(k.as_ref());
        s.push(' ');
    }
    s
}
