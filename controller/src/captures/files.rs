//! A capture's files in the capture directory: `ID.pcapng` as the agent streams it up, an
//! `ID.json` sidecar once it has ended, and eviction of the oldest past the byte budget.
//!
//! Kept apart from the states so that everything touching the directory is in one place; the
//! names come from ids alone, never from a request.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{CaptureInfo, CaptureState, Captures};

impl Captures {
    /// Captures kept in `dir` (created if missing) within `budget` bytes; finished captures
    /// already there are listed again.
    pub fn open(dir: &Path, budget: u64) -> std::io::Result<Captures> {
        std::fs::create_dir_all(dir)?;
        let mut map = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let info = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<CaptureInfo>(&b).ok());
                if let Some(info) = info {
                    map.insert(info.id, info);
                }
            }
        }
        Ok(Captures {
            dir: dir.to_path_buf(),
            budget,
            inner: Mutex::new(map),
            polls: Mutex::new(BTreeMap::new()),
            opened_ns: crate::clock::now_ns(),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    /// The pcapng file of a capture.
    pub fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.pcapng"))
    }

    /// Opens a capture's file for the agent's stream, which appends to it.
    pub fn open_upload(&self, id: u64) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(id))
    }

    /// Appends a chunk of the agent's stream to the opened file and tells the readers.
    pub fn append(&self, id: u64, file: &mut std::fs::File, chunk: &[u8]) -> std::io::Result<()> {
        file.write_all(chunk)?;
        if let Some(c) = self.lock().get_mut(&id) {
            c.bytes += chunk.len() as u64;
        }
        self.bump();
        Ok(())
    }

    pub(super) fn persist(&self, info: &CaptureInfo) {
        if matches!(info.state, CaptureState::Done | CaptureState::Failed) {
            if let Ok(json) = serde_json::to_vec(info) {
                let _ = std::fs::write(self.dir.join(format!("{}.json", info.id)), json);
            }
        }
    }

    /// Removes the oldest finished captures until the files fit the budget.
    pub(super) fn evict(&self) {
        let mut map = self.lock();
        let mut total: u64 = map.values().map(|c| c.bytes).sum();
        let finished: Vec<u64> = map
            .values()
            .filter(|c| matches!(c.state, CaptureState::Done | CaptureState::Failed))
            .map(|c| c.id)
            .collect();
        for id in finished {
            if total <= self.budget {
                break;
            }
            if let Some(c) = map.remove(&id) {
                total -= c.bytes;
                let _ = std::fs::remove_file(self.path(id));
                let _ = std::fs::remove_file(self.dir.join(format!("{id}.json")));
                tracing::info!(
                    id,
                    bytes = c.bytes,
                    "capture evicted: over the capture budget"
                );
            }
        }
    }
}
