//! Capturing the pod to a file during the load: bare, `tcpdump -w`, and `outflow capture -w`
//! with and without packet comments, in alternating rounds.
//!
//! What each capture tool reports on stderr when stopped (kernel drops, packets written) is read
//! here, beside the CPU time it used.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::lab::{cpu_seconds, in_ns, iperf, NODE, POD, VETH};
use crate::median;

/// A capture to file during the load: tcpdump or outflow, same interface, same snaplen.
fn start_capture(outflow: &Path, tool: &str, file: &Path) -> Result<Child> {
    let f = file.to_str().context("path")?;
    let child = match tool {
        "tcpdump" => in_ns(NODE, &["tcpdump", "-q", "-i", VETH, "-s", "512", "-w", f])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?,
        _ => Command::new(outflow)
            // The pod namespace is a pod to outflow's inventory: its veth and its address.
            .args(["capture", "--local", "--node-netns", NODE, "--pod"])
            .arg(format!("default/{POD}"))
            .args(["-s", "512", "-w", f])
            .args((tool == "outflow-plain").then_some("--no-annotate"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?,
    };
    std::thread::sleep(Duration::from_millis(800));
    Ok(child)
}

/// What a capture reported: kernel drops, packets written, CPU seconds it used.
#[derive(Clone, Copy, Default)]
struct CaptureRun {
    drops: u64,
    packets: u64,
    cpu_s: f64,
}

/// Stops a capture with SIGINT; returns what it reported.
fn stop_capture(child: Child) -> Result<CaptureRun> {
    let cpu_s = cpu_seconds(child.id());
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    // tcpdump: "N packets dropped by kernel"; outflow: "…; N dropped by the kernel; …".
    let drops = text
        .lines()
        .find_map(|l| {
            let at = l.find(" dropped by")?;
            l[..at].rsplit([' ', ';']).next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    // tcpdump: "N packets captured"; outflow: "outflow: N packets, …".
    let packets = text
        .lines()
        .find_map(|l| {
            let l = l.strip_prefix("outflow: ").unwrap_or(l);
            l.split_once(" packets")?.0.parse::<u64>().ok()
        })
        .unwrap_or(0);
    Ok(CaptureRun {
        drops,
        packets,
        cpu_s,
    })
}

/// The tools `capture_compare` runs, in its result's order.
pub(super) const CAPTURE_TOOLS: [&str; 4] = ["bare", "tcpdump", "outflow", "outflow-plain"];

/// Medians of one tool's runs: throughput, kernel drops, CPU nanoseconds per packet written.
#[derive(Clone, Copy, Default)]
pub(super) struct CaptureMedians {
    pub(super) rate: f64,
    pub(super) drops: f64,
    pub(super) cpu_ns_per_packet: f64,
}

/// iperf3 (TCP, or the 64-byte UDP flood) bare, under `tcpdump -w`, and under `outflow capture
/// -w` with and without packet comments, interleaved; medians.
pub(super) fn capture_compare(
    outflow: &Path,
    udp: bool,
    rounds: usize,
    seconds: u64,
) -> Result<[CaptureMedians; 4]> {
    let tools = CAPTURE_TOOLS;
    let mut runs: [Vec<(f64, CaptureRun)>; 4] = Default::default();
    let file = std::env::temp_dir().join("outflow-bench-capture.pcapng");
    for round in 0..rounds {
        for k in 0..tools.len() {
            let i = (round + k) % tools.len();
            let child = if i == 0 {
                None
            } else {
                Some(start_capture(outflow, tools[i], &file)?)
            };
            let rate = iperf(udp, seconds)?;
            let run = match child {
                Some(c) => stop_capture(c)?,
                None => CaptureRun::default(),
            };
            let _ = std::fs::remove_file(&file);
            eprintln!(
                "  round {} {:<13} {:>10.0} {}, {} kernel drops, {} packets, {:.2} s CPU",
                round + 1,
                tools[i],
                if udp { rate } else { rate / 1e6 },
                if udp { "pkt/s" } else { "Mbit/s" },
                run.drops,
                run.packets,
                run.cpu_s
            );
            runs[i].push((rate, run));
        }
    }
    let med = |v: &Vec<(f64, CaptureRun)>| CaptureMedians {
        rate: median(v.iter().map(|r| r.0).collect()),
        drops: median(v.iter().map(|r| r.1.drops as f64).collect()),
        cpu_ns_per_packet: median(
            v.iter()
                .map(|r| r.1.cpu_s * 1e9 / r.1.packets.max(1) as f64)
                .collect(),
        ),
    };
    Ok([med(&runs[0]), med(&runs[1]), med(&runs[2]), med(&runs[3])])
}
