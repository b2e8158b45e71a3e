//! `outflow connections | dns | findings`: what the controller knows, for people (a table) or
//! scripts (`-o json`, the API's records as they are).

use std::io::Write;
use std::process::ExitCode;

use clap::builder::PossibleValuesParser;
use outflow_core::category::Category;
use outflow_core::query::{PodRef, RecordKind};
use outflow_core::wire::routes;

use crate::table;

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
    let wide = args.output.wide();
    match what {
        What::Connections => table::write_connections(&mut out, &parse(&body)?, wide)?,
        What::Dns => table::write_dns(&mut out, &parse(&body)?, wide)?,
        What::Findings => table::write_findings(&mut out, &parse(&body)?, wide)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The API's records, read as the contract types.
fn parse<T: serde::de::DeserializeOwned>(body: &str) -> anyhow::Result<Vec<T>> {
    serde_json::from_str(body)
        .map_err(|e| anyhow::anyhow!("the controller's answer is not records: {e}"))
}
