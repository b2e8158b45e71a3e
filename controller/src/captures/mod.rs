//! Captures on demand, as the controller keeps them: what was asked, which node runs it, its
//! state and counters, and its pcapng on disk.
//!
//! A capture is created by a person (`POST /api/v1/captures`), picked up by its node's agent
//! (long poll), streamed up by the agent into `DIR/ID.pcapng` while readers stream it down, and
//! finished with the agent's summary. Ids are numbers the controller makes, so no request can
//! name a path. Finished captures are kept under a byte budget, oldest evicted first; a sidecar
//! `ID.json` lets a restarted controller list them again.
//!
//! This file holds the captures' states and their changes; the files on disk (`files`) and
//! whether each node's agent is asking for its captures (`polls`) have their own.

mod files;
mod polls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub use outflow_core::wire::captures::{CaptureInfo, CaptureResult, CaptureSpec, CaptureState};

/// The captures of this controller.
pub struct Captures {
    dir: PathBuf,
    budget: u64,
    inner: Mutex<BTreeMap<u64, CaptureInfo>>,
    /// When each node's agent last asked for its captures, ns since the epoch.
    polls: Mutex<BTreeMap<String, u64>>,
    /// When this controller opened its captures, ns since the epoch.
    opened_ns: u64,
    /// Bumped at every change, for long polls and streaming readers.
    changed: tokio::sync::watch::Sender<u64>,
}

/// A capture that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("no capture {0}")]
pub struct NoSuchCapture(pub u64);

impl Captures {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CaptureInfo>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// A receiver that wakes at the next change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Registers a new capture for `node`.
    pub fn create(&self, spec: CaptureSpec, node: String, now_ns: u64) -> CaptureInfo {
        let warning = self.stale_warning(&node, now_ns);
        let mut map = self.lock();
        let id = map.keys().next_back().map_or(1, |k| k + 1);
        let info = CaptureInfo {
            id,
            node,
            // The node is the capture's own from now on; the spec keeps what else was asked.
            spec: CaptureSpec { node: None, ..spec },
            state: CaptureState::Pending,
            created_ns: now_ns,
            ended_ns: None,
            packets: 0,
            bytes: 0,
            kernel_drops: 0,
            reason: None,
            warning,
        };
        map.insert(id, info.clone());
        drop(map);
        self.bump();
        info
    }

    /// Every capture, newest first.
    pub fn list(&self) -> Vec<CaptureInfo> {
        self.lock().values().rev().cloned().collect()
    }

    /// One capture.
    pub fn get(&self, id: u64) -> Result<CaptureInfo, NoSuchCapture> {
        self.lock().get(&id).cloned().ok_or(NoSuchCapture(id))
    }

    /// Pending captures of a node, now handed to its agent (running); notes that the agent asked.
    pub fn take_tasks(&self, node: &str, now_ns: u64) -> Vec<CaptureInfo> {
        self.note_poll(node, now_ns);
        let mut map = self.lock();
        let mut out = Vec::new();
        for c in map.values_mut() {
            if c.node == node && c.state == CaptureState::Pending {
                c.state = CaptureState::Running;
                out.push(c.clone());
            }
        }
        drop(map);
        if !out.is_empty() {
            self.bump();
        }
        out
    }

    /// Asks a capture to stop. A pending one never starts.
    pub fn stop(&self, id: u64, now_ns: u64) -> Result<CaptureInfo, NoSuchCapture> {
        let mut map = self.lock();
        let c = map.get_mut(&id).ok_or(NoSuchCapture(id))?;
        match c.state {
            CaptureState::Pending => {
                c.state = CaptureState::Done;
                c.ended_ns = Some(now_ns);
                c.reason = Some("stopped before it started".into());
            }
            CaptureState::Running => c.state = CaptureState::Stopping,
            _ => {}
        }
        let info = c.clone();
        drop(map);
        self.persist(&info);
        self.bump();
        Ok(info)
    }

    /// Ends a capture with the agent's summary, then evicts old files past the budget.
    pub fn finish(&self, id: u64, r: CaptureResult, now_ns: u64) -> Result<(), NoSuchCapture> {
        let info = {
            let mut map = self.lock();
            let c = map.get_mut(&id).ok_or(NoSuchCapture(id))?;
            c.packets = r.packets;
            c.kernel_drops = r.kernel_drops;
            c.ended_ns = Some(now_ns);
            (c.state, c.reason) = match r.error {
                Some(e) => (CaptureState::Failed, Some(e)),
                None => (CaptureState::Done, Some(r.ended)),
            };
            c.clone()
        };
        self.persist(&info);
        self.evict();
        self.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
