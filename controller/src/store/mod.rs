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

/// Whether a report was stored or had been already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Its id was stored before: nothing changed.
    Again,
}

pub use nodes::IDLE_AFTER_NS;
pub use outflow_core::wire::health::{DatapathTotals, NodeHealth, PodHealth};
pub use records::Filter;

pub use buckets::ViewRetention;
pub use view::{CellQuery, MatrixQuery};

mod buckets;
mod cells;
mod facts;
mod nodes;
mod records;
pub mod rollup;
mod size;
mod tiers;
mod view;

/// The cluster domain assumed until the cluster says its own.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The store.
pub struct Store {
    db: Connection,
    retention_ns: u64,
    /// How long the rollups' minute buckets, hour buckets and evidence are kept.
    view_retention: ViewRetention,
    /// The cluster's DNS domain: lookups of names in it are internal.
    cluster_domain: String,
    /// The most bytes the store holds; past it the oldest go ([`Store::trim_to`]).
    max_bytes: u64,
    /// The file, for readers of their own; none in memory.
    path: Option<std::path::PathBuf>,
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
        buckets::create(&db)?;
        cells::create(&db)?;
        tiers::create(&db)?;
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
        Ok(Store {
            db,
            retention_ns,
            view_retention: ViewRetention::default(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            max_bytes: u64::MAX,
            path: (path != Path::new(":memory:")).then(|| path.to_path_buf()),
        })
    }

    /// Keeps the view's rollups and evidence as `retention` says.
    pub fn with_view_retention(mut self, retention: ViewRetention) -> Store {
        self.view_retention = retention;
        self
    }

    /// A connection of its own to the same file, for queries: SQLite's write-ahead log lets it
    /// read while reports are written, so a person's query never holds up ingest, nor ingest
    /// a query. None for a store in memory, which has one connection only.
    pub fn reader(&self) -> anyhow::Result<Option<Store>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let mut reader = Store::open(path, self.retention_ns)?;
        reader.cluster_domain.clone_from(&self.cluster_domain);
        reader.view_retention = self.view_retention;
        Ok(Some(reader))
    }

    /// Keeps the store at most `max_bytes` large: past it, the retention timer deletes the
    /// oldest records, then the oldest buckets.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Store {
        self.max_bytes = max_bytes;
        self
    }

    /// Lookups of names in `domain` count as internal.
    pub fn set_cluster_domain(&mut self, domain: &str) {
        domain
            .trim_matches('.')
            .clone_into(&mut self.cluster_domain);
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
        buckets::write(&tx, r, &rollup::rollup(r, &self.cluster_domain)?)?;
        tx.commit()?;
        Ok(Stored::New)
    }

    /// Deletes what is older than the retention as of `now_ns` (the controller's clock), merges
    /// the view's old minute buckets into hours, and trims the store to its size bound. Returns
    /// the records deleted by age.
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
        buckets::age(&tx, now_ns, &self.view_retention)?;
        tx.commit()?;
        self.trim_to(self.max_bytes)?;
        Ok(records)
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

#[cfg(test)]
mod tests;
