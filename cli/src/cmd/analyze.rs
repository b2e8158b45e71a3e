//! `outflow analyze FILE... [--profile P] [--format table|json]` (DESIGN.md §4.2).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use outflow_core::capfile::{CaptureReader, MergedReader};
use outflow_core::units::parse_duration;
use outflow_core::{Config, Engine, Profile};

use super::{FailOn, Format};

/// Flags of `outflow analyze`.
#[derive(clap::Args)]
pub struct Args {
    /// Capture files (pcap or pcapng); `-` reads standard input. Several files are one capture,
    /// merged by time.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Network profile (YAML, DESIGN.md §4.1) that says which ranges are internal, peered, on-prem.
    #[arg(long, value_name = "P")]
    profile: Option<PathBuf>,
    #[command(flatten)]
    output: super::OutputArgs,
    /// Exit with 1 when a finding of this severity or worse is reported.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Flows tracked at once; the least recently active are evicted (and counted) beyond it.
    #[arg(long, default_value_t = Config::default().max_flows)]
    max_flows: usize,
    /// How long a SYN may wait for an answer before it is `unanswered` (3, 3s, 1500ms)
    /// [default: 3s].
    #[arg(long, value_parser = parse_duration)]
    syn_timeout: Option<Duration>,
    /// How long a DNS query may wait for a response before it is `timeout` [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    dns_timeout: Option<Duration>,
}

/// Reads a profile file.
pub fn load_profile(path: Option<&PathBuf>) -> anyhow::Result<Profile> {
    let Some(path) = path else {
        return Ok(Profile::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the profile {}", path.display()))?;
    Ok(Profile::from_yaml(&text, &path.display().to_string())?)
}

/// Runs the analysis.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = load_profile(args.profile.as_ref())?;
    if args.files.iter().filter(|f| *f == "-").count() > 1 {
        bail!("standard input (-) can be read only once");
    }
    let mut readers = Vec::new();
    for name in &args.files {
        let input: Box<dyn Read> = if name == "-" {
            Box::new(io::stdin().lock())
        } else if std::path::Path::new(name).is_dir() {
            bail!("{name} is a directory: give the capture files in it, e.g. {name}/*.pcap");
        } else {
            Box::new(File::open(name).with_context(|| format!("cannot open {name}"))?)
        };
        readers.push(CaptureReader::new(input).with_context(|| format!("cannot read {name}"))?);
    }
    let mut merged = MergedReader::new(readers);
    let defaults = Config::default();
    let ns = |d: Option<Duration>, default: u64| d.map_or(default, |d| d.as_nanos() as u64);
    let cfg = Config {
        max_flows: args.max_flows,
        syn_timeout_ns: ns(args.syn_timeout, defaults.syn_timeout_ns),
        dns_timeout_ns: ns(args.dns_timeout, defaults.dns_timeout_ns),
        dedup: merged.may_hold_duplicates(),
        ..defaults
    };
    let mut engine = Engine::with_config(&profile, cfg);
    let mut progress = Progress::new();
    while merged.advance() {
        let packet = merged.packet().expect("advance returned true");
        engine.observe(&packet);
        progress.tick();
    }
    progress.done();
    for i in merged.truncated_files() {
        let file = &args.files[i];
        if merged.packets_read(i) == 0 {
            let message = format!(
                "{file} is cut off before its first whole packet: it holds no packet to analyse"
            );
            tracing::warn!("{message}");
            engine.note_error(message);
        } else {
            tracing::warn!(
                "{file} ends in the middle of a packet; the {} before it were analysed",
                super::count(merged.packets_read(i), "packet")
            );
            engine.note_truncated_file(file);
        }
    }
    for (i, e) in merged.errors() {
        let e = outflow_core::error_chain(e);
        let read = merged.packets_read(*i);
        let message = if read == 0 {
            format!("{}: {e}; nothing in it was analysed", args.files[*i])
        } else {
            format!(
                "{}: {e}; the {} before it were analysed",
                args.files[*i],
                super::count(read, "packet")
            )
        };
        tracing::warn!("{message}");
        engine.note_error(message);
    }
    let report = engine.finish();
    let stdout = io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    if args.output.format() == Format::Json {
        // Indented for a person at a terminal; compact for programs, where indentation of a large
        // report costs as much as a twentieth of the analysis (`| jq .` indents it).
        if io::stdout().is_terminal() {
            serde_json::to_writer_pretty(&mut out, &report)?;
        } else {
            serde_json::to_writer(&mut out, &report)?;
        }
        writeln!(out)?;
    } else {
        crate::table::write_report(&mut out, &report, args.output.wide())?;
    }
    out.flush()?;
    let code = super::exit_code(&report, args.fail_on);
    // The process ends here: freeing a report of a million records one by one is wasted work.
    std::mem::forget(report);
    Ok(code)
}

/// A packet counter on stderr while a long analysis runs, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
    packets: u64,
    shown: bool,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            enabled: io::stderr().is_terminal(),
            started: now,
            last: now,
            packets: 0,
            shown: false,
        }
    }

    fn tick(&mut self) {
        self.packets += 1;
        if !self.enabled || !self.packets.is_multiple_of(65_536) {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last) >= Duration::from_millis(500) {
            self.last = now;
            self.shown = true;
            let rate = self.packets as f64 / now.duration_since(self.started).as_secs_f64();
            eprint!(
                "\ranalysed {} packets ({:.1} M/s)   ",
                self.packets,
                rate / 1e6
            );
        }
    }

    fn done(&self) {
        if self.shown {
            eprintln!("\ranalysed {} packets                 ", self.packets);
        }
    }
}
