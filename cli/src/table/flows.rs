//! The flow health matrix and the diagnoses as text: a row per namespace or workload, a column
//! per destination category, each cell the failure share, the counts and a small timeline of
//! failures; then each diagnosis with its fault, evidence and next checks. Colour, on a
//! terminal, makes failing cells and active diagnoses stand out and healthy ones recede.

use std::io::{self, Write};

use outflow_core::category::Category;
use outflow_core::wire::diagnosis::{Diagnosis, DiagnosisState};
use outflow_core::wire::view::{Cell, FlowView, GroupBy};

/// How text is coloured: on a terminal, unless `NO_COLOR` says not to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paint(pub bool);

impl Paint {
    /// Colour when standard output is a terminal and `NO_COLOR` is unset.
    pub fn for_stdout() -> Paint {
        Paint(
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none(),
        )
    }

    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn red(self, s: &str) -> String {
        self.wrap("1;31", s)
    }

    fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }

    fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }

    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Failures per slot as bars, scaled to the busiest slot; a slot without failures is `·`.
fn sparkline(timeline: &[u64]) -> String {
    let max = timeline.iter().copied().max().unwrap_or(0).max(1);
    timeline
        .iter()
        .map(|&n| match n {
            0 => '·',
            n => BARS[((n * 7).div_ceil(max) as usize).min(7)],
        })
        .collect()
}

/// A cell's text, and whether it fails a lot, a little or not at all.
fn cell_text(c: &Cell) -> (String, Level) {
    if c.failures == 0 {
        return (format!("ok {}", c.total), Level::Healthy);
    }
    let pct = (c.failure_share * 100.0).round();
    let level = if c.failure_share >= 0.5 {
        Level::Failing
    } else {
        Level::Degraded
    };
    (
        format!(
            "{pct}% {}/{} {}",
            c.failures,
            c.total,
            sparkline(&c.timeline)
        ),
        level,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Healthy,
    Degraded,
    Failing,
}

/// Writes the matrix.
pub fn write_matrix(out: &mut impl Write, v: &FlowView, paint: Paint) -> io::Result<()> {
    if v.rows.is_empty() {
        return writeln!(out, "no traffic in the range");
    }
    let first = match v.by {
        GroupBy::Namespace => "NAMESPACE",
        GroupBy::Workload => "WORKLOAD",
    };
    let mut table: Vec<Vec<(String, Level)>> = Vec::new();
    for r in &v.rows {
        let name = match &r.workload {
            Some(w) => format!("{}/{w}", r.namespace),
            None => r.namespace.clone(),
        };
        let failing = r.cells.iter().any(|c| c.failures > 0);
        let mut line = vec![(
            name,
            if failing {
                Level::Failing
            } else {
                Level::Healthy
            },
        )];
        for cat in Category::ALL {
            line.push(match r.cells.iter().find(|c| c.category == cat) {
                Some(c) => cell_text(c),
                None => ("-".into(), Level::Healthy),
            });
        }
        table.push(line);
    }
    let header: Vec<String> = std::iter::once(first.to_string())
        .chain(Category::ALL.iter().map(|c| c.as_str().to_uppercase()))
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for line in &table {
        for (w, (text, _)) in widths.iter_mut().zip(line) {
            *w = (*w).max(text.chars().count());
        }
    }
    let pad = |s: &str, w: usize| format!("{s:<w$}");
    let head: Vec<String> = header
        .iter()
        .zip(&widths)
        .map(|(h, w)| pad(h, *w))
        .collect();
    writeln!(out, "{}", head.join("  ").trim_end())?;
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|((text, level), w)| {
                // Padded first, then coloured: escapes take no columns.
                let padded = pad(text, *w);
                match level {
                    Level::Failing => paint.red(&padded),
                    Level::Degraded => paint.yellow(&padded),
                    Level::Healthy => paint.dim(&padded),
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// Writes the diagnoses, each with its fault, scope, evidence, next checks and a capture to run.
pub fn write_diagnoses(out: &mut impl Write, list: &[Diagnosis], paint: Paint) -> io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "no diagnosis: nothing fails in the range");
    }
    for (i, d) in list.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let state = match d.state {
            DiagnosisState::Active => paint.red("ACTIVE"),
            DiagnosisState::Resolved => paint.dim("RESOLVED"),
        };
        writeln!(
            out,
            "{state} {} since {} (last {})",
            paint.bold(d.kind.as_str()),
            d.since,
            d.last_seen
        )?;
        writeln!(out, "  {}", d.summary)?;
        writeln!(out, "  fault: {}", d.fault)?;
        let s = &d.scope;
        let mut scope = Vec::new();
        for (what, items) in [
            ("namespaces", &s.namespaces),
            ("nodes", &s.nodes),
            ("pods", &s.pods),
        ] {
            if !items.is_empty() {
                scope.push(format!("{what} {}", items.join(", ")));
            }
        }
        if !scope.is_empty() {
            writeln!(out, "  scope: {}", scope.join("; "))?;
        }
        let counts: Vec<String> = d
            .evidence
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(out, "  evidence: {}", counts.join(", "))?;
        for e in &d.evidence.examples {
            writeln!(out, "    {e}")?;
        }
        for (j, c) in d.next_checks.iter().enumerate() {
            let lead = if j == 0 { "  next:" } else { "       " };
            writeln!(out, "{lead} {c}")?;
        }
        if let Some(c) = &d.evidence.capture {
            writeln!(
                out,
                "  capture: outflow capture --pod {} -c 1000 -w {}.pcapng '{}'",
                c.pod,
                c.pod.replace('/', "_"),
                c.filter
            )?;
        }
    }
    Ok(())
}
