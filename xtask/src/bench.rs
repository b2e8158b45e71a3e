//! `cargo xtask bench-analyze`: outflow against tshark and tcpdump on one generated capture.
//!
//! Two mixes, the plain one and the same traffic inside VXLAN (a node's uplink in an overlay),
//! each compared on its own and the ratios side by side at the end.
//! All three read the same file in the same run, so the ratios hold whatever the machine. Each tool
//! runs once per round, rounds rotating their order, and the figures are medians of the rounds and
//! of each round's ratios (each run starts with the file read once into the page cache).
//! outflow's counts are checked against the generator's ground truth, and its peak memory is
//! measured on the file and on a file twice as large, to show it follows flow state, not file size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::gen::{generate, Mix, Truth};
use crate::{median, root_dir};

/// Runs the benchmark, on the plain mix and on the same traffic inside VXLAN.
pub fn run(args: &[String]) -> Result<()> {
    crate::setup()?;
    let packets: u64 = crate::flag(args, "--packets", 3_000_000)?;
    let rounds: usize = crate::flag(args, "--rounds", 3)?.max(1);
    let outflow = crate::build_outflow()?;
    let dir = root_dir().join("bench-data");
    std::fs::create_dir_all(&dir)?;
    let mut results = Vec::new();
    for mix in [Mix::Plain, Mix::Vxlan] {
        results.push((mix, bench_mix(&outflow, &dir, packets, rounds, mix)?));
    }
    println!();
    println!("| mix | outflow | tcpdump -w /dev/null | tshark conv,tcp | outflow vs tshark | outflow vs tcpdump |");
    println!("|---|---|---|---|---|---|");
    for (mix, [ours, floor, tshark, vs_tshark, vs_floor]) in results {
        println!(
            "| {} | {ours:.3} s | {floor:.3} s | {tshark:.3} s | {vs_tshark:.1}x faster | {vs_floor:.2}x its time |",
            mix.name()
        );
    }
    Ok(())
}

/// One mix: its own tables and checks; returns the medians (outflow, tcpdump, tshark seconds)
/// and the median round ratios (vs tshark, vs tcpdump).
fn bench_mix(
    outflow: &Path,
    dir: &Path,
    packets: u64,
    rounds: usize,
    mix: Mix,
) -> Result<[f64; 5]> {
    let file = dir.join(format!("{}-{packets}.pcap", mix.name()));
    eprintln!("generating {} ({packets} packets)", file.display());
    let truth = generate(&file, packets, mix)?;
    let size_mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
    // The generator's 2 GB would otherwise be written back to disk during the first rounds.
    Command::new("sync").status()?;

    // Rounds rotate the three tools, and each round's ratios compare runs made within seconds of
    // each other: tshark's own time moves by a third from one minute to the next on a shared VM.
    let mut tools: [(&str, Command); 3] = [
        ("outflow", {
            let mut c = Command::new(outflow);
            c.arg("analyze").arg(&file).arg("--json");
            c
        }),
        ("tcpdump", {
            let mut c = Command::new("tcpdump");
            c.args(["-q", "-r"]).arg(&file).args(["-w", "/dev/null"]);
            c
        }),
        ("tshark", {
            let mut c = Command::new("tshark");
            c.arg("-r").arg(&file).args(["-q", "-z", "conv,tcp"]);
            c
        }),
    ];
    let mut times = vec![[0f64; 3]; rounds];
    for (round, t) in times.iter_mut().enumerate() {
        for k in 0..3 {
            let i = (round + k) % 3;
            let (name, cmd) = &mut tools[i];
            eprintln!("{}: round {}/{rounds}: {name}", mix.name(), round + 1);
            compact_memory();
            warm(&file)?;
            t[i] = timed(cmd)?;
        }
    }
    let ours = median(times.iter().map(|t| t[0]).collect());
    let floor = median(times.iter().map(|t| t[1]).collect());
    let tshark = median(times.iter().map(|t| t[2]).collect());
    let vs_tshark = median(times.iter().map(|t| t[2] / t[0]).collect());
    let vs_floor = median(times.iter().map(|t| t[0] / t[1]).collect());

    let report = analyze_json(outflow, &file)?;
    check(&report, &truth)?;
    if mix == Mix::Vxlan {
        let tunnelled = report["capture"]["tunnelled"].as_u64().unwrap_or(0);
        if tunnelled != truth.packets {
            bail!(
                "outflow took {tunnelled} packets out of VXLAN, the generator wrapped {}",
                truth.packets
            );
        }
    }
    let conv = tshark_conversations(&file)?;

    println!(
        "{}: {packets} packets, {size_mb:.0} MB, {} TCP conversations (tshark counts {conv})",
        mix.name(),
        truth.tcp_conversations
    );
    println!("| tool | median wall time ({rounds} rounds) | outflow is (median of round ratios) |");
    println!("|---|---|---|");
    println!("| outflow analyze --json | {ours:.3} s | 1 |");
    println!("| tcpdump -r F -w /dev/null | {floor:.3} s | {vs_floor:.2}x its time |");
    println!("| tshark -r F -q -z conv,tcp | {tshark:.3} s | {vs_tshark:.1}x faster |");
    for (i, t) in times.iter().enumerate() {
        println!(
            "round {}: outflow {:.3} s, tcpdump {:.3} s, tshark {:.3} s: {:.1}x tshark, {:.2}x tcpdump",
            i + 1,
            t[0],
            t[1],
            t[2],
            t[2] / t[0],
            t[0] / t[1]
        );
    }
    println!(
        "outflow rate: {:.2} M packets/s, {:.0} MB/s",
        packets as f64 / ours / 1e6,
        size_mb / ours
    );
    if mix == Mix::Plain {
        // Memory follows flow state, not file size: the same on a file twice as large.
        let rss = peak_rss_kb(outflow, &file)?;
        let double = dir.join(format!("{}-{}.pcap", mix.name(), packets * 2));
        generate(&double, packets * 2, mix)?;
        let rss_double = peak_rss_kb(outflow, &double)?;
        std::fs::remove_file(&double).ok();
        println!(
            "outflow peak RSS: {} MB on this file, {} MB on one twice as large",
            rss / 1024,
            rss_double / 1024
        );
    }
    println!("counts match the generator: {truth:?}");
    if vs_tshark < 20.0 || vs_floor > 1.5 {
        eprintln!("warning: below the goal (>= 20x tshark, <= 1.5x tcpdump)");
    }
    Ok([ours, floor, tshark, vs_tshark, vs_floor])
}

/// Asks the kernel to compact free memory (as root; otherwise nothing). tshark leaves gigabytes
/// of freed, fragmented memory behind it, and a tool started right after it found no huge pages
/// for its heap and spent up to twice the system time on page faults: each tool starts from the
/// same state instead.
fn compact_memory() {
    let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
}

/// Reads the file once, so each tool starts with it in the page cache. This machine class
/// reclaims idle page cache within a minute or two, with gigabytes free: between rounds the file
/// lost up to 1.5 GB of its pages, and a tool reading at 2 GB/s then waited on the disk (one
/// outflow run took 1.68 s instead of 0.90 s, with 43,000 pages read back in).
fn warm(file: &Path) -> Result<()> {
    let mut f = std::fs::File::open(file)?;
    std::io::copy(&mut f, &mut std::io::sink())?;
    Ok(())
}

/// Wall time of one run; its output is discarded.
fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if !status.success() {
        bail!("benchmark command {cmd:?} failed with {status}");
    }
    Ok(start.elapsed().as_secs_f64())
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
