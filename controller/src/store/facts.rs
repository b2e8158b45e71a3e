//! What the diagnoses read: the rollups summed per key over a range, and the evidence kept in
//! it, newest first.

use std::collections::HashMap;

use outflow_core::category::Category;
use outflow_core::{DnsOutcome, Outcome};
use outflow_diagnose::{Example, ExampleRecord, Fact, FactOutcome, Input};
use rusqlite::params;

use super::view::range_secs;
use super::Store;

/// Most evidence rows the diagnoses read.
const MAX_EXAMPLES: u32 = 5_000;

fn outcome(kind: &str, o: &str) -> Option<FactOutcome> {
    if kind == "dns" {
        DnsOutcome::ALL
            .into_iter()
            .find(|d| d.as_str() == o)
            .map(FactOutcome::Dns)
    } else {
        Outcome::ALL
            .into_iter()
            .find(|c| c.as_str() == o)
            .map(FactOutcome::Connection)
    }
}

fn category(s: &str) -> Option<Category> {
    Category::ALL.into_iter().find(|c| c.as_str() == s)
}

/// A rollup key: namespace, workload, node, kind, category, destination, outcome.
type Key = (String, String, String, String, String, String, String);

/// The key in a row's first seven columns.
fn key_of(r: &rusqlite::Row) -> rusqlite::Result<Key> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// How far back the minutes are read for the facts' last times (seconds).
const RECENT_S: i64 = 600;

/// Where the minutes read for the last times begin.
fn recent_from(from_s: i64, to_s: i64) -> i64 {
    from_s.max(to_s - RECENT_S)
}

impl Store {
    /// The last time of each key in the range's last [`RECENT_S`], from the minutes: what tells
    /// an active failure from one that stopped.
    fn recently_seen(&self, from_s: i64, to_s: i64) -> anyhow::Result<HashMap<Key, i64>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT namespace, workload, node, kind, category, destination, outcome,
                    max(bucket_s + width_s)
             FROM rollups WHERE bucket_s >= ?1 AND bucket_s < ?2
             GROUP BY namespace, workload, node, kind, category, destination, outcome",
        )?;
        let mut seen = HashMap::new();
        let mut rows = stmt.query(params![recent_from(from_s, to_s), to_s])?;
        while let Some(r) = rows.next()? {
            let key = key_of(r)?;
            seen.insert(key, r.get(7)?);
        }
        Ok(seen)
    }

    /// The diagnoses' input for `[from_ns, to_ns)`, as of `now_ns`.
    pub fn diagnosis_input(&self, from_ns: u64, to_ns: u64, now_ns: u64) -> anyhow::Result<Input> {
        let (from_s, to_s) = range_secs(from_ns, to_ns);
        let rows = self.rollups_of(from_s, to_s);
        // Minutes end when their traffic did; only coarser buckets need the minutes' word.
        let recent = if self.width_of(from_s, to_s) == super::rollup::FINE_BUCKET_S {
            None
        } else {
            Some(self.recently_seen(from_s, to_s)?)
        };
        let recent_from_s = recent_from(from_s, to_s);
        let mut stmt = self.db.prepare_cached(&format!(
            "SELECT namespace, workload, node, kind, category, destination, outcome, sum(count),
                    min(bucket_s), max(bucket_s + width_s)
             FROM {rows}
             GROUP BY namespace, workload, node, kind, category, destination, outcome"
        ))?;
        let mut facts = Vec::new();
        let mut rows = stmt.query(params![from_s, to_s])?;
        while let Some(r) = rows.next()? {
            let key = key_of(r)?;
            let (Some(category), Some(outcome)) = (category(&key.4), outcome(&key.3, &key.6))
            else {
                continue;
            };
            // A coarse bucket ends after the range, or long after the last of its traffic: the
            // last time is the minutes' when they saw it, else before them.
            let bucket_last = r.get::<_, i64>(9)?;
            let last_s = match recent.as_ref().map(|r| r.get(&key)) {
                None => bucket_last,
                Some(Some(last)) => *last,
                Some(None) => bucket_last.min(recent_from_s),
            };
            facts.push(Fact {
                count: r.get::<_, i64>(7)?.max(0) as u64,
                first_ns: r.get::<_, i64>(8)?.max(from_s).max(0) as u64 * 1_000_000_000,
                last_ns: last_s.min(to_s).max(0) as u64 * 1_000_000_000,
                namespace: key.0,
                workload: key.1,
                node: key.2,
                category,
                destination: key.5,
                outcome,
            });
        }
        let mut stmt = self.db.prepare_cached(
            "SELECT namespace, workload, node, pod, destination, kind, last_ns, json
             FROM evidence WHERE last_ns >= ?1 ORDER BY last_ns DESC LIMIT ?2",
        )?;
        let mut examples = Vec::new();
        let mut rows = stmt.query(params![from_ns.min(i64::MAX as u64) as i64, MAX_EXAMPLES])?;
        while let Some(r) = rows.next()? {
            let json: String = r.get(7)?;
            // A record that no longer parses (written by another version) is skipped, not fatal.
            let record = match r.get::<_, String>(5)?.as_str() {
                "dns" => serde_json::from_str(&json).map(ExampleRecord::Dns),
                "finding" => serde_json::from_str(&json).map(ExampleRecord::Finding),
                _ => serde_json::from_str(&json).map(ExampleRecord::Connection),
            };
            let Ok(record) = record else { continue };
            examples.push(Example {
                namespace: r.get(0)?,
                workload: r.get(1)?,
                node: r.get(2)?,
                pod: r.get(3)?,
                destination: r.get(4)?,
                last_ns: r.get::<_, i64>(6)?.max(0) as u64,
                record,
            });
        }
        Ok(Input {
            now_ns,
            facts,
            examples,
        })
    }
}
