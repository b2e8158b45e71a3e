//! The SQLite store of window reports.
//!
//! The record log ([`log`]: each report's records in compressed blocks by pod, for the records
//! API), one row per report for the health view, and the view's rollups, cells and tiers.
//! Reports are written in batches, one transaction for many ([`Store::insert_batch`]). What is
//! older than the retention is deleted by [`Store::expire`], which the controller runs on a
//! timer by its own clock: never on the ingest path, and never moved by a report's dates.

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
pub use tiers::TIERS;
pub use view::{CellQuery, MatrixQuery};

mod buckets;
mod cells;
mod facts;
mod log;
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
        let mut db = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the store {}: {e}", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA cache_size=-65536;
             PRAGMA temp_store=MEMORY;
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
        log::create(&db)?;
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
        log::migrate(&mut db)?;
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

    /// Stores a report in a transaction of its own: all of it or none. A report whose id this
    /// node's reports already hold is not stored again (`Stored::Again`): the agent sent it
    /// again because the answer to the first send was lost.
    pub fn insert(&mut self, r: &NodeReport) -> anyhow::Result<Stored> {
        self.insert_batch(std::slice::from_ref(r))?
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("a batch of one gave no answer")))
    }

    /// Stores reports in one transaction, each all or none: a report that fails is rolled back
    /// alone and its error is its answer, the others stored. One commit for many reports is
    /// what lets the store keep up with thousands of agents: the pages they share (indexes,
    /// the minute's rollups) are written once per batch, not once per report. Fails as a whole
    /// (nothing stored) only when the transaction itself cannot begin or commit.
    pub fn insert_batch(
        &mut self,
        reports: &[NodeReport],
    ) -> anyhow::Result<Vec<anyhow::Result<Stored>>> {
        let mut tx = self.db.transaction()?;
        let mut answers = Vec::with_capacity(reports.len());
        for r in reports {
            let mut one = tx.savepoint()?;
            let answer = write_report(&one, r, &self.cluster_domain);
            if matches!(answer, Ok(Stored::New)) {
                one.commit()?;
            } else {
                one.rollback()?;
            }
            answers.push(answer);
        }
        tx.commit()?;
        Ok(answers)
    }

    /// Folds the finished minutes into the next tier that has not folded them, in a
    /// transaction of its own; false when every tier is up to date. [`Store::expire`] folds
    /// whatever is left, so calling this first only splits the work.
    pub fn fold_step(&mut self, now_ns: u64) -> anyhow::Result<bool> {
        let tx = self.db.transaction()?;
        let folded = tiers::fold_one(&tx, now_ns / 1_000_000_000)?;
        tx.commit()?;
        Ok(folded)
    }

    /// Deletes what is older than the retention as of `now_ns` (the controller's clock), merges
    /// the view's old minute buckets into hours, and trims the store to its size bound. Returns
    /// the records deleted by age.
    pub fn expire(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let cutoff = now_ns
            .saturating_sub(self.retention_ns)
            .min(i64::MAX as u64) as i64;
        let tx = self.db.transaction()?;
        let records = log::delete_before(&tx, cutoff)?;
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

/// Writes one report: its id, its records into the log, the node's pods, and the view's
/// rollups.
fn write_report(tx: &Connection, r: &NodeReport, cluster_domain: &str) -> anyhow::Result<Stored> {
    if let Some(id) = &r.report_id {
        let seen = tx
            .prepare_cached("SELECT 1 FROM reports WHERE node = ?1 AND report_id = ?2")?
            .exists(params![r.node, id])?;
        if seen {
            return Ok(Stored::Again);
        }
    }
    log::write(tx, r)?;
    tx.prepare_cached(
        "INSERT INTO reports (node, report_id, window_start_ns, window_end_ns, datapath, capture)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        r.node,
        r.report_id,
        r.window_start_ns as i64,
        r.window_end_ns as i64,
        serde_json::to_string(&r.datapath)?,
        serde_json::to_string(&r.capture)?
    ])?;
    // Each report lists all of the node's pods: the list replaces the one before.
    tx.prepare_cached("DELETE FROM node_pods WHERE node = ?1")?
        .execute(params![r.node])?;
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
    buckets::write(tx, r, &rollup::rollup(r, cluster_domain)?)?;
    Ok(Stored::New)
}

#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod tests;
