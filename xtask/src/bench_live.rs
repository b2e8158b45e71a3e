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

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::bench_concurrent::{PairWatcher, PORT_A, PORT_B};
use crate::median;
use crate::run as run_cmd;

pub(crate) const POD: &str = "obn-pod";
pub(crate) const NODE: &str = "obn-node";
pub(crate) const VETH: &str = "obn-veth0";
/// A second pod interface, so two streams can run at once, one watched and one not.
pub(crate) const VETH_B: &str = "obn-veth1";
const POD_IP: &str = "10.99.0.2";
pub(crate) const NODE_IP: &str = "10.99.0.1";
pub(crate) const NODE_IP_B: &str = "10.99.1.1";
const API: &str = "127.0.0.1:17990";
/// Rounds per load (`--rounds`): this machine class is noisy (±10 % between identical runs).
const ROUNDS: usize = 5;

/// Removes the namespaces whatever happens.
struct Pair;

impl Pair {
    fn up() -> Result<Pair> {
        Pair::down();
        let ip = |args: &[&str]| run_cmd(Command::new("ip").args(args));
        ip(&["netns", "add", POD])?;
        ip(&["netns", "add", NODE])?;
        for (node_dev, pod_dev, node_ip, pod_ip) in [
            (VETH, "eth0", NODE_IP, POD_IP),
            (VETH_B, "eth1", NODE_IP_B, "10.99.1.2"),
        ] {
            ip(&[
                "-n", NODE, "link", "add", node_dev, "type", "veth", "peer", "name", pod_dev,
                "netns", POD,
            ])?;
            ip(&[
                "-n",
                NODE,
                "addr",
                "add",
                &format!("{node_ip}/24"),
                "dev",
                node_dev,
            ])?;
            ip(&[
                "-n",
                POD,
                "addr",
                "add",
                &format!("{pod_ip}/24"),
                "dev",
                pod_dev,
            ])?;
        }
        for (ns, dev) in [
            (NODE, VETH),
            (POD, "eth0"),
            (NODE, VETH_B),
            (POD, "eth1"),
            (NODE, "lo"),
            (POD, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(Pair)
    }

    fn down() {
        for ns in [POD, NODE] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        Pair::down();
    }
}

/// A background process, stopped with SIGTERM (or killed) when dropped.
pub(crate) struct Bg(pub(crate) Child);

impl Bg {
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

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

/// `outflow up` on the node's end of the veth, reporting every `interval`.
fn start_outflow(outflow: &Path, interval: &str, extra: &[&str]) -> Result<Bg> {
    start_outflow_on(outflow, VETH, interval, extra)
}

/// `outflow up` on the node's interface `iface` alone.
pub(crate) fn start_outflow_on(
    outflow: &Path,
    iface: &str,
    interval: &str,
    extra: &[&str],
) -> Result<Bg> {
    let db = std::env::temp_dir().join("outflow-bench-live.db");
    let _ = std::fs::remove_file(&db);
    let child = Command::new(outflow)
        .args(["up", "--node-netns", NODE, "--iface-prefix", iface])
        .args([
            "--listen",
            API,
            "--interval",
            interval,
            "--datapath",
            "ebpf",
        ])
        .args(extra)
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting outflow up")?;
    let bg = Bg(child);
    let start = Instant::now();
    while health().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("outflow up did not answer on {API}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Attached once the node reports an interface.
    while health().is_none_or(|h| h["nodes"][0]["datapath"]["interfaces"] != 1) {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("outflow up did not attach to {iface}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(bg)
}

fn health() -> Option<Value> {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{API}/api/v1/health")])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
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

/// `tcpdump -w /dev/null` on the node's interface `iface`.
pub(crate) fn tcpdump_to_null(iface: &str) -> Result<Bg> {
    Ok(Bg(in_ns(
        NODE,
        &["tcpdump", "-q", "-i", iface, "-w", "/dev/null"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()?))
}

/// One iperf3 run from the pod; returns bits/s (TCP) or packets/s received (UDP).
fn iperf(udp: bool, seconds: u64) -> Result<f64> {
    let secs = seconds.to_string();
    // Client and server pinned to one core each: unpinned, the scheduler's placement alone
    // moves TCP throughput by a quarter between identical runs.
    let mut args = vec![
        "iperf3",
        "-c",
        NODE_IP,
        "-J",
        "-A",
        "0,1",
        "-t",
        secs.as_str(),
    ];
    if udp {
        args.extend(["-u", "-l", "64", "-b", "0"]);
    }
    let out = in_ns(POD, &args).output()?;
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    let end = &v["end"];
    Ok(if udp {
        // The receiver's view: what got through per second.
        let sum = &end["sum"];
        let packets =
            sum["packets"].as_f64().unwrap_or(0.0) - sum["lost_packets"].as_f64().unwrap_or(0.0);
        packets / sum["seconds"].as_f64().unwrap_or(seconds as f64)
    } else {
        end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
    })
}

/// Rounds of bare / outflow / tcpdump, each round starting with the next one so that no
/// watcher always runs first; medians by watcher.
fn compare(outflow: &Path, udp: bool, rounds: usize, seconds: u64) -> Result<Compared> {
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
struct Compared {
    medians: [f64; 3],
    /// Medians of each round's ratio to that round's bare run (outflow, tcpdump): runs of one
    /// round are minutes apart at most, so slow drift of the machine cancels out.
    paired: [f64; 2],
    /// outflow's mean round ratio and the half-width of its 95 % confidence interval: whether
    /// the runs resolve the ratio from its goal at all.
    mean_ci: Option<(f64, f64)>,
    /// (max − min) / median of the bare runs: the noise floor of the ratios.
    bare_spread: f64,
    /// Median cost of outflow's programs per packet, as the kernel measures it.
    program_ns: Option<f64>,
}

/// Resident memory of a process, in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Sums a datapath counter over the windows of the node's totals or its last window.
fn totals(h: &Value, key: &str) -> u64 {
    h["nodes"][0]["totals"][key].as_u64().unwrap_or(0)
}

/// SYNs from the pod at `syn_rate` per second for `seconds`, each answered by a RST: two control
/// events per SYN. Returns the events per second the agent received and the ring-buffer drops.
fn event_rate(outflow: &Path, syn_rate: u64, seconds: u64) -> Result<(f64, u64, f64)> {
    let up = start_outflow(outflow, "1s", &[])?;
    let before = events_total();
    let cpu_before = cpu_seconds(up.0.id());
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().context("xtask's path is not UTF-8")?;
    let (rate, secs) = (syn_rate.to_string(), seconds.to_string());
    let start = Instant::now();
    run_cmd(&mut in_ns(
        POD,
        &[
            exe,
            "syn-gen",
            "--src",
            POD_IP,
            "--dst",
            NODE_IP,
            "--rate",
            &rate,
            "--seconds",
            &secs,
        ],
    ))?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(up.0.id()) - cpu_before) / elapsed;
    std::thread::sleep(Duration::from_millis(2500));
    let h = health().context("health after the SYNs")?;
    let events = events_total().saturating_sub(before);
    let drops = totals(&h, "event_drops");
    up.stop();
    Ok((events as f64 / elapsed, drops, cpu))
}

/// User + system CPU seconds of a process.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Control events since the controller started, from `/metrics` (the health view keeps the last
/// window's).
fn events_total() -> u64 {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{API}/metrics")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .find(|l| l.starts_with("outflow_datapath_events_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Resident memory of the agent as the flow map fills: idle, 60 000 concurrent flow directions
/// (30 000 SYNs from distinct source ports, each answered by a RST), then 120 000 at once, past
/// the map's capacity. Returns (flow directions, RSS in KiB, evictions so far).
fn memory(outflow: &Path, flow_entries: u32) -> Result<Vec<(u64, u64, u64)>> {
    let entries = flow_entries.to_string();
    let up = start_outflow(outflow, "1s", &["--flow-entries", &entries])?;
    let pid = up.0.id();
    let mut out = vec![(0, rss_kb(pid), 0)];
    for (dport, syns) in [("7001", 30_000u64), ("7002", 60_000)] {
        let count = syns.to_string();
        let _ = in_ns(
            POD,
            &[
                "hping3", "-q", "-S", "-s", "2000", "-p", dport, "-i", "u10", "-c", &count, NODE_IP,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
        std::thread::sleep(Duration::from_millis(1500));
        let h = health().context("health")?;
        out.push((2 * syns, rss_kb(pid), totals(&h, "flows_evicted")));
    }
    up.stop();
    Ok(out)
}

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
const CAPTURE_TOOLS: [&str; 4] = ["bare", "tcpdump", "outflow", "outflow-plain"];

/// Medians of one tool's runs: throughput, kernel drops, CPU nanoseconds per packet written.
#[derive(Clone, Copy, Default)]
struct CaptureMedians {
    rate: f64,
    drops: f64,
    cpu_ns_per_packet: f64,
}

/// iperf3 (TCP, or the 64-byte UDP flood) bare, under `tcpdump -w`, and under `outflow capture
/// -w` with and without packet comments, interleaved; medians.
fn capture_compare(
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
