//! The lab every live benchmark runs in: the pod and node namespaces joined by two veth pairs,
//! the processes started in them, and what is read back from them.
//!
//! `outflow up` attached to one interface, `tcpdump -w /dev/null`, an iperf3 run from the pod, a
//! process's CPU time: the parts the comparisons here and in `bench_concurrent` are built from.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::run as run_cmd;

pub(crate) const POD: &str = "obn-pod";
pub(crate) const NODE: &str = "obn-node";
pub(crate) const VETH: &str = "obn-veth0";
/// A second pod interface, so two streams can run at once, one watched and one not.
pub(crate) const VETH_B: &str = "obn-veth1";
pub(super) const POD_IP: &str = "10.99.0.2";
pub(crate) const NODE_IP: &str = "10.99.0.1";
pub(crate) const NODE_IP_B: &str = "10.99.1.1";
pub(super) const API: &str = "127.0.0.1:17990";

/// Removes the namespaces whatever happens.
pub(super) struct Pair;

impl Pair {
    pub(super) fn up() -> Result<Pair> {
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

/// `outflow up` on the node's end of the veth, reporting every `interval`.
pub(super) fn start_outflow(outflow: &Path, interval: &str, extra: &[&str]) -> Result<Bg> {
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

pub(super) fn health() -> Option<Value> {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{API}/api/v1/health")])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
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
pub(super) fn iperf(udp: bool, seconds: u64) -> Result<f64> {
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
