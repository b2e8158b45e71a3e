//! Two iperf3 TCP streams at once, one through a watched pod interface and one through an
//! unwatched one: the agent's cost as the ratio of their throughputs.
//!
//! On this machine class a second's throughput moves by 10–15 % from one second to the next,
//! whatever runs, so runs taken one after another cannot resolve a cost of 1–2 %. Two streams
//! running together share that noise: each run's ratio moved by about 1.5 % in trials, not 10 %.
//! Both clients share core 0 and both servers core 1, so the scheduler gives the streams equal
//! CPU time and the watched one goes slower by what its packets cost more. The two interfaces
//! are not quite alike (one stream runs a little faster, watched or not), so blocks alternate
//! which one the agent watches and the bias cancels: with `a` and `b` the mean ratios (stream
//! A over stream B) while the agent watches A and while it watches B, the agent's ratio is
//! `sqrt(a / b)` and the bias `sqrt(a · b)`.
//!
//! The agent's user-space work slows both streams alike, so it does not show in that ratio; its
//! CPU time is read from /proc and reported beside it, as a share of the machine. The same runs
//! with `tcpdump -w /dev/null` as the watcher show that the method sees a known cost.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::bench_live::lab::{
    cpu_seconds, in_ns, start_outflow_on, tcpdump_to_null, Bg, NODE_IP, NODE_IP_B, POD, VETH,
    VETH_B,
};

/// What the concurrent runs found.
pub struct Concurrent {
    /// The watched stream's throughput over the unwatched one's, bias removed.
    pub ratio: f64,
    /// Half-width of the ratio's 95 % confidence interval.
    pub half_width: f64,
    /// How much faster stream A ran than stream B for reasons of its own.
    pub bias: f64,
    /// Runs per watched interface.
    pub runs: usize,
    /// Median throughput of one stream, bits/s.
    pub stream_bps: f64,
    /// The watcher's CPU time over the wall time of the runs, as a share of all cores.
    pub watcher_cpu_share: f64,
}

/// Port of the first iperf3 server (iperf3's default, which the sequential runs use).
pub const PORT_A: &str = "5201";
/// Port of the second iperf3 server.
pub const PORT_B: &str = "5202";

/// What watches one of the two interfaces.
#[derive(Clone, Copy, PartialEq)]
pub enum PairWatcher {
    /// `outflow up` (eBPF).
    Outflow,
    /// `tcpdump -w /dev/null`: a known cost, to show the method sees one.
    Tcpdump,
}

impl PairWatcher {
    fn start(self, outflow: &Path, iface: &str) -> Result<Bg> {
        match self {
            PairWatcher::Outflow => start_outflow_on(outflow, iface, "10s", &[]),
            PairWatcher::Tcpdump => tcpdump_to_null(iface),
        }
    }
}

/// `blocks` blocks of `runs` runs of `seconds`, alternating the watched interface.
pub fn compare(
    outflow: &Path,
    watcher: PairWatcher,
    blocks: usize,
    runs: usize,
    seconds: u64,
) -> Result<Concurrent> {
    // Both interfaces watched, and at least two runs a side for an interval.
    let blocks = blocks.max(2);
    let runs = runs.max(2);
    // Ratios of stream A over stream B, by which one is watched.
    let mut ratios: [Vec<f64>; 2] = Default::default();
    let mut streams = Vec::new();
    let (mut watcher_cpu, mut wall) = (0.0, 0.0);
    for block in 0..blocks {
        let watched = block % 2;
        let iface = [VETH, VETH_B][watched];
        let up = watcher.start(outflow, iface)?;
        // Past the watcher's start-up (the agent's first inventory and scans).
        std::thread::sleep(Duration::from_secs(2));
        let (cpu0, t0) = (cpu_seconds(up.0.id()), Instant::now());
        for run in 0..runs {
            let (a, b) = both(seconds)?;
            eprintln!(
                "  block {} (watching {iface}) run {}: A {:>6.0} Mbit/s, B {:>6.0} Mbit/s, A/B {:.4}",
                block + 1,
                run + 1,
                a / 1e6,
                b / 1e6,
                a / b
            );
            ratios[watched].push(a / b);
            streams.extend([a, b]);
        }
        watcher_cpu += cpu_seconds(up.0.id()) - cpu0;
        wall += t0.elapsed().as_secs_f64();
        up.stop();
    }
    let ci = |r: &[f64]| crate::mean_ci95(r).context("the pair benchmark needs two runs a side");
    let (a, ha) = ci(&ratios[0])?;
    let (b, hb) = ci(&ratios[1])?;
    let ratio = (a / b).sqrt();
    // ln(ratio) = (ln a − ln b) / 2: the relative errors add in quadrature and halve.
    let rel = ((ha / a).powi(2) + (hb / b).powi(2)).sqrt() / 2.0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(Concurrent {
        ratio,
        half_width: ratio * rel,
        bias: (a * b).sqrt(),
        runs: ratios[0].len().min(ratios[1].len()),
        stream_bps: crate::median(streams),
        watcher_cpu_share: watcher_cpu / wall / cores,
    })
}

/// One run of both streams at once; their throughputs in bits/s.
fn both(seconds: u64) -> Result<(f64, f64)> {
    let secs = seconds.to_string();
    let client = |addr: &str, port: &str| {
        // Clients on core 0, servers on core 1, for both streams alike.
        in_ns(
            POD,
            &[
                "iperf3", "-c", addr, "-p", port, "-J", "-A", "0,1", "-t", &secs,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3")
    };
    let a = client(NODE_IP, PORT_A)?;
    let b = client(NODE_IP_B, PORT_B)?;
    let rate = |child: std::process::Child| -> Result<f64> {
        let out = child.wait_with_output()?;
        let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
        if let Some(e) = v["error"].as_str() {
            bail!("iperf3: {e}");
        }
        Ok(v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0))
    };
    Ok((rate(a)?, rate(b)?))
}
