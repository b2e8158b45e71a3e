//! Reading the view: the matrix over a time range, summed from the cells (grouped down to
//! timeline slots in SQL), and one cell's destinations, summed from the rollups; finished here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use outflow_core::category::Category;
use outflow_core::wire::view::{Cell, DestinationHealth, FlowView, GroupBy, ViewRow};
use outflow_core::{DnsOutcome, Outcome};
use rusqlite::params;

use super::buckets::COARSE_BUCKET_S;
use super::rollup::{is_failure, RowKind};
use super::Store;

/// Most destinations one cell lists.
pub const MAX_DESTINATIONS: usize = 200;

/// The rows of a matrix query: which range, how rows are made, which rows.
#[derive(Debug, Clone)]
pub struct MatrixQuery {
    /// From (ns since the epoch).
    pub from_ns: u64,
    /// To.
    pub to_ns: u64,
    /// Rows by namespace or workload.
    pub by: GroupBy,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only rows whose namespace or workload holds this (any case).
    pub search: Option<String>,
}

/// One cell's destinations asked for.
#[derive(Debug, Clone)]
pub struct CellQuery {
    /// From (ns since the epoch).
    pub from_ns: u64,
    /// To.
    pub to_ns: u64,
    /// The row's namespace.
    pub namespace: String,
    /// The row's workload; none: the whole namespace.
    pub workload: Option<String>,
    /// The cell's category.
    pub category: Category,
}

/// Buckets overlapping `[from, to)`: an hour bucket may start up to an hour before `from`.
pub(super) const IN_RANGE: &str =
    "bucket_s >= ?1 - 3600 AND bucket_s < ?2 AND bucket_s + width_s > ?1";

/// A range's ends in whole seconds, as the buckets are: the start rounded down and the end
/// up, so a bucket that began in the range's last second is in it.
pub(super) fn range_secs(from_ns: u64, to_ns: u64) -> (i64, i64) {
    let s = |v: u64| v.min(i64::MAX as u64) as i64;
    (s(from_ns / 1_000_000_000), s(to_ns.div_ceil(1_000_000_000)))
}

/// Adds `n` of `outcome` (a contract spelling) of `kind` to the maps.
fn tally(
    kind: RowKind,
    outcome: &str,
    n: u64,
    connections: &mut BTreeMap<Outcome, u64>,
    dns: &mut BTreeMap<DnsOutcome, u64>,
) {
    match kind {
        RowKind::Connection => {
            if let Some(o) = Outcome::ALL.iter().find(|o| o.as_str() == outcome) {
                *connections.entry(*o).or_default() += n;
            }
        }
        RowKind::Dns => {
            if let Some(o) = DnsOutcome::ALL.iter().find(|o| o.as_str() == outcome) {
                *dns.entry(*o).or_default() += n;
            }
        }
    }
}

/// Whether an outcome has a result: attempts and lookups the capture cut off have none.
fn counted(outcome: &str) -> bool {
    outcome != "incomplete"
}

fn row_kind(s: &str) -> RowKind {
    if s == "dns" {
        RowKind::Dns
    } else {
        RowKind::Connection
    }
}

fn category(s: &str) -> Option<Category> {
    Category::ALL.into_iter().find(|c| c.as_str() == s)
}

impl Store {
    /// The rollup rows of `[from_s, to_s)` as a table to select from (bound as `?1` and `?2`),
    /// read at the coarsest width that still gives the range several buckets.
    pub(super) fn rollups_of(&self, from_s: i64, to_s: i64) -> String {
        let span_s = to_s.saturating_sub(from_s).max(0) as u64;
        super::tiers::rows_in_range(super::tiers::width_for(span_s, &self.view_retention))
    }

    /// The matrix of `q`.
    pub fn matrix(&self, q: &MatrixQuery) -> anyhow::Result<FlowView> {
        let (from_s, to_s) = range_secs(q.from_ns, q.to_ns);
        let span_ns = q.to_ns.saturating_sub(q.from_ns).max(1);
        let slots = outflow_core::wire::view::TIMELINE_SLOTS;
        let slot_ns = span_ns.div_ceil(slots).max(1_000_000_000);
        let slot_s = (slot_ns / 1_000_000_000) as i64;
        let by_workload = q.by == GroupBy::Workload;
        let mut stmt = self.db.prepare_cached(&format!(
            "SELECT namespace, CASE WHEN ?4 THEN workload ELSE '' END AS w, kind, category,
                    outcome, max(0, (bucket_s - ?1) / ?5) AS slot, sum(count)
             FROM cells WHERE {IN_RANGE} AND (?3 IS NULL OR namespace = ?3)
             GROUP BY namespace, w, kind, category, outcome, slot"
        ))?;
        let mut rows: BTreeMap<(String, String), BTreeMap<Category, Cell>> = BTreeMap::new();
        let mut query = stmt.query(params![from_s, to_s, q.namespace, by_workload, slot_s])?;
        while let Some(r) = query.next()? {
            let (ns, w): (String, String) = (r.get(0)?, r.get(1)?);
            let (kind, cat, outcome): (String, String, String) = (r.get(2)?, r.get(3)?, r.get(4)?);
            let slot = (r.get::<_, i64>(5)?.max(0) as usize).min(slots as usize - 1);
            let n = r.get::<_, i64>(6)?.max(0) as u64;
            let (Some(cat), kind) = (category(&cat), row_kind(&kind)) else {
                continue;
            };
            let cell = rows
                .entry((ns, w))
                .or_default()
                .entry(cat)
                .or_insert_with(|| Cell::empty(cat, slots as usize));
            tally(kind, &outcome, n, &mut cell.connections, &mut cell.dns);
            if counted(&outcome) {
                cell.total += n;
            }
            if is_failure(kind, &outcome) {
                cell.failures += n;
                cell.timeline[slot] += n;
            }
        }
        let mut nodes = self.db.prepare_cached(&format!(
            "SELECT namespace, CASE WHEN ?4 THEN workload ELSE '' END AS w, category,
                    count(DISTINCT node)
             FROM cell_nodes
             WHERE hour_s > ?1 - {COARSE_BUCKET_S} AND hour_s < ?2
               AND (?3 IS NULL OR namespace = ?3)
             GROUP BY namespace, w, category"
        ))?;
        let mut query = nodes.query(params![from_s, to_s, q.namespace, by_workload])?;
        while let Some(r) = query.next()? {
            let key = (r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            let cat = category(&r.get::<_, String>(2)?);
            if let Some(cell) = cat.and_then(|c| rows.get_mut(&key)?.get_mut(&c)) {
                cell.nodes = r.get::<_, i64>(3)?.max(0) as u64;
            }
        }
        let search = q.search.as_ref().map(|s| s.to_lowercase());
        let mut out: Vec<ViewRow> = rows
            .into_iter()
            .filter(|((ns, w), _)| {
                search
                    .as_ref()
                    .is_none_or(|s| ns.to_lowercase().contains(s) || w.to_lowercase().contains(s))
            })
            .map(|((namespace, w), cells)| ViewRow {
                namespace,
                workload: by_workload.then_some(w),
                cells: cells
                    .into_values()
                    .map(|mut c| {
                        c.failure_share = if c.total == 0 {
                            0.0
                        } else {
                            c.failures as f64 / c.total as f64
                        };
                        c
                    })
                    .collect(),
            })
            .collect();
        let failures = |r: &ViewRow| r.cells.iter().map(|c| c.failures).sum::<u64>();
        // Failing rows first, then by name: a stable order a person can scan.
        out.sort_by(|a, b| {
            (failures(b) > 0)
                .cmp(&(failures(a) > 0))
                .then_with(|| failures(b).cmp(&failures(a)))
                .then_with(|| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)))
        });
        Ok(FlowView {
            from_ns: q.from_ns,
            to_ns: q.to_ns,
            slot_ns,
            by: q.by,
            rows: out,
        })
    }

    /// The destinations of one cell, failing ones first.
    pub fn destinations(&self, q: &CellQuery) -> anyhow::Result<Vec<DestinationHealth>> {
        let (from_s, to_s) = range_secs(q.from_ns, q.to_ns);
        let rows = self.rollups_of(from_s, to_s);
        let mut stmt = self.db.prepare_cached(&format!(
            "SELECT destination, kind, outcome, sum(count), min(first_s), max(last_s),
                    group_concat(DISTINCT node)
             FROM {rows} WHERE namespace = ?3
               AND (?4 IS NULL OR workload = ?4) AND category = ?5
             GROUP BY destination, kind, outcome"
        ))?;
        let mut by_dest: HashMap<String, DestinationHealth> = HashMap::new();
        let mut nodes: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut query = stmt.query(params![
            from_s,
            to_s,
            q.namespace,
            q.workload,
            q.category.as_str()
        ])?;
        while let Some(r) = query.next()? {
            let destination: String = r.get(0)?;
            let kind = row_kind(&r.get::<_, String>(1)?);
            let outcome: String = r.get(2)?;
            let n = r.get::<_, i64>(3)?.max(0) as u64;
            // A bucket at the range's start may have begun before it.
            let first = r.get::<_, i64>(4)?.max(from_s).max(0) as u64 * 1_000_000_000;
            let last = r.get::<_, i64>(5)?.min(to_s).max(0) as u64 * 1_000_000_000;
            let d = by_dest
                .entry(destination.clone())
                .or_insert_with(|| DestinationHealth {
                    destination: destination.clone(),
                    connections: BTreeMap::new(),
                    dns: BTreeMap::new(),
                    failures: 0,
                    first_seen_ns: first,
                    last_seen_ns: last,
                    first_failure_ns: None,
                    last_failure_ns: None,
                    nodes: Vec::new(),
                    pods: Vec::new(),
                    example_connection: None,
                    example_dns: None,
                });
            tally(kind, &outcome, n, &mut d.connections, &mut d.dns);
            d.first_seen_ns = d.first_seen_ns.min(first);
            d.last_seen_ns = d.last_seen_ns.max(last);
            if is_failure(kind, &outcome) && n > 0 {
                d.failures += n;
                d.first_failure_ns = Some(d.first_failure_ns.map_or(first, |f| f.min(first)));
                d.last_failure_ns = Some(d.last_failure_ns.map_or(last, |l| l.max(last)));
            }
            let names = r.get::<_, Option<String>>(6)?.unwrap_or_default();
            nodes
                .entry(destination)
                .or_default()
                .extend(names.split(',').filter(|n| !n.is_empty()).map(String::from));
        }
        let mut evidence = self.db.prepare_cached(
            "SELECT destination, pod, json, kind FROM evidence
             WHERE namespace = ?1 AND (?2 IS NULL OR workload = ?2) AND category = ?3
               AND kind IN ('connection', 'dns') AND last_ns >= ?4
             ORDER BY last_ns DESC",
        )?;
        let mut query = evidence.query(params![
            q.namespace,
            q.workload,
            q.category.as_str(),
            (q.from_ns.min(i64::MAX as u64)) as i64
        ])?;
        while let Some(r) = query.next()? {
            let Some(d) = by_dest.get_mut(&r.get::<_, String>(0)?) else {
                continue;
            };
            let pod: String = r.get(1)?;
            if !pod.is_empty() && !d.pods.contains(&pod) {
                d.pods.push(pod);
            }
            let json: String = r.get(2)?;
            if r.get::<_, String>(3)? == "dns" {
                if d.example_dns.is_none() {
                    d.example_dns = serde_json::from_str(&json).ok();
                }
            } else if d.example_connection.is_none() {
                d.example_connection = serde_json::from_str(&json).ok();
            }
        }
        let mut out: Vec<DestinationHealth> = by_dest
            .into_values()
            .map(|mut d| {
                d.nodes = nodes
                    .remove(&d.destination)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                d
            })
            .collect();
        let total = |d: &DestinationHealth| {
            d.connections.values().sum::<u64>() + d.dns.values().sum::<u64>()
        };
        out.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| total(b).cmp(&total(a)))
                .then_with(|| a.destination.cmp(&b.destination))
        });
        out.truncate(MAX_DESTINATIONS);
        Ok(out)
    }
}
