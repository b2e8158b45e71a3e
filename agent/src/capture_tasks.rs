//! The agent's side of captures on demand: it long-polls the controller for its node's captures,
//! runs each on the pod's interfaces, streams the pcapng up while it runs, watches for a stop,
//! and reports how it ended.
//!
//! Each capture runs on threads of its own (the capture, the upload), so a slow controller
//! slows that upload alone: the capture writes into a pipe, and when the pipe is full libpcap's
//! buffer fills and the kernel drops (counted in the file's statistics) — memory never grows.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outflow_core::wire::captures::{CaptureInfo as Task, CaptureResult, CaptureState};
use outflow_core::wire::routes;
use tracing::{info, info_span, warn};

use crate::capture::{self, Limits, Request};
use crate::http::{authorized, client};
use crate::netns;

/// Where the controller is and what this node allows.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The controller's base URL.
    pub controller: String,
    /// Its token.
    pub token: crate::http::Token,
    /// This node's name.
    pub node: String,
    /// The namespace playing the node, if any.
    pub node_netns: Option<String>,
    /// Where pods are known from.
    pub pods: crate::inventory::PodSource,
    /// The cluster's name, for the files' section headers.
    pub cluster: Option<String>,
    /// The agent's capture limits.
    pub limits: Limits,
    /// Most captures at once.
    pub max_concurrent: usize,
}

/// Starts the poller thread; it ends when `stop` is set (within one long poll).
pub fn spawn(
    cfg: TaskConfig,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("capture-tasks".into())
        .spawn(move || poll_tasks(&cfg, &stop))
}

fn poll_tasks(cfg: &TaskConfig, stop: &AtomicBool) {
    let http = client(Some(Duration::from_secs(15)));
    let url = format!(
        "{}{}",
        cfg.controller.trim_end_matches('/'),
        routes::AGENT_CAPTURES
    );
    let running = Arc::new(AtomicUsize::new(0));
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let req = authorized(http.get(&url), cfg.token.current().as_deref())
            .query("node", &cfg.node)
            .query("wait", "5");
        let tasks: Result<Vec<Task>, String> =
            req.call().map_err(|e| e.to_string()).and_then(|mut r| {
                if !r.status().is_success() {
                    return Err(format!("{}", r.status()));
                }
                r.body_mut().read_json().map_err(|e| e.to_string())
            });
        match tasks {
            Ok(tasks) => {
                failing = false;
                for t in tasks {
                    if running.load(Ordering::Relaxed) >= cfg.max_concurrent {
                        report(
                            cfg,
                            t.id,
                            0,
                            0,
                            "",
                            Some(format!(
                                "node {} already runs {} captures, its limit",
                                cfg.node, cfg.max_concurrent
                            )),
                        );
                        continue;
                    }
                    running.fetch_add(1, Ordering::Relaxed);
                    let (cfg, running) = (cfg.clone(), running.clone());
                    let started = std::thread::Builder::new()
                        .name(format!("capture-{}", t.id))
                        .spawn(move || {
                            run_task(&cfg, &t);
                            running.fetch_sub(1, Ordering::Relaxed);
                        });
                    if let Err(e) = started {
                        warn!(error = %e, "cannot start a capture thread");
                    }
                }
            }
            // A request cut short by the agent's own shutdown is not worth a warning.
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot fetch capture tasks from the controller; retrying");
                }
                failing = true;
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
}

fn report(cfg: &TaskConfig, id: u64, packets: u64, drops: u64, ended: &str, error: Option<String>) {
    let url = format!(
        "{}{}",
        cfg.controller.trim_end_matches('/'),
        routes::capture_result(id)
    );
    let body = CaptureResult {
        packets,
        kernel_drops: drops,
        ended: ended.to_string(),
        error,
    };
    if let Err(e) = authorized(
        client(Some(Duration::from_secs(10))).post(&url),
        cfg.token.current().as_deref(),
    )
    .send_json(&body)
    {
        warn!(id, error = %e, "cannot report a capture's end");
    }
}

/// Runs one capture. This thread and the upload stay in the agent's own namespace, where the
/// controller is reachable; only the capture thread enters the node's.
fn run_task(cfg: &TaskConfig, t: &Task) {
    let pod = t.spec.pod.as_deref().unwrap_or("-");
    let _span = info_span!("capture", id = t.id, node = %cfg.node, pod).entered();
    info!(filter = %t.spec.filter, "capture starting");
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return report(cfg, t.id, 0, 0, "", Some(format!("pipe: {e}"))),
    };
    let base = cfg.controller.trim_end_matches('/').to_string();
    let upload = {
        let (url, token) = (
            format!("{base}{}", routes::capture_pcapng(t.id)),
            cfg.token.current(),
        );
        std::thread::spawn(move || {
            let body = ureq::SendBody::from_owned_reader(reader);
            authorized(client(None).put(&url), token.as_deref())
                .header("content-type", "application/x-pcapng")
                .send(body)
                .map(|r| r.status())
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let capture = {
        let (cfg, t, stop) = (cfg.clone(), t.clone(), stop.clone());
        std::thread::spawn(move || -> Result<capture::Summary, String> {
            if let Some(ns) = &cfg.node_netns {
                netns::enter(ns).map_err(|e| format!("cannot enter the node namespace: {e}"))?;
            }
            let req = Request {
                targets: capture::targets(
                    t.spec.pod.as_deref(),
                    t.spec.interface.as_deref(),
                    &cfg.node,
                    &cfg.pods,
                )?,
                filter: t.spec.filter.clone(),
                snaplen: t.spec.snaplen,
                max_packets: t.spec.count,
                duration: t.spec.duration_s.map(Duration::from_secs),
                max_bytes: None,
                node: cfg.node.clone(),
                comment: format!(
                    "{}; capture {}",
                    capture::describe(
                        cfg.cluster.as_deref(),
                        &cfg.node,
                        t.spec.pod.as_deref(),
                        &t.spec.filter
                    ),
                    t.id
                ),
                annotate: t.spec.annotate,
            };
            // The writer moves in and is closed at the end: the upload sees the end of the file.
            capture::run(&req, &cfg.limits, writer, &stop)
                .map_err(|e| outflow_core::error_chain(&e))
        })
    };
    let http = client(Some(Duration::from_secs(5)));
    let url = format!("{base}{}", routes::capture(t.id));
    while !capture.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        let state = authorized(http.get(&url), cfg.token.current().as_deref())
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Task>().ok());
        if state.is_some_and(|s| matches!(s.state, CaptureState::Stopping | CaptureState::Done)) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let result = capture
        .join()
        .unwrap_or_else(|_| Err("the capture thread panicked".to_string()));
    let uploaded = upload.join();
    match result {
        Ok(s) => {
            info!(id = t.id, packets = s.packets, ended = %s.ended, "capture ended");
            if !matches!(uploaded, Ok(Ok(status)) if status.is_success()) {
                warn!(id = t.id, "the capture's upload did not complete");
            }
            report(
                cfg,
                t.id,
                s.packets,
                s.kernel_drops,
                &s.ended.to_string(),
                None,
            );
        }
        Err(e) => report(cfg, t.id, 0, 0, "", Some(e)),
    }
}
