//! `cargo xtask bench-live`: what the live agent costs the traffic it watches, side by side in
//! one run on one veth pair.
//!
//! A pod namespace and a node namespace joined by a veth; iperf3's server in the node, its client
//! in the pod. Each round runs the same load bare, with `outflow up` attached to the node's end
//! (eBPF), and with `tcpdump -w /dev/null` on it; rounds alternate so drift hits all three alike,
//! and the median of the rounds counts. Runs one after another cannot resolve a cost of a few
//! percent on this machine class, so `bench_concurrent` also runs a watched and an unwatched
//! stream at once over a second veth pair. Then hping3 drives SYNs (answered by RSTs) at a fixed rate
//! to check the ring buffer keeps up, and across tens of thousands of source ports to fill the
//! flow map, while the agent's resident memory is read.
//!
//! The lab (namespaces, processes) is `lab.rs`; each measurement has its own file, and this one
//! runs those asked for and prints the tables.

mod capture;
mod flood;
pub(crate) mod lab;
mod throughput;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::bench_concurrent::{PairWatcher, PORT_A, PORT_B};
use capture::{capture_compare, CAPTURE_TOOLS};
use flood::{event_rate, memory};
use lab::{in_ns, Bg, Pair, NODE, NODE_IP, NODE_IP_B};
use throughput::{compare, Compared};

/// Rounds per load (`--rounds`): this machine class is noisy (±10 % between identical runs).
const ROUNDS: usize = 5;

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    crate::setup()?;
    let seconds: u64 = crate::flag(args, "--seconds", 5)?;
    let rounds: usize = crate::flag(args, "--rounds", ROUNDS)?.max(1);
    let outflow = crate::build_outflow()?;
    let _pair = Pair::up()?;
    // The node answers SYNs to closed ports with RSTs; nothing more to set up.
    // One iperf3 server per veth pair (the second for `pair`).
    let servers = [(NODE_IP, PORT_A), (NODE_IP_B, PORT_B)]
        .into_iter()
        .map(|(addr, port)| {
            Ok(Bg(in_ns(NODE, &["iperf3", "-s", "-B", addr, "-p", port])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?))
        })
        .collect::<Result<Vec<Bg>>>()?;
    std::thread::sleep(Duration::from_millis(500));

    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let want = |part: &str| only.is_none_or(|o| o == part);
    let (mut tcp, mut udp, mut events, mut mem) = (None, None, None, Vec::new());
    let mut concurrent = None;
    if want("tcp") {
        eprintln!("iperf3 TCP, {seconds} s per run:");
        tcp = Some(compare(&outflow, false, rounds, seconds)?);
    }
    if want("pair") {
        let blocks: usize = crate::flag(args, "--blocks", 4)?;
        eprintln!("two iperf3 TCP streams at once, one watched, {seconds} s per run:");
        let watcher = match crate::flag(args, "--pair-watcher", "outflow".to_string())?.as_str() {
            "outflow" => PairWatcher::Outflow,
            "tcpdump" => PairWatcher::Tcpdump,
            other => bail!("--pair-watcher takes outflow or tcpdump, not {other}"),
        };
        concurrent = Some((
            watcher,
            crate::bench_concurrent::compare(&outflow, watcher, blocks, rounds, seconds)?,
        ));
    }
    if want("udp") {
        eprintln!("iperf3 UDP, 64-byte datagrams, unlimited rate, {seconds} s per run:");
        udp = Some(compare(&outflow, true, rounds, seconds)?);
    }
    if want("events") {
        eprintln!("SYN/RST control events:");
        events = Some(event_rate(&outflow, 50_000, seconds)?);
    }
    let mut captures = Vec::new();
    if want("capture") {
        for (udp, load) in [(false, "iperf3 TCP"), (true, "iperf3 UDP 64 B")] {
            // The flood passes a capture's default limit of 1,000,000 packets after 4 s.
            let secs = if udp { seconds.min(4) } else { seconds };
            eprintln!("{load} while capturing to a file, snaplen 512, {secs} s per run:");
            captures.push((load, udp, capture_compare(&outflow, udp, rounds, secs)?));
        }
    }
    if want("memory") {
        eprintln!("flow map of 65536 entries, RSS as flows are added:");
        mem = memory(&outflow, 65_536)?;
    }
    for server in servers {
        server.stop();
    }

    println!(
        "\n## Live datapath (`cargo xtask bench-live`, {seconds} s runs, medians of {rounds})\n"
    );
    println!("| load | bare | outflow (eBPF) | ratio of medians | median of round ratios | tcpdump -w /dev/null | ratio of medians | median of round ratios |");
    println!("|---|---|---|---|---|---|---|---|");
    let mbit: &dyn Fn(f64) -> String = &|v| format!("{:.0} Mbit/s", v / 1e6);
    let pkts: &dyn Fn(f64) -> String = &|v| format!("{v:.0} pkt/s");
    for (load, c, unit) in [("iperf3 TCP", &tcp, mbit), ("iperf3 UDP 64 B", &udp, pkts)] {
        if let Some(Compared {
            medians: m, paired, ..
        }) = c
        {
            println!(
                "| {load} | {} | {} | {:.3} | **{:.3}** | {} | {:.3} | {:.3} |",
                unit(m[0]),
                unit(m[1]),
                m[1] / m[0],
                paired[0],
                unit(m[2]),
                m[2] / m[0],
                paired[1]
            );
        }
    }
    for (load, c) in [("TCP", &tcp), ("UDP", &udp)] {
        if let Some(c) = c {
            println!(
                "\n{load}: identical bare runs spread over {:.1} % of their median, the noise floor of these ratios; outflow's mean round ratio {}; outflow's TC programs took {} per packet (kernel bpf_stats in a separate run; it adds two clock reads per packet).",
                c.bare_spread * 100.0,
                c.mean_ci.map_or("?".to_string(), |(m, h)| format!(
                    "**{m:.3}**, 95 % confidence interval {:.3}–{:.3}",
                    m - h,
                    m + h
                )),
                c.program_ns.map_or("?".to_string(), |ns| format!("{ns:.0} ns"))
            );
        }
    }
    if let Some((watcher, c)) = concurrent {
        println!(
            "\nTCP, two streams at once, one watched by {} ({} runs per watched interface, {:.0} Mbit/s a stream): the watched stream ran at **{:.3}** of the unwatched (95 % confidence interval {:.3}–{:.3}; interface bias {:.3} removed); the watcher's own CPU time was {:.2} % of the machine.",
            match watcher {
                PairWatcher::Outflow => "`outflow up` (eBPF)",
                PairWatcher::Tcpdump => "`tcpdump -w /dev/null`",
            },
            c.runs,
            c.stream_bps / 1e6,
            c.ratio,
            c.ratio - c.half_width,
            c.ratio + c.half_width,
            c.bias,
            c.watcher_cpu_share * 100.0
        );
    }
    if let Some((rate, drops, cpu)) = events {
        println!("\nControl events: {rate:.0} events/s (SYN + RST) for {seconds} s, ring-buffer drops: **{drops}**, agent CPU {:.0} % of one core.\n", cpu * 100.0);
    }
    if !captures.is_empty() {
        println!("\n| capture of the pod to file (snaplen 512) | run | throughput | ratio to bare | kernel drops | CPU per packet written |");
        println!("|---|---|---|---|---|---|");
    }
    for (load, udp, medians) in &captures {
        let unit = |v: f64| {
            if *udp {
                format!("{v:.0} pkt/s")
            } else {
                format!("{:.0} Mbit/s", v / 1e6)
            }
        };
        let bare = medians[0].rate;
        for (tool, m) in CAPTURE_TOOLS.iter().zip(medians) {
            let name = match *tool {
                "bare" => "bare",
                "tcpdump" => "`tcpdump -w`",
                "outflow" => "`outflow capture -w` (comments)",
                _ => "`outflow capture -w --no-annotate`",
            };
            if *tool == "bare" {
                println!("| {load} | {name} | {} | 1 | | |", unit(m.rate));
            } else {
                println!(
                    "| {load} | {name} | {} | **{:.3}** | **{:.0}** | {:.0} ns |",
                    unit(m.rate),
                    m.rate / bare,
                    m.drops,
                    m.cpu_ns_per_packet
                );
            }
        }
    }
    if !mem.is_empty() {
        println!("| flow directions in one burst | agent RSS | flows evicted (map of 65536) |");
        println!("|---|---|---|");
    }
    for (flows, rss, evicted) in &mem {
        println!("| {flows} | {:.1} MiB | {evicted} |", *rss as f64 / 1024.0);
    }
    Ok(())
}
