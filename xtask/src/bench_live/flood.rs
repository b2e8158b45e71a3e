//! The agent under SYN floods: how many control events a second it takes without ring-buffer
//! drops, and its resident memory as the flow map fills past its capacity.
//!
//! Both read the agent's own view (health and `/metrics`), not the load's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::lab::{cpu_seconds, health, in_ns, start_outflow, API, NODE_IP, POD, POD_IP};
use crate::run as run_cmd;

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
pub(super) fn event_rate(outflow: &Path, syn_rate: u64, seconds: u64) -> Result<(f64, u64, f64)> {
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
pub(super) fn memory(outflow: &Path, flow_entries: u32) -> Result<Vec<(u64, u64, u64)>> {
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
