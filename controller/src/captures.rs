//! Captures on demand, as the controller keeps them: what was asked, which node runs it, its
//! state and counters, and its pcapng on disk.
//!
//! A capture is created by a person (`POST /api/v1/captures`), picked up by its node's agent
//! (long poll), streamed up by the agent into `DIR/ID.pcapng` while readers stream it down, and
//! finished with the agent's summary. Ids are numbers the controller makes, so no request can
//! name a path. Finished captures are kept under a byte budget, oldest evicted first; a sidecar
//! `ID.json` lets a restarted controller list them again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use outflow_core::wire::captures::{CaptureInfo, CaptureResult, CaptureSpec, CaptureState};

/// An agent long-polls at most 30 s at a time and retries within seconds: silence beyond this
/// means it is not polling.
const STALE_AGENT_NS: u64 = 45_000_000_000;

/// Nodes whose last poll is remembered (the AKS node limit, with room).
const MAX_POLLING_NODES: usize = 10_000;

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
            opened_ns: crate::api::now_ns(),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

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

    /// The pcapng file of a capture.
    pub fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.pcapng"))
    }

    /// Why a capture on `node` may wait: its agent has not asked for captures lately.
    pub fn stale_warning(&self, node: &str, now_ns: u64) -> Option<String> {
        let secs = |ns: u64| ns / 1_000_000_000;
        let last = self
            .polls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied();
        match last {
            Some(t) if now_ns.saturating_sub(t) > STALE_AGENT_NS => Some(format!(
                "node {node}'s agent last asked for captures {} s ago: it may be down or cut off \
                 from the controller; the capture starts when it asks again",
                secs(now_ns - t)
            )),
            None if now_ns.saturating_sub(self.opened_ns) > STALE_AGENT_NS => Some(format!(
                "no agent on node {node} has asked for captures in the {} s this controller has \
                 run: check that the agent runs there and reaches this controller (its log says \
                 why not); the capture starts when it asks",
                secs(now_ns - self.opened_ns)
            )),
            _ => None,
        }
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
        {
            let mut polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: a name is kept only while there are few, or when it is already known.
            if polls.len() < MAX_POLLING_NODES || polls.contains_key(node) {
                polls.insert(node.to_string(), now_ns);
            }
        }
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

    fn persist(&self, info: &CaptureInfo) {
        if matches!(info.state, CaptureState::Done | CaptureState::Failed) {
            if let Ok(json) = serde_json::to_vec(info) {
                let _ = std::fs::write(self.dir.join(format!("{}.json", info.id)), json);
            }
        }
    }

    /// Removes the oldest finished captures until the files fit the budget.
    fn evict(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("outflow-captures-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn spec(pod: &str) -> CaptureSpec {
        CaptureSpec {
            pod: Some(pod.to_string()),
            ..CaptureSpec::default()
        }
    }

    fn done(caps: &Captures, id: u64, bytes: usize) {
        assert_eq!(caps.take_tasks("n1", 1).len(), 1);
        let mut file = caps.open_upload(id).expect("open");
        caps.append(id, &mut file, &vec![7u8; bytes])
            .expect("append");
        caps.finish(
            id,
            CaptureResult {
                ended: "stopped".into(),
                ..CaptureResult::default()
            },
            9,
        )
        .expect("finish");
    }

    #[test]
    fn finished_captures_past_the_budget_are_evicted_oldest_first_and_survive_a_restart() {
        let d = dir("budget");
        let caps = Captures::open(&d, 2500).expect("open");
        for _ in 0..3 {
            let id = caps.create(spec("default/web"), "n1".into(), 1).id;
            done(&caps, id, 1000);
        }
        let ids: Vec<u64> = caps.list().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![3, 2], "the oldest went to stay within 2500 bytes");
        assert!(!caps.path(1).exists() && caps.path(2).exists());
        let again = Captures::open(&d, 2500).expect("reopen");
        let listed: Vec<(u64, CaptureState)> =
            again.list().iter().map(|c| (c.id, c.state)).collect();
        assert_eq!(
            listed,
            vec![(3, CaptureState::Done), (2, CaptureState::Done)]
        );
        assert_eq!(
            again.create(spec("default/web"), "n1".into(), 1).id,
            4,
            "ids are not reused"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_capture_goes_pending_running_stopping_done_and_only_its_node_takes_it() {
        let d = dir("states");
        let caps = Captures::open(&d, u64::MAX).expect("open");
        let id = caps.create(spec("default/web"), "n1".into(), 1).id;
        assert!(
            caps.take_tasks("n2", 1).is_empty(),
            "another node's agent does not get it"
        );
        assert_eq!(caps.take_tasks("n1", 1)[0].id, id);
        assert!(caps.take_tasks("n1", 1).is_empty(), "handed over once");
        assert_eq!(
            caps.stop(id, 2).expect("stop").state,
            CaptureState::Stopping
        );
        caps.finish(
            id,
            CaptureResult {
                packets: 5,
                ended: "stopped".into(),
                ..CaptureResult::default()
            },
            3,
        )
        .expect("finish");
        let c = caps.get(id).expect("kept");
        assert_eq!((c.state, c.packets), (CaptureState::Done, 5));
        let pending = caps.create(spec("default/db"), "n1".into(), 4).id;
        let c = caps.stop(pending, 5).expect("stop");
        assert_eq!(
            c.state,
            CaptureState::Done,
            "a capture stopped before it started is over"
        );
        assert!(caps.take_tasks("n1", 1).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_capture_on_a_node_whose_agent_went_quiet_says_so_at_once() {
        let caps = Captures::open(&dir("stale"), 1 << 20).expect("open");
        let start = caps.opened_ns;
        let s = 1_000_000_000;
        // Just started: agents have not had time to poll; no warning.
        let fresh = caps.create(spec("default/web"), "n1".into(), start + s);
        assert_eq!(fresh.warning, None);
        // An agent that polls is heard from; one that stopped 2 minutes ago is not.
        caps.take_tasks("n1", start + 10 * s);
        caps.take_tasks("n2", start + 10 * s);
        caps.take_tasks("n1", start + 120 * s);
        let live = caps.create(spec("default/web"), "n1".into(), start + 125 * s);
        assert_eq!(live.warning, None);
        let quiet = caps.create(spec("default/api"), "n2".into(), start + 130 * s);
        let w = quiet.warning.expect("a warning");
        assert!(
            w.contains("node n2's agent last asked for captures 120 s ago"),
            "{w}"
        );
        // A node no agent ever polled for, once the controller has run long enough to know.
        let unknown = caps.create(spec("default/db"), "n9".into(), start + 130 * s);
        let w = unknown.warning.expect("a warning");
        assert!(w.contains("no agent on node n9 has asked"), "{w}");
        // The warning is part of what the API serves for the capture.
        assert_eq!(caps.get(unknown.id).expect("kept").warning, Some(w));
    }
}
