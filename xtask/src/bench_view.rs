//! `cargo xtask bench-view [--nodes 100] [--recent-every 5]`: how fast the flow health view and
//! the diagnoses answer over ranges from a quarter hour to a week, side by side in one run.
//!
//! The release controller is given a week of reports from `--nodes` simulated nodes (the
//! reports of `bench-controller`): one per node every `--recent-every` minutes for the last 6 h,
//! which stay minute buckets, and one per node-hour before that, which the controller merges
//! into hour buckets as it would minutes (an hour bucket holds the same rows however many
//! reports fed it). Then each range is asked for several times and the median kept.
//! Traffic stays on loopback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use outflow_core::wire::routes;

use crate::bench_controller::{dir_size, gzip, report, Controller};

const MINUTE_NS: u64 = 60_000_000_000;
const HOUR_NS: u64 = 60 * MINUTE_NS;
const RANGES: [(&str, u64); 4] = [
    ("15 min", 900),
    ("1 h", 3600),
    ("24 h", 86_400),
    ("7 days", 604_800),
];
const ROUNDS: usize = 5;

pub fn run(args: &[String]) -> Result<()> {
    let nodes: usize = crate::flag(args, "--nodes", 100)?;
    let every: u64 = crate::flag(args, "--recent-every", 5)?;
    if every == 0 {
        bail!("--recent-every is minutes, at least 1");
    }
    let outflow = crate::build_outflow()?;
    let dir = std::env::temp_dir().join(format!("outflow-bench-view-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    // Reports a week old are taken, and the store holds all of them.
    let mut c = Controller::start(
        &outflow,
        &db,
        &[
            "--retention",
            "8d",
            "--view-retention",
            "8d",
            "--max-store-size",
            "64GiB",
        ],
    )?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let mut ends: Vec<u64> = (0..6 * 60 / every)
        .map(|i| now - i * every * MINUTE_NS)
        .collect();
    ends.extend((6..7 * 24).map(|h| now - h * HOUR_NS));
    eprintln!(
        "loading {} reports from {nodes} nodes over 7 days",
        ends.len() * nodes
    );
    let started = Instant::now();
    load(&c.url, nodes, &ends)?;
    eprintln!(
        "loaded in {:.0} s; letting the controller merge old minutes",
        started.elapsed().as_secs_f64()
    );
    // The retention timer runs every 30 s.
    std::thread::sleep(Duration::from_secs(35));
    println!("| range | view p50 (ms) | diagnoses p50 (ms) | view / 15 min | diagnoses / 15 min |");
    println!("|---|---|---|---|---|");
    let mut base = None;
    for (name, since) in RANGES {
        let view = median(&c.url, routes::VIEW, since)?;
        let diagnoses = median(&c.url, routes::DIAGNOSES, since)?;
        let (v0, d0) = *base.get_or_insert((view, diagnoses));
        println!(
            "| {name} | {view:.0} | {diagnoses:.0} | {:.1}× | {:.1}× |",
            view / v0,
            diagnoses / d0
        );
    }
    println!(
        "\n{nodes} nodes, {} reports, store {:.0} MB",
        ends.len() * nodes,
        dir_size(&db) as f64 / 1e6
    );
    c.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Posts a report of every node for every window end in `ends`, from a few threads.
fn load(url: &str, nodes: usize, ends: &[u64]) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let total = (nodes * ends.len()) as u64;
    let url = format!("{url}{}", routes::REPORTS);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (next, url, ends) = (next.clone(), url.clone(), ends.to_vec());
            std::thread::spawn(move || -> Result<()> {
                let client = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(30)))
                        .http_status_as_error(false)
                        .build(),
                );
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok(());
                    }
                    let (node, end) = (
                        (i % nodes as u64) as usize,
                        ends[(i / nodes as u64) as usize],
                    );
                    let body = gzip(&serde_json::to_vec(&report(
                        node,
                        i,
                        end,
                        Duration::from_secs(10),
                    ))?);
                    // Refused while the store is busy: wait as an agent would, and send it again.
                    loop {
                        let status = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("content-encoding", "gzip")
                            .send(&body[..])
                            .context("posting a report")?
                            .status()
                            .as_u16();
                        match status {
                            204 => break,
                            503 => std::thread::sleep(Duration::from_millis(200)),
                            s => bail!("the controller answered {s} to a report"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a loader panicked"))??;
    }
    Ok(())
}

/// The median time of `ROUNDS` calls of `path?since=SINCE` (ms).
fn median(url: &str, path: &str, since: u64) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        ureq::get(format!("{url}{path}?since={since}"))
            .config()
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .call()
            .with_context(|| format!("{path}?since={since}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[ROUNDS / 2])
}
