//! The tables behind the flow health view: rollups in time buckets and the evidence beside
//! them. Written with each report, in its transaction; aged on the retention timer.
//!
//! Rollups are written to minute buckets, folded into coarser tiers as they complete
//! (`tiers`), and deleted once older than [`ViewRetention::fine_ns`]; the tiers go when older
//! than [`ViewRetention::rollups_ns`]; evidence goes when its latest record is older than
//! [`ViewRetention::evidence_ns`]. Every delete is a range of the tables' first key columns.

use outflow_core::wire::NodeReport;
use rusqlite::{params, Connection, Transaction};

use super::rollup::{Rollup, FINE_BUCKET_S};

/// How long the view's tables keep what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRetention {
    /// Minute buckets (the coarser tiers are folded from them as they complete).
    pub fine_ns: u64,
    /// Buckets of either width.
    pub rollups_ns: u64,
    /// Evidence, by its latest record.
    pub evidence_ns: u64,
}

const HOUR_NS: u64 = 3_600_000_000_000;
/// An hour (seconds): the cells' coarse buckets, and the hour tier's width.
pub(super) const COARSE_BUCKET_S: u64 = 3_600;

impl Default for ViewRetention {
    /// Six hours of minutes, seven days of hours and of evidence.
    fn default() -> ViewRetention {
        ViewRetention {
            fine_ns: 6 * HOUR_NS,
            rollups_ns: 7 * 24 * HOUR_NS,
            evidence_ns: 7 * 24 * HOUR_NS,
        }
    }
}

/// The largest count a row holds: sums stop here rather than leave SQLite's integers.
pub(super) const MAX_COUNT: i64 = 1 << 53;

/// The columns of a rollup row, in the minutes' table and in the tiers'.
pub(super) const ROLLUP_COLUMNS: &str = "bucket_s INTEGER NOT NULL,
    width_s INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    workload TEXT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    category TEXT NOT NULL,
    destination TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    latency_ms_sum REAL NOT NULL,
    latency_count INTEGER NOT NULL,
    latency_ms_max REAL NOT NULL,";

/// Creates the tables when missing.
pub(super) fn create(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS rollups (
             {ROLLUP_COLUMNS}
             PRIMARY KEY (bucket_s, width_s, namespace, workload, node, kind, category,
                          destination, outcome)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS evidence (
             namespace TEXT NOT NULL,
             workload TEXT NOT NULL,
             category TEXT NOT NULL,
             destination TEXT NOT NULL,
             kind TEXT NOT NULL,
             outcome TEXT NOT NULL,
             node TEXT NOT NULL,
             pod TEXT NOT NULL,
             first_ns INTEGER NOT NULL,
             last_ns INTEGER NOT NULL,
             count INTEGER NOT NULL,
             json TEXT NOT NULL,
             PRIMARY KEY (namespace, workload, category, destination, kind, outcome, node, pod)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS evidence_by_time ON evidence(last_ns);"
    ))
}

fn count(n: u64) -> i64 {
    n.min(MAX_COUNT as u64) as i64
}

fn ns(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// Adds a report's rollup rows and evidence to the tables, in the report's transaction.
pub(super) fn write(tx: &Connection, r: &NodeReport, rollup: &Rollup) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(&format!(
        "INSERT INTO rollups (bucket_s, width_s, namespace, workload, node, kind, category,
                              destination, outcome, count, latency_ms_sum, latency_count,
                              latency_ms_max)
         VALUES (?1, {FINE_BUCKET_S}, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT DO UPDATE SET
             count = min(count + excluded.count, {MAX_COUNT}),
             latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
             latency_count = min(latency_count + excluded.latency_count, {MAX_COUNT}),
             latency_ms_max = max(latency_ms_max, excluded.latency_ms_max)"
    ))?;
    for row in &rollup.rows {
        put.execute(params![
            rollup.bucket_s as i64,
            row.subject.namespace,
            row.subject.workload,
            r.node,
            row.kind.as_str(),
            row.category.as_str(),
            row.destination,
            row.outcome,
            count(row.count),
            row.latency.sum_ms,
            count(row.latency.count),
            row.latency.max_ms,
        ])?;
    }
    let mut put = tx.prepare_cached(&format!(
        "INSERT INTO evidence (namespace, workload, category, destination, kind, outcome, node,
                               pod, first_ns, last_ns, count, json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT DO UPDATE SET
             first_ns = min(first_ns, excluded.first_ns),
             json = CASE WHEN excluded.last_ns >= last_ns THEN excluded.json ELSE json END,
             last_ns = max(last_ns, excluded.last_ns),
             count = min(count + excluded.count, {MAX_COUNT})"
    ))?;
    for e in &rollup.evidence {
        put.execute(params![
            e.subject.namespace,
            e.subject.workload,
            e.category.map(|c| c.as_str()).unwrap_or(""),
            e.destination,
            e.kind,
            e.outcome,
            r.node,
            e.pod,
            ns(r.window_start_ns),
            ns(r.window_end_ns),
            count(e.count),
            e.json,
        ])?;
    }
    super::tiers::add_late(tx, &r.node, rollup)?;
    super::cells::write(tx, &r.node, rollup)
}

/// Merges old minutes into hours and deletes what is past the retention, as of `now_ns`.
/// Returns the rollup rows deleted or merged away.
pub(super) fn age(tx: &Transaction, now_ns: u64, keep: &ViewRetention) -> rusqlite::Result<usize> {
    let now_s = now_ns / 1_000_000_000;
    // Only whole hours: the cells' hour bucket then holds all of its minutes at once.
    let fine_until =
        now_s.saturating_sub(keep.fine_ns / 1_000_000_000) / COARSE_BUCKET_S * COARSE_BUCKET_S;
    super::tiers::fold(tx, now_s)?;
    let merged = tx.execute(
        &format!("DELETE FROM rollups WHERE bucket_s < ?1 AND width_s = {FINE_BUCKET_S}"),
        params![fine_until as i64],
    )?;
    let rollups_until =
        (now_s.saturating_sub(keep.rollups_ns / 1_000_000_000)).min(i64::MAX as u64) as i64;
    let expired = tx.execute(
        "DELETE FROM rollups WHERE bucket_s < ?1",
        params![rollups_until],
    )?;
    let cells = super::cells::age(tx, fine_until as i64, rollups_until)?;
    let tiers = super::tiers::expire(tx, now_s, keep)?;
    tx.execute(
        "DELETE FROM evidence WHERE last_ns < ?1",
        params![ns(now_ns.saturating_sub(keep.evidence_ns))],
    )?;
    Ok(merged + expired + cells + tiers)
}
