//! Text output for people: column tables, written the same way by `analyze`, the query commands and
//! `outflow captures`. The JSON is the contract; these may change between versions.
//!
//! A view is a set of [`Column`]s and the names it shows: the default names for `-o table`, more
//! for `-o wide`. A column's cell is told whether the output is wide, so a list can be cut to a
//! digest in a table and written whole in wide output.

mod captures;
mod flows;
mod health;
mod records;
mod report;

use std::fmt::Display;
use std::io::{self, Write};

pub use captures::write_captures;
pub use flows::{write_diagnoses, write_matrix, Paint};
pub use health::write_health;
pub use records::{write_connections, write_dns, write_findings};
pub use report::write_report;

/// Writes one row's cell; told whether the output is wide.
type Cell<T> = Box<dyn Fn(&T, bool) -> String>;

/// One column of a view: its header and how one row's cell is written.
pub struct Column<T> {
    /// The header, also the name a view picks the column by.
    pub name: &'static str,
    cell: Cell<T>,
}

impl<T> Column<T> {
    /// A column whose cell is `cell(row, wide)`.
    pub fn new(name: &'static str, cell: impl Fn(&T, bool) -> String + 'static) -> Column<T> {
        Column {
            name,
            cell: Box::new(cell),
        }
    }

    /// The same column over rows that hold a `T` (a record with its scope, say).
    pub fn map<U>(self, inner: impl Fn(&U) -> &T + 'static) -> Column<U>
    where
        T: 'static,
    {
        let cell = self.cell;
        Column::new(self.name, move |u, wide| cell(inner(u), wide))
    }
}

/// A column a view shows, by name: in every table, or only in wide output.
#[derive(Clone, Copy)]
pub enum Pick {
    /// In `-o table` and `-o wide`.
    All(&'static str),
    /// In `-o wide` only.
    Wide(&'static str),
}

/// Writes `rows` under the columns `view` picks, in its order.
pub fn write_view<T>(
    out: &mut impl Write,
    columns: &[Column<T>],
    view: &[Pick],
    rows: &[T],
    wide: bool,
) -> io::Result<()> {
    let names: Vec<&str> = view
        .iter()
        .filter_map(|p| match *p {
            Pick::All(n) => Some(n),
            Pick::Wide(n) => wide.then_some(n),
        })
        .collect();
    let picked: Vec<&Column<T>> = names
        .iter()
        .filter_map(|n| columns.iter().find(|c| c.name == *n))
        .collect();
    debug_assert_eq!(picked.len(), names.len(), "a view names a column it lacks");
    let header: Vec<&str> = picked.iter().map(|c| c.name).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| picked.iter().map(|c| (c.cell)(r, wide)).collect())
        .collect();
    write_table(out, &header, &cells)
}

/// Writes a header and rows, each column as wide as its widest cell, the last one unpadded.
pub fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s += cell;
            } else {
                s += &format!("{cell:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// An outcome map as `key:count key:count`, or `-` when empty.
pub fn outcomes<K: Display>(map: &std::collections::BTreeMap<K, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes in binary units, short (`3.7K`).
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / 1024.0),
        b => b.to_string(),
    }
}

/// Items separated by commas, or `-` when there are none; in a table only the first `digest` of
/// them and a count of the rest, in wide output all.
fn listed<T: Display>(items: &[T], digest: usize, wide: bool) -> String {
    if items.is_empty() {
        return "-".into();
    }
    let shown = if wide { items.len() } else { digest };
    let mut s = items
        .iter()
        .take(shown)
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > shown {
        s += &format!(",+{}", items.len() - shown);
    }
    s
}

/// `-` for nothing.
fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}
