//! The record log: what agents sent, kept for the records API (`outflow query`), as blocks.
//!
//! A block holds one report's records of one kind for one pod (or for the node itself), as a
//! zstd-compressed JSON array. A report of 30 pods and 320 records is a few dozen rows instead of
//! 320, and its records' shared scope (node, pod, window) compresses to almost nothing: the log
//! is about a tenth of a row per record's size and far cheaper to write and to index.
//!
//! Queries find blocks by the indexed columns (kind, time, node, namespace, pod) and by the
//! union of their records' filter keys (category, outcomes), then filter the records of each
//! block exactly, newest block first, until the limit.

use std::collections::BTreeMap;

use outflow_core::wire::{NodeReport, Scope};
use rusqlite::{params, Connection, Transaction};
use serde::{Deserialize, Serialize};

use super::{Filter, Kind};

/// zstd's level for blocks: its fastest that still compresses JSON about tenfold.
const LEVEL: i32 = 1;

thread_local! {
    /// The writer's compressor, kept: making one costs more than compressing a block.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A decompressed block larger than this is refused on read rather than trusted.
const MAX_BLOCK_BYTES: usize = 64 << 20;

pub(super) fn create(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS record_blocks (
             id INTEGER PRIMARY KEY,
             kind TEXT NOT NULL,
             node TEXT NOT NULL,
             namespace TEXT,
             pod TEXT,
             window_end_ns INTEGER NOT NULL,
             keys TEXT NOT NULL,
             count INTEGER NOT NULL,
             body BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS record_blocks_by_kind_time
             ON record_blocks(kind, window_end_ns);
         CREATE INDEX IF NOT EXISTS record_blocks_by_pod
             ON record_blocks(namespace, pod, window_end_ns);",
    )
}

/// One record in a block: its filter keys (space-delimited on both sides: the category, then
/// the outcomes or the severity) and the record as the API returns it.
#[derive(Deserialize)]
struct Entry {
    k: String,
    r: serde_json::Value,
}

/// An [`Entry`] as written, borrowing the record.
#[derive(Serialize)]
struct EntryRef<'a, T> {
    k: &'a str,
    r: &'a T,
}

/// The records of one kind for one (namespace, pod) of a report, in the report's order, as the
/// JSON array a block holds.
#[derive(Default)]
struct Block {
    keys: Vec<String>,
    json: Vec<u8>,
    count: usize,
}

impl Block {
    fn push<T: Serialize>(&mut self, keys: &str, record: &T) -> serde_json::Result<()> {
        for k in keys.split(' ').filter(|k| !k.is_empty()) {
            if !self.keys.iter().any(|have| have == k) {
                self.keys.push(k.to_string());
            }
        }
        self.json.push(if self.count == 0 { b'[' } else { b',' });
        serde_json::to_writer(&mut self.json, &EntryRef { k: keys, r: record })?;
        self.count += 1;
        Ok(())
    }

    /// The columns of its row: the union of its keys, its count and its compressed body.
    fn finish(mut self) -> std::io::Result<(String, i64, Vec<u8>)> {
        self.json.push(b']');
        let body = COMPRESSOR.with(|c| -> std::io::Result<Vec<u8>> {
            let mut c = c.borrow_mut();
            let c = match &mut *c {
                Some(c) => c,
                None => c.insert(zstd::bulk::Compressor::new(LEVEL)?),
            };
            c.compress(&self.json)
        })?;
        let keys = keys_of(None, self.keys.iter().map(String::as_str));
        Ok((keys, self.count as i64, body))
    }
}

type BlockKey = (&'static str, Option<String>, Option<String>);

/// Writes a report's records as blocks, in the report's transaction.
pub(super) fn write(tx: &Connection, r: &NodeReport) -> anyhow::Result<()> {
    let mut blocks: BTreeMap<BlockKey, Block> = BTreeMap::new();
    fn block<'m>(
        blocks: &'m mut BTreeMap<BlockKey, Block>,
        kind: Kind,
        s: &Scope,
    ) -> &'m mut Block {
        blocks
            .entry((kind.as_str(), s.namespace.clone(), s.pod.clone()))
            .or_default()
    }
    for c in &r.connections {
        let keys = keys_of(
            Some(c.record.category.as_str()),
            c.record.outcomes.keys().map(|o| o.as_ref()),
        );
        block(&mut blocks, Kind::Connection, &c.scope).push(&keys, c)?;
    }
    for d in &r.dns {
        let keys = keys_of(None, d.record.outcomes.keys().map(|o| o.as_ref()));
        block(&mut blocks, Kind::Dns, &d.scope).push(&keys, d)?;
    }
    for f in &r.findings {
        let keys = keys_of(
            f.record.category.map(|c| c.as_str()),
            std::iter::once(f.record.severity.as_str()),
        );
        block(&mut blocks, Kind::Finding, &f.scope).push(&keys, f)?;
    }
    let mut put = tx.prepare_cached(INSERT_BLOCK)?;
    let end_ns = r.window_end_ns.min(i64::MAX as u64) as i64;
    for ((kind, namespace, pod), block) in blocks {
        let (keys, count, body) = block.finish()?;
        put.execute(params![
            kind, r.node, namespace, pod, end_ns, keys, count, body
        ])?;
    }
    Ok(())
}

const INSERT_BLOCK: &str =
    "INSERT INTO record_blocks (kind, node, namespace, pod, window_end_ns, keys, count, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Space-delimited on both sides, so `instr(keys, ' ' || key || ' ')` finds whole keys only.
fn keys_of<'a>(category: Option<&'a str>, rest: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::from(" ");
    for k in category.into_iter().chain(rest) {
        s.push_str(k);
        s.push(' ');
    }
    s
}

/// Whether a record's keys hold `key`, matched whole and literally.
fn has_key(keys: &str, key: &str) -> bool {
    keys.split(' ').any(|k| k == key)
}

/// Records of one kind matching the filter, newest block first, in each block the report's
/// order, at most `f.limit`.
pub(super) fn query(
    db: &Connection,
    kind: Kind,
    f: &Filter,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut stmt = db.prepare_cached(
        "SELECT body FROM record_blocks WHERE kind = ?1 AND window_end_ns >= ?2
           AND (?3 IS NULL OR pod = ?3) AND (?4 IS NULL OR namespace = ?4)
           AND (?5 IS NULL OR node = ?5)
           AND (?6 IS NULL OR instr(keys, ' ' || ?6 || ' ') > 0)
           AND (?7 IS NULL OR instr(keys, ' ' || ?7 || ' ') > 0)
         ORDER BY window_end_ns DESC, id",
    )?;
    let mut rows = stmt.query(params![
        kind.as_str(),
        f.since_ns.min(i64::MAX as u64) as i64,
        f.pod,
        f.namespace,
        f.node,
        f.category,
        f.outcome,
    ])?;
    let limit = f.limit as usize;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let body = row.get_ref(0)?.as_blob()?;
        let json = zstd::bulk::decompress(body, MAX_BLOCK_BYTES)
            .map_err(|e| anyhow::anyhow!("a block of the record log is damaged: {e}"))?;
        let entries: Vec<Entry> = serde_json::from_slice(&json)?;
        let wanted = entries.into_iter().filter(|e| {
            f.category.as_deref().is_none_or(|c| has_key(&e.k, c))
                && f.outcome.as_deref().is_none_or(|o| has_key(&e.k, o))
        });
        out.extend(wanted.map(|e| e.r).take(limit - out.len()));
    }
    Ok(out)
}

/// Deletes the blocks of windows ending before `cutoff_ns`; returns the records they held.
pub(super) fn delete_before(tx: &Transaction, cutoff_ns: i64) -> rusqlite::Result<usize> {
    // By kind, so the (kind, window_end_ns) index finds the old rows without a scan.
    let records: i64 = tx.query_row(
        "SELECT coalesce(sum(count), 0) FROM record_blocks
         WHERE kind IN ('connection', 'dns', 'finding') AND window_end_ns < ?1",
        params![cutoff_ns],
        |r| r.get(0),
    )?;
    tx.execute(
        "DELETE FROM record_blocks WHERE kind IN ('connection', 'dns', 'finding')
           AND window_end_ns < ?1",
        params![cutoff_ns],
    )?;
    Ok(records as usize)
}

/// Moves a store's records from their row-per-record table, which stores made before the log
/// had blocks kept, into blocks, and drops that table. Runs once, when such a store is opened.
pub(super) fn migrate(db: &mut Connection) -> anyhow::Result<()> {
    let old: bool = db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'")?
        .exists([])?;
    if !old {
        return Ok(());
    }
    let tx = db.transaction()?;
    let mut moved = 0usize;
    {
        let mut read = tx.prepare(
            "SELECT kind, node, namespace, pod, window_end_ns, category, outcomes, json
             FROM records ORDER BY window_end_ns, node, kind, namespace, pod, id",
        )?;
        let mut put = tx.prepare(INSERT_BLOCK)?;
        type Head = (String, String, Option<String>, Option<String>, i64);
        let mut current: Option<(Head, Block)> = None;
        let mut flush = |done: Option<(Head, Block)>| -> anyhow::Result<()> {
            if let Some(((kind, node, namespace, pod, end), block)) = done {
                let (keys, count, body) = block.finish()?;
                put.execute(params![kind, node, namespace, pod, end, keys, count, body])?;
            }
            Ok(())
        };
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let head: Head = (
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            );
            let category: Option<String> = row.get(5)?;
            let outcomes: String = row.get(6)?;
            let record: serde_json::Value = serde_json::from_str(row.get_ref(7)?.as_str()?)?;
            if current.as_ref().is_none_or(|(h, _)| *h != head) {
                flush(current.take())?;
                current = Some((head, Block::default()));
            }
            let keys = keys_of(
                category.as_deref(),
                outcomes.split(' ').filter(|k| !k.is_empty()),
            );
            if let Some((_, block)) = current.as_mut() {
                block.push(&keys, &record)?;
            }
            moved += 1;
        }
        flush(current.take())?;
    }
    tx.execute_batch("DROP TABLE records")?;
    tx.commit()?;
    tracing::info!(records = moved, "moved the record log into blocks");
    Ok(())
}
