//! Throughput bare, under `outflow up` (eBPF) and under `tcpdump -w /dev/null`, in alternating
//! rounds, and what outflow's TC programs cost per packet as the kernel measures it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::lab::{iperf, start_outflow, tcpdump_to_null, Bg, VETH};
use crate::median;
use crate::run as run_cmd;

/// What watches the veth during a run.
#[derive(Clone, Copy, PartialEq)]
enum Watcher {
    Bare,
    Outflow,
    Tcpdump,
}

impl Watcher {
    fn name(self) -> &'static str {
        match self {
            Watcher::Bare => "bare",
            Watcher::Outflow => "outflow (eBPF)",
            Watcher::Tcpdump => "tcpdump -w /dev/null",
        }
    }
}

fn watch(outflow: &Path, w: Watcher) -> Result<Option<Bg>> {
    Ok(match w {
        Watcher::Bare => None,
        // The default report interval, as deployed.
        Watcher::Outflow => Some(start_outflow(outflow, "10s", &[])?),
        Watcher::Tcpdump => {
            let bg = tcpdump_to_null(VETH)?;
            std::thread::sleep(Duration::from_millis(800));
            Some(bg)
        }
    })
}

/// Rounds of bare / outflow / tcpdump, each round starting with the next one so that no
/// watcher always runs first; medians by watcher.
pub(super) fn compare(outflow: &Path, udp: bool, rounds: usize, seconds: u64) -> Result<Compared> {
    let watchers = [Watcher::Bare, Watcher::Outflow, Watcher::Tcpdump];
    let mut runs: [Vec<f64>; 3] = Default::default();

    for round in 0..rounds {
        for k in 0..watchers.len() {
            let i = (round + k) % watchers.len();
            let w = &watchers[i];
            let guard = watch(outflow, *w)?;
            let value = iperf(udp, seconds)?;
            if let Some(g) = guard {
                g.stop();
            }
            eprintln!(
                "  round {} {:<22} {:>12.0} {}",
                round + 1,
                w.name(),
                if udp { value } else { value / 1e6 },
                if udp { "pkt/s" } else { "Mbit/s" }
            );
            runs[i].push(value);
        }
    }
    let spread = {
        let bare = &runs[0];
        let (lo, hi) = bare
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        (hi - lo) / median(bare.clone())
    };
    let ratios =
        |i: usize| -> Vec<f64> { runs[i].iter().zip(&runs[0]).map(|(v, b)| v / b).collect() };
    let outflow_ratios = ratios(1);
    let mean_ci = crate::mean_ci95(&outflow_ratios);
    let paired = [median(outflow_ratios), median(ratios(2))];
    let [a, b, c] = runs;
    Ok(Compared {
        medians: [median(a), median(b), median(c)],
        paired,
        mean_ci,
        bare_spread: spread,
        program_ns: program_cost(outflow, udp, seconds)?,
    })
}

/// One more run with the kernel's per-program accounting on (`kernel.bpf_stats_enabled`, which
/// costs two clock reads per run, hence not during the compared runs): nanoseconds per packet.
fn program_cost(outflow: &Path, udp: bool, seconds: u64) -> Result<Option<f64>> {
    run_cmd(Command::new("sysctl").args(["-qw", "kernel.bpf_stats_enabled=1"]))?;
    let guard = watch(outflow, Watcher::Outflow)?;
    let measured = iperf(udp, seconds).map(|_| program_ns_per_packet());
    if let Some(g) = guard {
        g.stop();
    }
    let _ = Command::new("sysctl")
        .args(["-qw", "kernel.bpf_stats_enabled=0"])
        .status();
    measured
}

/// Average nanoseconds per run over every program named `outflow_*` now loaded.
fn program_ns_per_packet() -> Option<f64> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .ok()?;
    let progs: Value = serde_json::from_slice(&out.stdout).ok()?;
    let (mut ns, mut runs) = (0.0, 0.0);
    for p in progs.as_array()? {
        if p["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("outflow_"))
        {
            ns += p["run_time_ns"].as_f64().unwrap_or(0.0);
            runs += p["run_cnt"].as_f64().unwrap_or(0.0);
        }
    }
    (runs > 0.0).then(|| ns / runs)
}

/// Medians by watcher (bare, outflow, tcpdump) and how far apart the bare runs were.
pub(super) struct Compared {
    pub(super) medians: [f64; 3],
    /// Medians of each round's ratio to that round's bare run (outflow, tcpdump): runs of one
    /// round are minutes apart at most, so slow drift of the machine cancels out.
    pub(super) paired: [f64; 2],
    /// outflow's mean round ratio and the half-width of its 95 % confidence interval: whether
    /// the runs resolve the ratio from its goal at all.
    pub(super) mean_ci: Option<(f64, f64)>,
    /// (max − min) / median of the bare runs: the noise floor of the ratios.
    pub(super) bare_spread: f64,
    /// Median cost of outflow's programs per packet, as the kernel measures it.
    pub(super) program_ns: Option<f64>,
}
