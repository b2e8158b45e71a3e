//! Shipping window reports to the controller: a bounded queue and one sender thread.
//!
//! The agent's loop never waits on the network: it queues a report and goes on. While the
//! controller is unreachable, reports wait and are retried with backoff; when the queue is
//! full the oldest report is dropped and counted, and the count travels in the `reports_dropped`
//! of the next report that gets through, so the controller learns what it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use outflow_core::wire::NodeReport;
use tracing::{debug, error, info, info_span, warn};

use crate::http;

/// Where and how reports go.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// The controller's base URL (`http://host:7878`).
    pub controller: String,
    /// Bearer token, when the controller asks for one.
    pub token: http::Token,
    /// Reports kept while the controller is unreachable.
    pub capacity: usize,
    /// One request's time limit.
    pub timeout: Duration,
}

#[derive(Default)]
struct Queue {
    reports: VecDeque<NodeReport>,
    /// Reports dropped and not yet told to the controller.
    untold_drops: u64,
    /// Reports dropped since start.
    dropped: u64,
    /// Reports delivered since start.
    delivered: u64,
    closing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere must not stop shipping: the queue stays consistent at every step.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sender: `send` queues, a thread delivers.
pub struct Shipper {
    shared: Arc<Shared>,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

/// Counters of a shipper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipStats {
    /// Reports the controller accepted.
    pub delivered: u64,
    /// Reports dropped (queue full, or refused by the controller as malformed).
    pub dropped: u64,
    /// Reports waiting.
    pub queued: usize,
}

impl Shipper {
    /// Starts the sender thread.
    pub fn start(cfg: ShipConfig) -> std::io::Result<Shipper> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        let capacity = cfg.capacity.max(1);
        let thread = std::thread::Builder::new()
            .name("ship".into())
            .spawn(move || deliver(&cfg, &worker))?;
        Ok(Shipper {
            shared,
            capacity,
            thread: Some(thread),
        })
    }

    /// Queues a report; never blocks on the network. A full queue drops its oldest report.
    pub fn send(&self, report: NodeReport) {
        let mut q = self.shared.lock();
        q.reports.push_back(report);
        self.shared.wake.notify_one();
        while q.reports.len() > self.capacity {
            let old = q.reports.pop_front().expect("queue longer than capacity");
            q.untold_drops += 1 + old.datapath.reports_dropped;
            q.dropped += 1;
            warn!(
                window_end_ns = old.window_end_ns,
                queued = q.reports.len(),
                "controller unreachable and the report queue is full: oldest report dropped"
            );
        }
    }

    /// Delivered, dropped and waiting reports.
    pub fn stats(&self) -> ShipStats {
        let q = self.shared.lock();
        ShipStats {
            delivered: q.delivered,
            dropped: q.dropped,
            queued: q.reports.len(),
        }
    }

    /// Delivers what it can within `grace`, then stops. Returns the final counters.
    pub fn close(mut self, grace: Duration) -> ShipStats {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let deadline = Instant::now() + grace;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let stats = self.stats();
        if stats.queued > 0 {
            error!(
                undelivered = stats.queued,
                "stopping with reports the controller never received"
            );
        }
        stats
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

/// What the controller made of one report.
enum Delivery {
    Accepted,
    /// Not now (unreachable, 5xx, 429, a wrong token): keep it and retry, no sooner than the
    /// controller's `Retry-After` when it gave one.
    Retry(String, Option<Duration>),
    /// Never (the controller says the report itself is wrong): drop it.
    Refused(String),
}

/// The sender thread: oldest report first, backoff while the controller is down.
fn deliver(cfg: &ShipConfig, shared: &Shared) {
    let agent = http::client(Some(cfg.timeout));
    let url = format!(
        "{}{}",
        cfg.controller.trim_end_matches('/'),
        outflow_core::wire::routes::REPORTS
    );
    let mut backoff = Duration::ZERO;
    let mut failing = false;
    loop {
        let report = {
            let mut q = shared.lock();
            while q.reports.is_empty() && !q.closing {
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let Some(mut report) = q.reports.pop_front() else {
                return; // closing, nothing left
            };
            report.datapath.reports_dropped += std::mem::take(&mut q.untold_drops);
            report
        };
        let _span = info_span!(
            "report",
            node = %report.node,
            id = report.report_id.as_deref().unwrap_or("-"),
            window_end_ns = report.window_end_ns
        )
        .entered();
        match post(&agent, &url, cfg.token.current().as_deref(), &report) {
            Delivery::Accepted => {
                if failing {
                    info!("controller reachable again: delivering queued reports");
                }
                (failing, backoff) = (false, Duration::ZERO);
                shared.lock().delivered += 1;
                debug!("report delivered");
            }
            Delivery::Refused(why) => {
                error!(%why, "the controller refused a report: dropped");
                let mut q = shared.lock();
                q.untold_drops += 1 + report.datapath.reports_dropped;
                q.dropped += 1;
            }
            Delivery::Retry(why, after) => {
                if !failing {
                    warn!(%why, url = %url, "reports not delivered: queued and retried");
                }
                failing = true;
                let closing = {
                    let mut q = shared.lock();
                    q.reports.push_front(report);
                    q.closing
                };
                if closing {
                    return; // one attempt only while stopping
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
                // An overloaded controller says when to come back.
                backoff = backoff.max(after.unwrap_or_default().min(Duration::from_secs(60)));
                let q = shared.lock();
                let _ = shared
                    .wake
                    .wait_timeout_while(q, backoff, |q| !q.closing)
                    .map_err(|_| ());
            }
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, token: Option<&str>, report: &NodeReport) -> Delivery {
    let body = match serde_json::to_vec(report) {
        Ok(b) => b,
        Err(e) => return Delivery::Refused(format!("cannot encode the report: {e}")),
    };
    // JSON of reports compresses about tenfold; the fastest level costs little CPU.
    let body = match gzip(&body) {
        Ok(b) => b,
        Err(e) => return Delivery::Refused(format!("cannot compress the report: {e}")),
    };
    let req = http::authorized(agent.post(url), token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip");
    match req.send(&body[..]) {
        Err(e) => Delivery::Retry(e.to_string(), None),
        Ok(mut resp) => {
            let status = resp.status();
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs);
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            let why = format!("{status}: {}", text.trim());
            if status.is_success() {
                Delivery::Accepted
            } else if matches!(status.as_u16(), 401 | 403) {
                // Reachable, but not taking this agent's reports: its token, its node, or the
                // controller's RBAC. Queued still: a fixed token or role lets them through.
                Delivery::Retry(
                    format!("the controller does not take this agent's reports ({why})"),
                    after,
                )
            } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                Delivery::Retry(why, after)
            } else {
                Delivery::Refused(why)
            }
        }
    }
}

/// `data` gzip-compressed at the fastest level.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    enc.write_all(data)?;
    enc.finish()
}
