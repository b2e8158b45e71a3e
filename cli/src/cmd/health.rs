//! `outflow health`: is every node's agent reporting and its datapath whole, which pods cannot
//! reach which kind of destination since when, and what is the likely culprit — the first
//! questions at 3 a.m., in one screen.

use std::io::Write;
use std::process::ExitCode;

use outflow_core::wire::diagnosis::{Diagnoses, DiagnosesQuery, Diagnosis};
use outflow_core::wire::health::Health;
use outflow_core::wire::routes;
use outflow_core::wire::view::{FlowView, GroupBy, ViewQuery};
use serde::Serialize;

use crate::table::{self, Paint};

/// Flags of `outflow health`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    client: super::ControllerClient,
    /// Only this namespace's rows.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Look back this far (at most 7d, what the view keeps).
    #[arg(long, default_value_t = super::Since(outflow_core::wire::DEFAULT_SINCE), value_parser = super::parse_since)]
    since: super::Since,
    /// Rows by namespace or by workload.
    #[arg(long, value_enum, default_value_t = By::Namespace)]
    by: By,
    /// Only rows whose namespace or workload holds this text.
    #[arg(long)]
    search: Option<String>,
    /// Show it again every 5 s until interrupted.
    #[arg(long, short = 'w')]
    watch: bool,
    #[command(flatten)]
    output: super::OutputArgs,
}

/// Rows of the matrix.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum By {
    /// A row per namespace.
    Namespace,
    /// A row per workload.
    Workload,
}

/// What `-o json` prints: the health API's nodes and captures, with the view and the diagnoses.
#[derive(Serialize)]
struct Everything {
    #[serde(flatten)]
    health: Health,
    view: FlowView,
    diagnoses: Vec<Diagnosis>,
}

/// How often `--watch` asks again.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Prints the nodes, the matrix and the diagnoses; `-o wide` adds a line per pod.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = args.client.connect()?;
    let paint = Paint::for_stdout();
    loop {
        let screen = render(&args, &client, paint)?;
        let mut out = std::io::stdout().lock();
        if args.watch && paint.0 {
            // Clear the terminal and start at the top, as `watch` does.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        out.write_all(&screen)?;
        out.flush()?;
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        std::thread::sleep(WATCH_EVERY);
    }
}

/// One screen: asked for whole before any of it is printed, so a watch never shows half.
fn render(args: &Args, client: &super::client::Client, paint: Paint) -> anyhow::Result<Vec<u8>> {
    let since_s = args.since.0.as_secs().max(1);
    let health: Health = client.get(routes::HEALTH, &[])?;
    let view_query = ViewQuery {
        since: Some(since_s),
        by: Some(match args.by {
            By::Namespace => GroupBy::Namespace,
            By::Workload => GroupBy::Workload,
        }),
        namespace: args.namespace.clone(),
        search: args.search.clone(),
    };
    let view: FlowView = client.get(routes::VIEW, &view_query.pairs())?;
    let diagnoses_query = DiagnosesQuery {
        since: Some(since_s),
    };
    let Diagnoses { mut diagnoses } = client.get(routes::DIAGNOSES, &diagnoses_query.pairs())?;
    if let Some(ns) = &args.namespace {
        diagnoses.retain(|d| d.scope.namespaces.iter().any(|n| n == ns));
    }
    let mut out = Vec::new();
    if args.output.format() == super::Format::Json {
        serde_json::to_writer_pretty(
            &mut out,
            &Everything {
                health,
                view,
                diagnoses,
            },
        )?;
        writeln!(out)?;
        return Ok(out);
    }
    let now = now_ns();
    if health.nodes.is_empty() {
        writeln!(
            out,
            "no node has reported yet: is the agent DaemonSet running, and does it reach the \
             controller? (kubectl -n outflow get pods; kubectl -n outflow logs ds/outflow-agent)"
        )?;
        return Ok(out);
    }
    table::write_health(&mut out, &health, args.output.wide(), now)?;
    writeln!(
        out,
        "\nFLOWS over the last {} by {} (failure share, failures/total, timeline)",
        args.since,
        view.by.as_str()
    )?;
    table::write_matrix(&mut out, &view, paint)?;
    writeln!(out, "\nDIAGNOSES")?;
    table::write_diagnoses(&mut out, &diagnoses, paint)?;
    Ok(out)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
