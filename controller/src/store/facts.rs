//! What the diagnoses read: the rollups summed per key over a range, and the evidence kept in
//! it, newest first.

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

impl Store {
    /// The diagnoses' input for `[from_ns, to_ns)`, as of `now_ns`.
    pub fn diagnosis_input(&self, from_ns: u64, to_ns: u64, now_ns: u64) -> anyhow::Result<Input> {
        let (from_s, to_s) = range_secs(from_ns, to_ns);
        let rows = self.rollups_of(from_s, to_s);
        let mut stmt = self.db.prepare_cached(&format!(
            "SELECT namespace, workload, node, kind, category, destination, outcome, sum(count),
                    min(first_s), max(last_s)
             FROM {rows}
             GROUP BY namespace, workload, node, kind, category, destination, outcome"
        ))?;
        let mut facts = Vec::new();
        let mut rows = stmt.query(params![from_s, to_s])?;
        while let Some(r) = rows.next()? {
            let kind: String = r.get(3)?;
            let (Some(category), Some(outcome)) = (
                category(&r.get::<_, String>(4)?),
                outcome(&kind, &r.get::<_, String>(6)?),
            ) else {
                continue;
            };
            // A bucket at the range's start may have begun before it.
            facts.push(Fact {
                namespace: r.get(0)?,
                workload: r.get(1)?,
                node: r.get(2)?,
                category,
                destination: r.get(5)?,
                outcome,
                count: r.get::<_, i64>(7)?.max(0) as u64,
                first_ns: r.get::<_, i64>(8)?.max(from_s).max(0) as u64 * 1_000_000_000,
                last_ns: r.get::<_, i64>(9)?.min(to_s).max(0) as u64 * 1_000_000_000,
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
