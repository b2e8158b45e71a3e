//! The `outflow` command: flags, logging, dispatch, exit codes.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use outflow_core::query::RecordKind;

mod cmd;
mod table;

/// mimalloc: an analysis allocates per DNS message and per report record, and glibc's allocator
/// took a tenth of its time. Without transparent huge pages (`no_thp`): with them, a heap grown
/// after another process freed gigabytes waited on the kernel's compaction, doubling system time
/// from one run to the next, and a long-running agent's resident memory grew by whole 2 MiB pages.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pod egress on Kubernetes nodes, observable and debuggable.
#[derive(Parser)]
#[command(name = "outflow", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = cmd::LogFormat::Text)]
    log_format: cmd::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse pcap/pcapng captures: connection outcomes, DNS lookups, findings.
    Analyze(cmd::analyze::Args),
    /// Run the agent and an embedded controller on this machine (root).
    Up(cmd::up::Args),
    /// Run the node agent, reporting to a controller (root; the DaemonSet's command).
    Agent(cmd::agent::Args),
    /// Run the controller: the API, the store, metrics and the health view.
    Controller(cmd::controller::Args),
    /// Capture a pod's or an interface's packets as pcapng (tcpdump filter syntax).
    Capture(cmd::capture::Args),
    /// DNS, TCP and HTTP(S) to a target from a pod's network namespace and the node's, with a
    /// verdict.
    Check(cmd::check::Args),
    /// The controller's captures: list, stop, download.
    Captures(cmd::captures::Args),
    /// Connection groups per pod, from the controller.
    #[command(mut_arg("outcome", cmd::query::outcomes_of(RecordKind::Connection)))]
    Connections(cmd::query::Args),
    /// DNS lookups per pod, from the controller.
    #[command(mut_arg("outcome", cmd::query::outcomes_of(RecordKind::Dns)))]
    #[command(mut_arg("category", cmd::query::no_category))]
    Dns(cmd::query::Args),
    /// Findings per pod, from the controller.
    #[command(mut_arg("outcome", cmd::query::outcomes_of(RecordKind::Finding)))]
    Findings(cmd::query::Args),
    /// Every node's agent: last report, datapath and its losses, pods (`-o wide`: each pod).
    Health(cmd::health::Args),
}

fn main() -> ExitCode {
    // As a kubectl plugin, help and errors say `kubectl outflow`.
    let name = if cmd::as_kubectl() {
        "kubectl outflow"
    } else {
        "outflow"
    };
    let matches = Cli::command().bin_name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cmd::init_logging(cli.log_format);
    let result = match cli.command {
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Controller(args) => cmd::controller::run(args),
        Command::Capture(args) => cmd::capture::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Captures(args) => cmd::captures::run(args),
        Command::Connections(args) => cmd::query::run(cmd::query::What::Connections, args),
        Command::Dns(args) => cmd::query::run(cmd::query::What::Dns, args),
        Command::Findings(args) => cmd::query::run(cmd::query::What::Findings, args),
        Command::Health(args) => cmd::health::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outflow: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every command's flags fit together (no two with one name, no conflict with a flag
    /// that is not there): clap checks it here rather than at a user's first call.
    #[test]
    fn the_grammar_holds_together() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
