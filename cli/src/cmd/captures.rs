//! `outflow captures`: the captures a controller holds — list them, stop them, download one.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use outflow_core::wire::captures::CaptureInfo;
use outflow_core::wire::routes;

/// Flags of `outflow captures`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    client: super::ControllerClient,
    #[command(flatten)]
    output: super::OutputArgs,
    #[command(subcommand)]
    action: Option<Action>,
}

/// What to do with the captures (default: list them).
#[derive(clap::Subcommand)]
enum Action {
    /// List the captures, newest first (the default).
    List,
    /// Stop captures by id; the agent closes each file, which stays downloadable.
    Stop {
        /// Capture ids, as `outflow captures` lists them.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Download a capture's pcapng (while it runs: what is there, then the rest as it comes).
    Get {
        /// The capture's id.
        id: u64,
        /// Where the pcapng goes: a file, or - for standard output.
        #[arg(short = 'w', long = "write", required = true)]
        write: PathBuf,
    },
}

/// Runs the action.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = args.client.connect()?;
    match args.action.unwrap_or(Action::List) {
        Action::List => {
            let list: Vec<CaptureInfo> = client.get(routes::CAPTURES, &[])?;
            let mut out = std::io::stdout().lock();
            if args.output.format() == super::Format::Json {
                serde_json::to_writer(&mut out, &list)?;
                writeln!(out)?;
            } else {
                crate::table::write_captures(&mut out, &list, args.output.wide())?;
            }
        }
        Action::Stop { ids } => {
            let mut stopped = Vec::new();
            for id in ids {
                stopped.push(client.delete::<CaptureInfo>(&routes::capture(id))?);
            }
            let mut out = std::io::stdout().lock();
            if args.output.format() == super::Format::Json {
                serde_json::to_writer(&mut out, &stopped)?;
                writeln!(out)?;
            } else {
                for c in &stopped {
                    writeln!(out, "capture {} on node {}: {}", c.id, c.node, c.state)?;
                }
            }
        }
        Action::Get { id, write } => {
            let info: CaptureInfo = client.get(&routes::capture(id), &[])?;
            let mut out: Box<dyn Write> = if write.as_os_str() == "-" {
                Box::new(super::pcapng_stdout()?)
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&write)
                        .with_context(|| format!("creating {}", write.display()))?,
                ))
            };
            let mut body = client
                .stream(&routes::capture_pcapng(id))
                .context("downloading the capture")?;
            let bytes = std::io::copy(&mut body, &mut out).context("writing the capture")?;
            out.flush().context("writing the capture")?;
            eprintln!(
                "outflow: capture {id} ({}, node {}): {} written to {}",
                info.state,
                info.node,
                outflow_core::units::format_size(bytes),
                write.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
