//! The matrix's own rollup: the same counters as the rollups, without node and destination, so
//! a cell over a week sums a few rows per bucket instead of one per node and destination.
//!
//! `cells` counts each (namespace, workload, kind, category, outcome) per bucket, minutes
//! merged into hours as the rollups are. `cell_nodes` notes, per hour, which nodes each
//! (namespace, workload, category) had traffic from: a cell's node count is exact to the hour.
//! Both are written with each report, in its transaction, and aged with the rollups.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, Transaction};

use super::buckets::{COARSE_BUCKET_S, MAX_COUNT};
use super::rollup::{Rollup, FINE_BUCKET_S};

/// Creates the tables when missing; a store that had rollups before them gains its cells.
pub(super) fn create(db: &Connection) -> rusqlite::Result<()> {
    let existed: bool = db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cells'")?
        .exists([])?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS cells (
             bucket_s INTEGER NOT NULL,
             width_s INTEGER NOT NULL,
             namespace TEXT NOT NULL,
             workload TEXT NOT NULL,
             kind TEXT NOT NULL,
             category TEXT NOT NULL,
             outcome TEXT NOT NULL,
             count INTEGER NOT NULL,
             PRIMARY KEY (bucket_s, width_s, namespace, workload, kind, category, outcome)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS cell_nodes (
             hour_s INTEGER NOT NULL,
             namespace TEXT NOT NULL,
             workload TEXT NOT NULL,
             category TEXT NOT NULL,
             node TEXT NOT NULL,
             PRIMARY KEY (hour_s, namespace, workload, category, node)
         ) WITHOUT ROWID;",
    )?;
    if !existed {
        db.execute_batch(&format!(
            "INSERT INTO cells
             SELECT bucket_s, width_s, namespace, workload, kind, category, outcome,
                    min(sum(count), {MAX_COUNT})
             FROM rollups GROUP BY bucket_s, width_s, namespace, workload, kind, category, outcome;
             INSERT OR IGNORE INTO cell_nodes
             SELECT DISTINCT bucket_s / {COARSE_BUCKET_S} * {COARSE_BUCKET_S}, namespace,
                    workload, category, node
             FROM rollups;"
        ))?;
    }
    Ok(())
}

/// Adds a report's rollup, summed over nodes and destinations, in the report's transaction.
pub(super) fn write(tx: &Connection, node: &str, rollup: &Rollup) -> rusqlite::Result<()> {
    let mut sums: BTreeMap<_, u64> = BTreeMap::new();
    let mut cells = BTreeSet::new();
    for row in &rollup.rows {
        let key = (&row.subject, row.kind, row.category, row.outcome);
        let n = sums.entry(key).or_default();
        *n = n.saturating_add(row.count);
        cells.insert((&row.subject, row.category));
    }
    let mut put = tx.prepare_cached(&format!(
        "INSERT INTO cells (bucket_s, width_s, namespace, workload, kind, category, outcome, count)
         VALUES (?1, {FINE_BUCKET_S}, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT DO UPDATE SET count = min(count + excluded.count, {MAX_COUNT})"
    ))?;
    for ((subject, kind, category, outcome), n) in sums {
        put.execute(params![
            rollup.bucket_s as i64,
            subject.namespace,
            subject.workload,
            kind.as_str(),
            category.as_str(),
            outcome,
            n.min(MAX_COUNT as u64) as i64,
        ])?;
    }
    let hour_s = rollup.bucket_s / COARSE_BUCKET_S * COARSE_BUCKET_S;
    let mut put = tx.prepare_cached(
        "INSERT OR IGNORE INTO cell_nodes (hour_s, namespace, workload, category, node)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (subject, category) in cells {
        put.execute(params![
            hour_s as i64,
            subject.namespace,
            subject.workload,
            category.as_str(),
            node
        ])?;
    }
    Ok(())
}

/// Merges the minutes before `fine_until` into hours and deletes what is before
/// `expire_until` (seconds since the epoch). Returns the rows deleted or merged away.
pub(super) fn age(tx: &Transaction, fine_until: i64, expire_until: i64) -> rusqlite::Result<usize> {
    tx.execute(
        &format!(
            "INSERT INTO cells (bucket_s, width_s, namespace, workload, kind, category, outcome,
                                count)
             SELECT bucket_s / {COARSE_BUCKET_S} * {COARSE_BUCKET_S}, {COARSE_BUCKET_S},
                    namespace, workload, kind, category, outcome, min(sum(count), {MAX_COUNT})
             FROM cells WHERE bucket_s < ?1 AND width_s = {FINE_BUCKET_S}
             GROUP BY 1, namespace, workload, kind, category, outcome
             ON CONFLICT DO UPDATE SET count = min(count + excluded.count, {MAX_COUNT})"
        ),
        params![fine_until],
    )?;
    let merged = tx.execute(
        &format!("DELETE FROM cells WHERE bucket_s < ?1 AND width_s = {FINE_BUCKET_S}"),
        params![fine_until],
    )?;
    Ok(merged + delete_before(tx, expire_until)?)
}

/// Deletes every bucket that starts before `until` (seconds since the epoch).
pub(super) fn delete_before(tx: &Transaction, until: i64) -> rusqlite::Result<usize> {
    Ok(
        tx.execute("DELETE FROM cells WHERE bucket_s < ?1", params![until])?
            + tx.execute("DELETE FROM cell_nodes WHERE hour_s < ?1", params![until])?,
    )
}
