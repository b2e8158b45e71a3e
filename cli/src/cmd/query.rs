//! `outflow connections | dns | findings`: what the controller knows, for people (a table) or
//! scripts (`-o json`, the API's records as they are).

use std::io::Write;
use std::process::ExitCode;

use clap::builder::PossibleValuesParser;
use outflow_core::category::Category;
use outflow_core::query::{PodRef, QueryError, RecordKind};
use outflow_core::wire::{routes, RecordQuery};

use crate::table;

/// Flags shared by the query commands.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    client: super::ControllerClient,
    /// Only this pod: NAME in -n's namespace (else `default`, as kubectl), or NAMESPACE/NAME.
    #[arg(long, value_parser = super::parse_pod)]
    pod: Option<PodRef>,
    /// Only this namespace (without it, every namespace's records).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only this node.
    #[arg(long)]
    node: Option<String>,
    /// Only this destination category.
    #[arg(long, value_parser = PossibleValuesParser::new(Category::ALL.map(Category::as_str)))]
    category: Option<String>,
    /// Only this outcome (for findings: this severity).
    // Each command takes its own records' values: `outcomes_of` in its `mut_arg`.
    #[arg(long)]
    outcome: Option<String>,
    /// Look back this far.
    #[arg(long, default_value_t = super::Since(outflow_core::wire::DEFAULT_SINCE), value_parser = super::parse_since)]
    since: super::Since,
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

/// `--outcome` for `kind`'s command: clap takes only the values its records have (the API's
/// list, [`RecordKind::outcomes`]) and refuses any other naming them, before any request.
pub fn outcomes_of(kind: RecordKind) -> impl FnOnce(clap::Arg) -> clap::Arg {
    move |arg| arg.value_parser(PossibleValuesParser::new(kind.outcomes()))
}

/// `--category` for a command whose records have none (DNS lookups): hidden from its help, and
/// refused by clap saying why.
pub fn no_category(arg: clap::Arg) -> clap::Arg {
    arg.hide(true)
        .value_parser(|_: &str| -> Result<String, QueryError> { Err(QueryError::NoCategory) })
}

/// Fetches and prints. The category and outcome were checked by clap against the records asked
/// for ([`outcomes_of`], [`no_category`]), with the same lists the API uses.
pub fn run(what: What, args: Args) -> anyhow::Result<ExitCode> {
    let path = match what {
        What::Connections => routes::CONNECTIONS,
        What::Dns => routes::DNS,
        What::Findings => routes::FINDINGS,
    };
    // kubectl's grammar: a pod is in `-n NS`, else in `default`; `NS/NAME` says it outright.
    let pod = match (&args.pod, &args.namespace) {
        (None, _) => None,
        (Some(p), n) => match (&p.namespace, n) {
            (Some(ns), Some(n)) if ns != n => anyhow::bail!(
                "--pod {ns}/{} is not in namespace {n} (-n): give one of them",
                p.name
            ),
            (Some(ns), _) => Some(format!("{ns}/{}", p.name)),
            (None, Some(n)) => Some(format!("{n}/{}", p.name)),
            (None, None) => Some(format!("default/{}", p.name)),
        },
    };
    let query = RecordQuery {
        pod,
        namespace: args.namespace.clone(),
        node: args.node.clone(),
        category: args.category.clone(),
        outcome: args.outcome.clone(),
        since: Some(args.since.0.as_secs()),
        limit: None,
    }
    .pairs();
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
