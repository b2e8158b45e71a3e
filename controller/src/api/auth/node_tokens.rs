//! Per-node agent tokens from a file (`--agent-tokens FILE`), for controllers outside a cluster:
//! each line `NODE TOKEN` binds that token to that node.
//!
//! The file is looked at again at most once a second and read again when its size or time
//! changes, so a node added or a token rotated needs no restart; a file that turns bad keeps
//! the table it had, with a warning. Tokens are kept as SHA-256 digests, never as given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::counters::AuthCounters;

/// Shortest token taken: anything shorter can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;
/// How often the file is looked at for a change.
const RECHECK: Duration = Duration::from_secs(1);

/// Why the tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeTokensError {
    /// It cannot be read.
    #[error("--agent-tokens {path}: cannot be read")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("--agent-tokens {path} line {line}: {why}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it and what to write instead.
        why: String,
    },
}

/// A token's digest: what the table is keyed by.
pub(super) type Digest = [u8; 32];

/// SHA-256 of a token.
pub(super) fn digest(token: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The table and when the file was last looked at.
struct Loaded {
    nodes: HashMap<Digest, Arc<str>>,
    /// The file's size and modification time when read.
    stamp: (u64, Option<SystemTime>),
    checked: Instant,
}

/// The node of each agent token in a file.
pub struct NodeTokens {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    /// Tokens that must not be any node's (the shared token).
    reserved: Option<Digest>,
    counters: AuthCounters,
}

impl NodeTokens {
    /// Reads `path`; `shared` is the people's token, which no line may hold.
    pub fn open(path: &Path, shared: Option<&str>) -> Result<NodeTokens, NodeTokensError> {
        let reserved = shared.map(digest);
        let (nodes, stamp) = read(path, reserved)?;
        if nodes.is_empty() {
            tracing::warn!(path = %path.display(), "the agent tokens file names no node: every agent's report is refused until it does");
        }
        Ok(NodeTokens {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                nodes,
                stamp,
                checked: Instant::now(),
            }),
            reserved,
            counters: AuthCounters::default(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn counters(&self) -> &AuthCounters {
        &self.counters
    }

    /// The node `token` is for, by the file as it is now.
    pub fn node_of(&self, token: &str) -> Option<Arc<str>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            if stamp(&self.path).ok() != Some(loaded.stamp) {
                match read(&self.path, self.reserved) {
                    Ok((nodes, stamp)) => {
                        tracing::info!(path = %self.path.display(), nodes = nodes.len(), "agent tokens read again");
                        (loaded.nodes, loaded.stamp) = (nodes, stamp);
                    }
                    Err(e) => {
                        tracing::warn!(error = %outflow_core::error_chain(&e), "agent tokens file changed but cannot be used: keeping the tokens read before");
                    }
                }
            }
        }
        loaded.nodes.get(&digest(token)).cloned()
    }
}

fn stamp(path: &Path) -> std::io::Result<(u64, Option<SystemTime>)> {
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified().ok()))
}

type Table = (HashMap<Digest, Arc<str>>, (u64, Option<SystemTime>));

fn read(path: &Path, reserved: Option<Digest>) -> Result<Table, NodeTokensError> {
    let io = |source| NodeTokensError::Read {
        path: path.to_path_buf(),
        source,
    };
    // The stamp first: a change while reading shows as a change at the next look.
    let stamp = stamp(path).map_err(io)?;
    let text = std::fs::read_to_string(path).map_err(io)?;
    let nodes = parse(&text, reserved).map_err(|(line, why)| NodeTokensError::Line {
        path: path.to_path_buf(),
        line,
        why,
    })?;
    Ok((nodes, stamp))
}

/// The table of a file's text; an error is a line number and what is wrong with it.
fn parse(
    text: &str,
    reserved: Option<Digest>,
) -> Result<HashMap<Digest, Arc<str>>, (usize, String)> {
    let mut nodes: HashMap<Digest, (Arc<str>, usize)> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [node, token] = fields[..] else {
            return Err((
                n,
                format!(
                    "{} fields; a line is `NODE TOKEN` (e.g. `node-1 3f9a…`), `#` starts a comment",
                    fields.len()
                ),
            ));
        };
        if !is_node_name(node) {
            return Err((
                n,
                format!("{node:?} is not a node name (lowercase letters, digits, `-` and `.`, at most 253)"),
            ));
        }
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err((
                n,
                format!(
                    "node {node}'s token is shorter than {MIN_TOKEN_CHARS} characters: make one \
                     with `openssl rand -hex 32`"
                ),
            ));
        }
        let d = digest(token);
        if Some(d) == reserved {
            return Err((
                n,
                format!(
                    "node {node}'s token is the shared token: give each agent a token of its own"
                ),
            ));
        }
        // One node may have two tokens while one is rotated; one token is one node's only.
        if let Some((other, at)) = nodes.get(&d) {
            if **other != *node {
                return Err((
                    n,
                    format!("node {node}'s token is node {other}'s too (line {at}): a token binds one node"),
                ));
            }
        }
        nodes.insert(d, (Arc::from(node), n));
    }
    Ok(nodes.into_iter().map(|(d, (node, _))| (d, node)).collect())
}

/// A node's name as Kubernetes takes it (a DNS subdomain).
fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef-one";
    const T2: &str = "0123456789abcdef-two";

    #[test]
    fn each_line_binds_a_token_to_its_node() {
        let text = format!("# nodes\nnode-1 {T1}\n\n  node-2\t{T2}  \n");
        let nodes = parse(&text, None).unwrap();
        assert_eq!(nodes.get(&digest(T1)).map(|n| &**n), Some("node-1"));
        assert_eq!(nodes.get(&digest(T2)).map(|n| &**n), Some("node-2"));
        assert_eq!(nodes.len(), 2);
    }

    #[test]
    fn a_node_may_hold_two_tokens_while_one_is_rotated() {
        let nodes = parse(&format!("node-1 {T1}\nnode-1 {T2}\n"), None).unwrap();
        assert_eq!(nodes.len(), 2);
    }

    #[test]
    fn bad_lines_are_named_with_what_to_write() {
        let cases = [
            (format!("node-1 {T1} extra"), "3 fields"),
            ("node-1".to_string(), "1 fields"),
            (format!("Node_1 {T1}"), "not a node name"),
            ("node-1 short".to_string(), "shorter than 16"),
            (format!("node-1 {T1}\nnode-2 {T1}"), "node-1's too (line 1)"),
            (format!("node-1 {T1}"), "is the shared token"),
        ];
        for (text, want) in cases {
            let (line, why) = parse(&text, Some(digest(T1)).filter(|_| want.contains("shared")))
                .expect_err(&text);
            assert!(why.contains(want), "{text:?}: {why}");
            assert!(line >= 1);
        }
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_table() {
        let dir = std::env::temp_dir().join(format!("outflow-node-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agents");
        std::fs::write(&path, format!("node-1 {T1}\n")).unwrap();
        let tokens = NodeTokens::open(&path, None).unwrap();
        assert_eq!(tokens.node_of(T1).as_deref(), Some("node-1"));
        assert_eq!(tokens.node_of(T2), None);
        std::fs::write(&path, format!("node-1 {T1}\nnode-2 {T2}\n")).unwrap();
        tokens.loaded.lock().unwrap().checked -= RECHECK;
        assert_eq!(tokens.node_of(T2).as_deref(), Some("node-2"));
        std::fs::write(&path, "node-2 oops this is wrong\n").unwrap();
        tokens.loaded.lock().unwrap().checked -= RECHECK;
        assert_eq!(tokens.node_of(T2).as_deref(), Some("node-2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
