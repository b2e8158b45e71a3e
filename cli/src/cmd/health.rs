//! `outflow health`: is every node's agent reporting, is its datapath whole, which pods does it
//! see — the first question at 3 a.m., before asking what the pods cannot reach.

use std::io::Write;
use std::process::ExitCode;

use outflow_core::wire::health::Health;
use outflow_core::wire::routes;

/// Flags of `outflow health`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    client: super::ControllerClient,
    #[command(flatten)]
    output: super::OutputArgs,
}

/// Prints each node's state; `-o wide` adds a line per pod.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = args.client.connect()?.get_text(routes::HEALTH, &[])?;
    let mut out = std::io::stdout().lock();
    if args.output.format() == super::Format::Json {
        writeln!(out, "{body}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let health: Health = serde_json::from_str(&body).map_err(|e| {
        anyhow::anyhow!(
            "the controller's health is not what this outflow expects (another version?): {e}"
        )
    })?;
    if health.nodes.is_empty() {
        writeln!(
            out,
            "no node has reported yet: is the agent DaemonSet running, and does it reach the \
             controller? (kubectl -n outflow get pods; kubectl -n outflow logs ds/outflow-agent)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::table::write_health(&mut out, &health, args.output.wide(), now_ns())?;
    Ok(ExitCode::SUCCESS)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
