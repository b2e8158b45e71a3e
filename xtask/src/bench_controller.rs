//! `cargo xtask bench-controller [--agents 50,100,200] [--batches 64] [--seconds 60]
//! [--interval 10]`: the
//! controller under many agents, on loopback. Each simulated agent posts a realistic report
//! every interval (30 pods, 200 connection groups, 100 DNS lookups, 20 findings; gzip, as
//! agents send them; a fresh report id each time), spread evenly over the interval. Per step:
//! reports accepted, refused (503, overload) and failed, the latency of posts (p50, p99), a
//! query's latency during the load, the controller's RSS and CPU, and the store's size.
//!
//! Traffic stays on loopback; the controller is the release build with a store of its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use outflow_core::report::{CaptureStats, ConnectionRecord, DnsRecord, Finding, Latency, Severity};
use outflow_core::wire::{routes, DatapathStats, NodePod, NodeReport, Scope, Scoped};
use outflow_core::{Category, DnsOutcome, Outcome};

const PORT: u16 = 17897;

/// One step's figures.
struct Step {
    agents: usize,
    /// The controller's `--ingest-batch`.
    batch: usize,
    accepted: u64,
    refused: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// Records, the view's matrix and the diagnoses: p50 and max each (ms).
    queries_ms: [(f64, f64); 3],
    rss_mb: f64,
    cpu_share: f64,
    generator_cpu_share: f64,
    expected: u64,
    db_mb: f64,
    report_kb: (f64, f64),
}

/// A comma-separated list of numbers after `name`, or `default`.
fn list_flag(args: &[String], name: &str, default: &[usize]) -> Result<Vec<usize>> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a list, e.g. 50,100,200"))?
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .with_context(|| format!("{name}: numbers, e.g. 50,100,200"))
            })
            .collect(),
        None => Ok(default.to_vec()),
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let steps = list_flag(args, "--agents", &[50, 100, 200])?;
    // Each batch size gets a controller and a store of its own, the same steps in the same run.
    let batches = list_flag(args, "--batches", &[64])?;
    let seconds: u64 = crate::flag(args, "--seconds", 60)?;
    let interval: u64 = crate::flag(args, "--interval", 10)?;
    let outflow = crate::build_outflow()?;
    let dir = std::env::temp_dir().join(format!("outflow-bench-controller-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for batch in batches {
        let db = dir.join(format!("bench-{batch}.db"));
        let batch_flag = batch.to_string();
        let mut controller = Controller::start(&outflow, &db, &["--ingest-batch", &batch_flag])?;
        for &agents in &steps {
            eprintln!(
                "step: {agents} agents for {seconds} s, a report each {interval} s, \
                 at most {batch} reports a commit"
            );
            let mut s = step(
                &controller,
                &db,
                agents,
                Duration::from_secs(seconds),
                Duration::from_secs(interval),
            )?;
            s.batch = batch;
            out.push(s);
        }
        controller.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&out, interval);
    Ok(())
}

/// The release controller on the benchmark's port, killed by `stop`.
pub(crate) struct Controller {
    child: Child,
    pub(crate) url: String,
}

impl Controller {
    /// With `--retention 24h` unless `extra` gives one.
    pub(crate) fn start(outflow: &Path, db: &Path, extra: &[&str]) -> Result<Controller> {
        let retention: &[&str] = if extra.contains(&"--retention") {
            &[]
        } else {
            &["--retention", "24h"]
        };
        let child = Command::new(outflow)
            .args(["controller", "--listen", &format!("127.0.0.1:{PORT}")])
            .args(retention)
            .arg("--db")
            .arg(db)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the controller")?;
        let c = Controller {
            child,
            url: format!("http://127.0.0.1:{PORT}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while ureq::get(format!("{}/healthz", c.url)).call().is_err() {
            if Instant::now() > deadline {
                bail!("the controller did not come up on port {PORT}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A node's report as an agent would send it, for window ending `end_ns`.
/// Report `seq` of node `node`, for the window of `interval` ending at `end_ns`.
pub(crate) fn report(node: usize, seq: u64, end_ns: u64, interval: Duration) -> NodeReport {
    let start_ns = end_ns - interval.as_nanos() as u64;
    let rfc = outflow_core::report::rfc3339;
    let node_name = format!("aks-nodepool1-{node:05}");
    let scope = |pod: usize| Scope {
        pod: Some(format!("web-7d9f8c6b5-{pod:05}")),
        namespace: Some(format!("team-{}", pod % 8)),
        pod_uid: Some(format!("0c1e7a52-5b8e-4c1e-9d0a-{node:06}{pod:06}")),
        workload: Some(format!("deployment/web-{}", pod % 8)),
        host: false,
        node: node_name.clone(),
        window_start: rfc(start_ns),
        window_end: rfc(end_ns),
    };
    let src = |pod: usize| {
        format!("10.{}.{}.{}", node / 250, node % 250, pod + 10)
            .parse()
            .unwrap()
    };
    let connections = (0..200)
        .map(|i| {
            let outcome = match i % 20 {
                0 => Outcome::Unanswered,
                1 => Outcome::Refused,
                _ => Outcome::Established,
            };
            Scoped {
                scope: scope(i % 30),
                record: ConnectionRecord {
                    src: src(i % 30),
                    dst: format!("198.51.{}.{}", i / 250, i % 250 + 1)
                        .parse()
                        .unwrap(),
                    dst_port: 443,
                    proto: "tcp".into(),
                    category: if i % 4 == 0 {
                        Category::Internal
                    } else {
                        Category::Public
                    },
                    label: None,
                    destination: None,
                    egress: Some("loadBalancer".into()),
                    outcomes: BTreeMap::from([(outcome, 1 + (i % 5) as u64)]),
                    unreachable_codes: BTreeMap::new(),
                    icmp_from: vec![],
                    syn_retransmissions: (i % 3) as u64,
                    handshake_ms: Some(Latency {
                        min: 0.4,
                        avg: 1.2,
                        max: 3.5,
                        count: 3,
                    }),
                    packets_out: 40,
                    packets_in: 38,
                    bytes_out: 4_000,
                    bytes_in: 120_000,
                    names: vec![format!("api-{i}.example.com")],
                    http_statuses: BTreeMap::new(),
                    proxy_connects: vec![],
                    tunnel: None,
                    first_seen: rfc(start_ns + 1_000),
                    last_seen: rfc(end_ns - 1_000),
                    ingress_iface: None,
                },
            }
        })
        .collect();
    let dns = (0..100)
        .map(|i| Scoped {
            scope: scope(i % 30),
            record: DnsRecord {
                client: src(i % 30),
                name: format!("api-{i}.example.com"),
                qtype: if i % 2 == 0 { "A" } else { "AAAA" }.into(),
                outcomes: BTreeMap::from([(
                    if i % 10 == 0 {
                        DnsOutcome::NxDomain
                    } else {
                        DnsOutcome::Ok
                    },
                    1,
                )]),
                servers: vec!["10.0.0.10".parse().unwrap()],
                latency_ms: Some(Latency {
                    min: 0.3,
                    avg: 0.6,
                    max: 1.1,
                    count: 1,
                }),
                expansions: 3,
                queries: 4,
                resolved_as: None,
                answers: vec!["198.51.100.7".parse().unwrap()],
                transport: "udp".into(),
                first_seen: rfc(start_ns + 1_000),
                last_seen: rfc(end_ns - 1_000),
                ingress_iface: None,
            },
        })
        .collect();
    let findings = (0..20)
        .map(|i| Scoped {
            scope: scope(i % 30),
            record: Finding {
                kind: "syn_unanswered".into(),
                severity: Severity::Error,
                message: format!("10.244.1.10 → 198.51.0.{i}:443/tcp (public): 1 of 1 connection attempts unanswered (SYNs dropped on the way or at the destination)"),
                src: Some(src(i % 30)),
                target: Some(format!("198.51.0.{i}:443/tcp")),
                category: Some(Category::Public),
                count: 1,
                evidence: vec!["1 of 1 attempts: SYN sent, no SYN-ACK, RST or ICMP error within the SYN timeout".into()],
                next_checks: vec!["From the node: `curl -v telnet://198.51.0.1:443`".into()],
                ingress_iface: None,
            },
        })
        .collect();
    NodeReport {
        node: node_name.clone(),
        report_id: Some(format!("{node:08x}-{seq}")),
        window_start_ns: start_ns,
        window_end_ns: end_ns,
        connections,
        dns,
        findings,
        capture: CaptureStats::default(),
        datapath: DatapathStats {
            kind: "ebpf".into(),
            interfaces: 30,
            packets: 1_000_000,
            interval_ns: Some(interval.as_nanos() as u64),
            ..DatapathStats::default()
        },
        pods: (0..30)
            .map(|p| NodePod {
                namespace: format!("team-{}", p % 8),
                pod: format!("web-7d9f8c6b5-{p:05}"),
                addresses: vec![src(p)],
                ..NodePod::default()
            })
            .collect(),
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("in memory");
    enc.finish().expect("in memory")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `agents` simulated agents for `length` and measures.
fn step(
    c: &Controller,
    db: &Path,
    agents: usize,
    length: Duration,
    interval: Duration,
) -> Result<Step> {
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let sizes = Arc::new(Mutex::new((0usize, 0usize)));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let cpu_before = cpu_ticks(c.pid());
    let own_before = cpu_ticks(std::process::id());
    // Few threads, each serving agents whose turn comes: a thread per agent would measure
    // the load generator's scheduling, not the controller.
    let workers = 64.min(agents).max(1);
    let mut threads = Vec::new();
    for w in 0..workers {
        let (accepted, refused, failed) = (accepted.clone(), refused.clone(), failed.clone());
        let (latencies, sizes, stop) = (latencies.clone(), sizes.clone(), stop.clone());
        let url = format!("{}{}", c.url, routes::REPORTS);
        threads.push(std::thread::spawn(move || {
            let client = ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .build(),
            );
            let mine: Vec<usize> = (w..agents).step_by(workers).collect();
            let mut seq = 0u64;
            'outer: for round in 0u64.. {
                for &agent in &mine {
                    // Agent `agent` reports at offset agent/agents of each interval.
                    let due = interval.mul_f64(round as f64 + agent as f64 / agents as f64);
                    while start.elapsed() < due {
                        if stop.load(Ordering::Relaxed) {
                            break 'outer;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    seq += 1;
                    let json =
                        serde_json::to_vec(&report(agent, seq, now_ns(), interval)).expect("JSON");
                    let body = gzip(&json);
                    {
                        let mut s = sizes.lock().unwrap();
                        s.0 += json.len();
                        s.1 += body.len();
                    }
                    let sent = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("content-encoding", "gzip")
                        .send(&body[..]);
                    let ms = sent.elapsed().as_secs_f64() * 1e3;
                    match resp.map(|r| r.status().as_u16()) {
                        Ok(204) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            latencies.lock().unwrap().push(ms);
                        }
                        Ok(503) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    // A person reading during the load: the records, the view's matrix and the diagnoses.
    let reads = [
        format!("{}{}?since=900&limit=1000", c.url, routes::CONNECTIONS),
        format!("{}{}?since=900", c.url, routes::VIEW),
        format!("{}{}?since=900", c.url, routes::DIAGNOSES),
    ];
    let mut queries: [Vec<f64>; 3] = Default::default();
    while start.elapsed() < length {
        std::thread::sleep(Duration::from_secs(5).min(length.saturating_sub(start.elapsed())));
        for (url, times) in reads.iter().zip(queries.iter_mut()) {
            let t = Instant::now();
            let ok = ureq::get(url)
                .config()
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .call()
                .is_ok();
            times.push(if ok {
                t.elapsed().as_secs_f64() * 1e3
            } else {
                20_000.0
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_ticks(c.pid()).saturating_sub(cpu_before) as f64 / USER_HZ;
    let own = cpu_ticks(std::process::id()).saturating_sub(own_before) as f64 / USER_HZ;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    for q in &mut queries {
        q.sort_by(f64::total_cmp);
    }
    let (json, gz) = *sizes.lock().unwrap();
    let sent = (accepted.load(Ordering::Relaxed)
        + refused.load(Ordering::Relaxed)
        + failed.load(Ordering::Relaxed))
    .max(1) as f64;
    Ok(Step {
        agents,
        batch: 0,
        accepted: accepted.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        queries_ms: queries
            .each_ref()
            .map(|q| (percentile(q, 0.5), q.last().copied().unwrap_or(0.0))),
        rss_mb: rss_kb(c.pid()) as f64 / 1024.0,
        cpu_share: cpu / elapsed / 2.0,
        generator_cpu_share: own / elapsed / 2.0,
        expected: (agents as f64 * length.as_secs_f64() / interval.as_secs_f64()) as u64,
        db_mb: dir_size(db) as f64 / 1e6,
        report_kb: (json as f64 / sent / 1e3, gz as f64 / sent / 1e3),
    })
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// User and system clock ticks of `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis, from the state on: utime and stime are
    // the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> u64 {
        rest.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The unit of /proc's CPU times: USER_HZ, which Linux fixes at 100 for user space.
const USER_HZ: f64 = 100.0;

/// The store's bytes: the database and its WAL.
pub(crate) fn dir_size(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

fn print_table(steps: &[Step], interval: u64) {
    println!("| agents (a report each {interval} s) | reports a commit (at most) | due / accepted | refused (503) | failed | post p50 / p99 | records p50 / max | view p50 / max | diagnoses p50 / max | controller CPU (of 2 cores) | load generator CPU | RSS | store | report JSON → gzip |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in steps {
        println!(
            "| {} | {} | {} / {} | {} | {} | {:.1} / {:.1} ms | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} % | {:.0} % | {:.0} MB | {:.0} MB | {:.0} KB → {:.0} KB |",
            s.agents, s.batch, s.expected, s.accepted, s.refused, s.failed, s.p50_ms, s.p99_ms,
            s.queries_ms[0].0, s.queries_ms[0].1, s.queries_ms[1].0, s.queries_ms[1].1,
            s.queries_ms[2].0, s.queries_ms[2].1, s.cpu_share * 100.0, s.generator_cpu_share * 100.0,
            s.rss_mb, s.db_mb, s.report_kb.0, s.report_kb.1
        );
    }
}
