//! The store's size bound: when what it holds passes the bound, the oldest records go first (the
//! log the view does not need), then the oldest buckets and evidence, until it fits. SQLite
//! reuses the pages freed, so the file stops growing at about the bound.

use rusqlite::params;

use super::Store;

/// Rounds of trimming at most per call: each drops a tenth of what is kept.
const MAX_ROUNDS: usize = 64;

impl Store {
    /// Bytes in the store's pages that hold data (free pages, which SQLite reuses, left out).
    pub fn used_bytes(&self) -> anyhow::Result<u64> {
        let pages: i64 = self.db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .db
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages - free).max(0) as u64 * size.max(0) as u64)
    }

    /// Deletes the oldest of what is kept until at most `max_bytes` are used. Returns the rows
    /// deleted.
    pub fn trim_to(&mut self, max_bytes: u64) -> anyhow::Result<usize> {
        let mut deleted = 0;
        for _ in 0..MAX_ROUNDS {
            if self.used_bytes()? <= max_bytes {
                break;
            }
            let n = self.drop_oldest_tenth()?;
            if n == 0 {
                break;
            }
            deleted += n;
        }
        Ok(deleted)
    }

    /// Deletes the oldest tenth of the records' time span, or when there are no records, of the
    /// buckets' and the evidence's.
    fn drop_oldest_tenth(&mut self) -> anyhow::Result<usize> {
        let tx = self.db.transaction()?;
        let span: (Option<i64>, Option<i64>) = tx.query_row(
            "SELECT min(window_end_ns), max(window_end_ns) FROM reports",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut n = 0;
        if let (Some(lo), Some(hi)) = span {
            let cut = lo + (hi - lo) / 10 + 1;
            n += super::log::delete_before(&tx, cut)?;
            n += tx.execute("DELETE FROM reports WHERE window_end_ns < ?1", params![cut])?;
        }
        if n == 0 {
            let span: (Option<i64>, Option<i64>) = tx.query_row(
                "SELECT min(bucket_s), max(bucket_s) FROM rollups",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let (Some(lo), Some(hi)) = span {
                let cut = lo + (hi - lo) / 10 + 1;
                n += tx.execute("DELETE FROM rollups WHERE bucket_s < ?1", params![cut])?;
                n += super::cells::delete_before(&tx, cut)?;
                n += super::tiers::delete_before(&tx, cut)?;
                n += tx.execute(
                    "DELETE FROM evidence WHERE last_ns < ?1",
                    params![cut.saturating_mul(1_000_000_000)],
                )?;
            }
        }
        tx.commit()?;
        Ok(n)
    }
}
