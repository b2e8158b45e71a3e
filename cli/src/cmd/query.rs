//! `outflow connections | dns | findings`: what the controller knows, for people (a table) or
//! scripts (`-o json`, the API's records as they are).

use std::io::Write;
use std::process::ExitCode;

use clap::builder::PossibleValuesParser;
use outflow_core::category::Category;
use outflow_core::query::{PodRef, RecordKind};
use outflow_core::report::{ConnectionRecord, DnsRecord, Finding};
use outflow_core::wire::{routes, Scoped};

use crate::table::{joined, outcomes, write_table};

/// Flags shared by the query commands.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    client: super::ControllerClient,
    /// Only this pod (NAME, with -n for its namespace, or NAMESPACE/NAME).
    #[arg(long, value_parser = super::parse_pod)]
    pod: Option<PodRef>,
    /// Only this namespace.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only this node.
    #[arg(long)]
    node: Option<String>,
    /// Only this destination category.
    #[arg(long, value_parser = PossibleValuesParser::new(Category::ALL.map(Category::as_str)))]
    category: Option<String>,
    /// Only this outcome (unanswered, refused, nxdomain, …; for findings: error, warning, info).
    #[arg(long)]
    outcome: Option<String>,
    /// Look back this far.
    #[arg(long, default_value = "15m", value_parser = outflow_core::units::parse_duration)]
    since: std::time::Duration,
    #[command(flatten)]
    output: super::OutputArgs,
}

/// Which records.
#[derive(Clone, Copy)]
pub enum What {
    /// `GET /api/v1/connections`.
    Connections,
    /// `GET /api/v1/dns`.
    Dns,
    /// `GET /api/v1/findings`.
    Findings,
}

/// Fetches and prints. The category and outcome are checked against the records asked for before any
/// request, with the same grammar the API uses.
pub fn run(what: What, args: Args) -> anyhow::Result<ExitCode> {
    let (path, kind) = match what {
        What::Connections => (routes::CONNECTIONS, RecordKind::Connection),
        What::Dns => (routes::DNS, RecordKind::Dns),
        What::Findings => (routes::FINDINGS, RecordKind::Finding),
    };
    if let Some(o) = &args.outcome {
        kind.check_outcome(o)?;
    }
    if let Some(c) = &args.category {
        kind.check_category(c)?;
    }
    let pod = args.pod.as_ref().map(|p| match &p.namespace {
        Some(ns) => format!("{ns}/{}", p.name),
        None => p.name.clone(),
    });
    let mut query = vec![("since", args.since.as_secs().to_string())];
    for (k, v) in [
        ("pod", &pod),
        ("namespace", &args.namespace),
        ("node", &args.node),
        ("category", &args.category),
        ("outcome", &args.outcome),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let body = args.client.connect()?.get_text(path, &query)?;
    let mut out = std::io::stdout().lock();
    if args.output.format() == super::Format::Json {
        writeln!(out, "{body}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let pod = |s: &outflow_core::wire::Scope| match (&s.namespace, &s.pod) {
        (Some(ns), Some(p)) => format!("{ns}/{p}"),
        _ => "-".to_string(),
    };
    match what {
        What::Connections => {
            let rows: Vec<Scoped<ConnectionRecord>> = serde_json::from_str(&body)?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let c = &r.record;
                    vec![
                        r.scope.window_end.clone(),
                        pod(&r.scope),
                        r.scope.node.clone(),
                        format!("{}:{}/{}", c.dst, c.dst_port, c.proto),
                        c.category.as_str().to_string(),
                        outcomes(&c.outcomes),
                        c.names.join(","),
                    ]
                })
                .collect();
            write_table(
                &mut out,
                &[
                    "WINDOW END",
                    "POD",
                    "NODE",
                    "DESTINATION",
                    "CATEGORY",
                    "OUTCOMES",
                    "NAMES",
                ],
                &table,
            )?;
        }
        What::Dns => {
            let rows: Vec<Scoped<DnsRecord>> = serde_json::from_str(&body)?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let d = &r.record;
                    vec![
                        r.scope.window_end.clone(),
                        pod(&r.scope),
                        d.name.clone(),
                        d.qtype.clone(),
                        outcomes(&d.outcomes),
                        joined(&d.servers),
                    ]
                })
                .collect();
            write_table(
                &mut out,
                &["WINDOW END", "POD", "NAME", "TYPE", "OUTCOMES", "SERVERS"],
                &table,
            )?;
        }
        What::Findings => {
            let rows: Vec<Scoped<Finding>> = serde_json::from_str(&body)?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.scope.window_end.clone(),
                        r.record.severity.as_str().to_string(),
                        pod(&r.scope),
                        r.record.message.clone(),
                    ]
                })
                .collect();
            write_table(
                &mut out,
                &["WINDOW END", "SEVERITY", "POD", "FINDING"],
                &table,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
