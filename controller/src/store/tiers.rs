//! Coarser copies of the rollups, so a range reads a few dozen buckets whatever its length.
//!
//! Reports are written to minute buckets (`rollups`). The retention timer folds each complete
//! minute into 10-minute, hour and day buckets (`rollup_tiers`, keyed by width first so each
//! tier is a range of its own) and notes how far it folded. A range is read from the coarsest
//! tier that still gives it several buckets, plus the minutes not folded yet; a report that
//! arrives for a minute already folded is added to the tiers as it is written. Each tier bucket
//! keeps the first and last minute of its traffic, so first and last times stay exact to the
//! minute (what tells a failure that stopped from one still happening). So the drill-down and
//! the diagnoses over a week read days, not every node's every minute, at the price of a
//! range's start being counted to its tier's width.

use rusqlite::{params, Connection, Transaction};

use super::buckets::{ViewRetention, COARSE_BUCKET_S, MAX_COUNT, ROLLUP_COLUMNS};
use super::rollup::{Rollup, FINE_BUCKET_S};

/// The tiers' widths (seconds), finest first.
pub const TIERS: [u64; 3] = [600, 3_600, 86_400];
/// The fewest buckets a range read from a tier spans: fewer, and a finer tier is read.
const MIN_BUCKETS: u64 = 6;
/// How long the 10-minute tier is kept at least: the ranges it serves are shorter.
const TEN_MINUTES_KEPT_S: u64 = 24 * 3_600;

const COLUMNS: &str = "namespace, workload, node, kind, category, destination, outcome";

/// The upsert that adds to a tier's bucket.
fn upsert(select: &str) -> String {
    format!(
        "INSERT INTO rollup_tiers (width_s, bucket_s, {COLUMNS}, count, latency_ms_sum,
                                   latency_count, latency_ms_max, first_s, last_s)
         {select}
         ON CONFLICT DO UPDATE SET
             first_s = min(first_s, excluded.first_s),
             last_s = max(last_s, excluded.last_s),
             count = min(count + excluded.count, {MAX_COUNT}),
             latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
             latency_count = min(latency_count + excluded.latency_count, {MAX_COUNT}),
             latency_ms_max = max(latency_ms_max, excluded.latency_ms_max)"
    )
}

/// Folds `rollups` rows of width `from_width` with `bucket_s` in `[lo, hi)` into tier `w`.
fn fold_sql(w: u64, from_width: u64) -> String {
    upsert(&format!(
        "SELECT {w}, bucket_s / {w} * {w}, {COLUMNS}, min(sum(count), {MAX_COUNT}),
                sum(latency_ms_sum), min(sum(latency_count), {MAX_COUNT}), max(latency_ms_max),
                min(bucket_s), max(bucket_s + width_s)
         FROM rollups WHERE width_s = {from_width} AND bucket_s >= ?1 AND bucket_s < ?2
         GROUP BY 2, {COLUMNS}"
    ))
}

/// Creates the tables when missing. A store from before the tiers had hour buckets in
/// `rollups`: they move to the hour tier and are folded into days; its minutes are folded by
/// the first [`fold`].
pub(super) fn create(db: &Connection) -> rusqlite::Result<()> {
    let existed: bool = db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rollup_tiers'")?
        .exists([])?;
    db.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS rollup_tiers (
             {ROLLUP_COLUMNS}
             first_s INTEGER NOT NULL,
             last_s INTEGER NOT NULL,
             PRIMARY KEY (width_s, bucket_s, {COLUMNS})
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS rollup_folds (
             width_s INTEGER PRIMARY KEY,
             until_s INTEGER NOT NULL);"
    ))?;
    if !existed {
        let tx = db.unchecked_transaction()?;
        for w in &TIERS[1..] {
            tx.execute(&fold_sql(*w, COARSE_BUCKET_S), params![0, i64::MAX])?;
        }
        tx.execute(
            "DELETE FROM rollups WHERE width_s = ?1",
            params![COARSE_BUCKET_S as i64],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// How far each tier has folded the minutes: `(width, until_s)`.
fn folded(tx: &Connection) -> rusqlite::Result<Vec<(u64, i64)>> {
    let mut stmt = tx.prepare_cached("SELECT width_s, until_s FROM rollup_folds")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?)))?;
    rows.collect()
}

/// Folds every complete minute before `now_s` not folded yet into each tier.
pub(super) fn fold(tx: &Transaction, now_s: u64) -> rusqlite::Result<()> {
    while fold_one(tx, now_s)? {}
    Ok(())
}

/// Folds the complete minutes before `now_s` into the first tier that has not folded them
/// yet; false when every tier is up to date. One tier at a time, so the retention timer can
/// let the writer in between tiers rather than hold the store for all three.
pub(super) fn fold_one(tx: &Transaction, now_s: u64) -> rusqlite::Result<bool> {
    let cut = (now_s / FINE_BUCKET_S * FINE_BUCKET_S).min(i64::MAX as u64) as i64;
    let done = folded(tx)?;
    for w in TIERS {
        let from = done
            .iter()
            .find(|(width, _)| *width == w)
            .map_or(0, |(_, until)| *until);
        if from >= cut {
            continue;
        }
        tx.prepare_cached(&fold_sql(w, FINE_BUCKET_S))?
            .execute(params![from, cut])?;
        tx.execute(
            "INSERT OR REPLACE INTO rollup_folds (width_s, until_s) VALUES (?1, ?2)",
            params![w as i64, cut],
        )?;
        return Ok(true);
    }
    Ok(false)
}

/// Adds a report's rows to the tiers that have folded its minute already: it came late (an
/// agent sending what it queued while the controller was away).
pub(super) fn add_late(tx: &Connection, node: &str, rollup: &Rollup) -> rusqlite::Result<()> {
    let b = rollup.bucket_s.min(i64::MAX as u64) as i64;
    for (w, until) in folded(tx)? {
        if b >= until || !TIERS.contains(&w) {
            continue;
        }
        let mut put = tx.prepare_cached(&upsert(
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        ))?;
        for row in &rollup.rows {
            put.execute(params![
                w as i64,
                (rollup.bucket_s / w * w) as i64,
                row.subject.namespace,
                row.subject.workload,
                node,
                row.kind.as_str(),
                row.category.as_str(),
                row.destination,
                row.outcome,
                row.count.min(MAX_COUNT as u64) as i64,
                row.latency.sum_ms,
                row.latency.count.min(MAX_COUNT as u64) as i64,
                row.latency.max_ms,
                b,
                b + FINE_BUCKET_S as i64,
            ])?;
        }
    }
    Ok(())
}

/// Deletes the tiers' buckets past their retention as of `now_s`.
pub(super) fn expire(
    tx: &Transaction,
    now_s: u64,
    keep: &ViewRetention,
) -> rusqlite::Result<usize> {
    let mut n = 0;
    for w in TIERS {
        let until = now_s.saturating_sub(kept_s(w, keep)).min(i64::MAX as u64) as i64;
        n += delete_tier_before(tx, w, until)?;
    }
    Ok(n)
}

/// Deletes tier `w`'s buckets that start before `until`.
fn delete_tier_before(tx: &Transaction, w: u64, until: i64) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM rollup_tiers WHERE width_s = ?1 AND bucket_s < ?2")?
        .execute(params![w as i64, until])
}

/// Deletes every tier's buckets that start before `until` (seconds since the epoch).
pub(super) fn delete_before(tx: &Transaction, until: i64) -> rusqlite::Result<usize> {
    let mut n = 0;
    for w in TIERS {
        n += delete_tier_before(tx, w, until)?;
    }
    Ok(n)
}

/// How long tier `w` is kept (seconds).
fn kept_s(w: u64, keep: &ViewRetention) -> u64 {
    let rollups = keep.rollups_ns / 1_000_000_000;
    if w == TIERS[0] {
        TEN_MINUTES_KEPT_S
            .max(keep.fine_ns / 1_000_000_000)
            .min(rollups)
    } else {
        rollups
    }
}

/// The width a range of `span_s` seconds is read at: the coarsest tier giving it
/// [`MIN_BUCKETS`] buckets and kept that long, else minutes.
pub(super) fn width_for(span_s: u64, keep: &ViewRetention) -> u64 {
    TIERS
        .into_iter()
        .rev()
        .find(|w| w * MIN_BUCKETS <= span_s && kept_s(*w, keep) >= span_s)
        .unwrap_or(FINE_BUCKET_S)
}

/// The rollup rows of `[?1, ?2)` (seconds) at width `w`, as a table to select from: the tier's
/// buckets overlapping the range, and the minutes it has not folded yet. `first_s` and
/// `last_s` are when each row's traffic began and ended, to the minute.
pub(super) fn rows_in_range(w: u64) -> String {
    let minutes = format!(
        "SELECT bucket_s, width_s, {COLUMNS}, count, bucket_s AS first_s,
                bucket_s + width_s AS last_s FROM rollups
         WHERE bucket_s > ?1 - {FINE_BUCKET_S} AND bucket_s < ?2"
    );
    if w == FINE_BUCKET_S {
        return format!("({minutes})");
    }
    format!(
        "(SELECT bucket_s, width_s, {COLUMNS}, count, first_s, last_s FROM rollup_tiers
          WHERE width_s = {w} AND bucket_s > ?1 - {w} AND bucket_s < ?2
          UNION ALL
          {minutes} AND bucket_s >= coalesce(
              (SELECT until_s FROM rollup_folds WHERE width_s = {w}), 0))"
    )
}
