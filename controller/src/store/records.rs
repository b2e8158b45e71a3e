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
        let mut stmt = self.db.prepare_cached(
            "SELECT json FROM records WHERE kind = ?1 AND window_end_ns >= ?2
               AND (?3 IS NULL OR pod = ?3) AND (?4 IS NULL OR namespace = ?4)
               AND (?5 IS NULL OR node = ?5) AND (?6 IS NULL OR category = ?6)
               AND (?7 IS NULL OR outcomes LIKE '% ' || ?7 || ' %')
             ORDER BY window_end_ns DESC, id LIMIT ?8",
        )?;
        let rows = stmt.query_map(
            params![
                kind.as_str(),
                f.since_ns as i64,
                f.pod,
                f.namespace,
                f.node,
                f.category,
                f.outcome,
                f.limit
            ],
            |row| row.get::<_, String>(0),
        )?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok(out)
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
            "SELECT node FROM records WHERE namespace = ?1 AND pod = ?2
             ORDER BY window_end_ns DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![namespace, name])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }
}
