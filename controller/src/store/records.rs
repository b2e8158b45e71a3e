//! Reading records back: the records API's rows and where a pod is.

use rusqlite::params;

use super::{Kind, Store};

/// Filters of a query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Pod name.
    pub pod: Option<String>,
    /// Pod namespace.
    pub namespace: Option<String>,
    /// Node.
    pub node: Option<String>,
    /// Destination category (connections, findings).
    pub category: Option<String>,
    /// Outcome (connections, DNS) or severity (findings).
    pub outcome: Option<String>,
    /// Windows ending at or after this time (ns since the epoch).
    pub since_ns: u64,
    /// Most rows returned.
    pub limit: u32,
}

impl Store {
    /// Records of one kind matching the filter, newest first, as stored JSON objects.
    pub fn query(&self, kind: Kind, f: &Filter) -> anyhow::Result<Vec<serde_json::Value>> {
        super::log::query(&self.db, kind, f)
    }

    /// The node a pod is on: the newest node report listing it, else the node of its latest
    /// records (agents that list no pods).
    pub fn node_of_pod(&self, namespace: &str, name: &str) -> anyhow::Result<Option<String>> {
        let mut listed = self.db.prepare_cached(
            "SELECT node FROM node_pods WHERE namespace = ?1 AND pod = ?2
             ORDER BY reported_ns DESC LIMIT 1",
        )?;
        if let Some(row) = listed.query(params![namespace, name])?.next()? {
            return Ok(Some(row.get(0)?));
        }
        let mut stmt = self.db.prepare_cached(
            "SELECT node FROM record_blocks WHERE namespace = ?1 AND pod = ?2
             ORDER BY window_end_ns DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![namespace, name])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }
}
