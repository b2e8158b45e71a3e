//! The cluster's own network, as the controller learns it from the Kubernetes API: the agent
//! adds it to its profile, so pod and service ranges need not be written into the ConfigMap.
//!
//! The controller keeps the one cluster-wide watch; agents ask it now and then (not the API
//! server: 5,000 agents each listing every Node would be a load of its own).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outflow_core::wire::cluster::ClusterProfile;
use outflow_core::wire::routes;
use tracing::{debug, info, warn};

use crate::http::{self, Token};

/// The latest cluster profile and a generation that changes with it.
#[derive(Debug, Default)]
pub struct ClusterProfileSlot {
    latest: Mutex<(u64, Option<ClusterProfile>)>,
}

impl ClusterProfileSlot {
    /// Keeps `profile`; the generation moves only when it differs from the one kept.
    pub fn set(&self, profile: ClusterProfile) {
        let mut l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if l.1.as_ref() != Some(&profile) {
            l.0 += 1;
            l.1 = Some(profile);
        }
    }

    /// The profile, when its generation is newer than `seen`.
    pub fn newer_than(&self, seen: u64) -> Option<(u64, ClusterProfile)> {
        let l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        match &l.1 {
            Some(p) if l.0 > seen => Some((l.0, p.clone())),
            _ => None,
        }
    }
}

/// How often the agent asks again once it has an answer (Nodes come and go; ranges seldom).
const REFRESH: Duration = Duration::from_secs(60);
/// How soon it asks again while the controller has not answered.
const RETRY: Duration = Duration::from_secs(5);
/// Failed asks before the agent warns.
const WARN_AFTER: u32 = 3;

/// Asks the controller at `controller` for the cluster profile until `stop`, keeping each
/// answer in `slot`.
pub fn spawn_fetcher(
    controller: String,
    token: Token,
    slot: Arc<ClusterProfileSlot>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cluster-profile".into())
        .spawn(move || {
            let client = http::client(Some(Duration::from_secs(10)));
            let url = format!("{controller}{}", routes::CLUSTER_PROFILE);
            let mut failures = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let wait = match fetch(&client, &url, &token) {
                    Ok(p) => {
                        slot.set(p);
                        REFRESH
                    }
                    Err(e) => {
                        let why = outflow_core::error_chain(&e);
                        failures += 1;
                        // The controller may still be starting: say so once it is a while.
                        if failures == WARN_AFTER {
                            warn!(reason = %why, "cluster profile not available yet; the profile file is used meanwhile");
                        } else {
                            debug!(reason = %why, "cluster profile not available");
                        }
                        RETRY
                    }
                };
                sleep_unless_stopped(wait, &stop);
            }
        })?;
    Ok(())
}

/// Why the controller gave no cluster profile.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// No answer at all.
    #[error("{url}: no answer from the controller (is it running, and is --controller right?)")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// The answer broke off.
    #[error("{url}: the controller's answer broke off")]
    Read {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// The controller refused or failed.
    #[error("{url}: the controller answered {status}: {body}")]
    Status {
        /// What was asked.
        url: String,
        /// Its status.
        status: ureq::http::StatusCode,
        /// Its message.
        body: String,
    },
    /// The answer is not a profile: a controller of another version, or not a controller.
    #[error("{url}: the answer is not a cluster profile (a controller of another version?)")]
    NotProfile {
        /// What was asked.
        url: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

fn fetch(client: &ureq::Agent, url: &str, token: &Token) -> Result<ClusterProfile, FetchError> {
    let req = http::authorized(client.get(url), token.current().as_deref());
    let url = url.to_string();
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(source) => return Err(FetchError::Unreachable { url, source }),
    };
    let status = resp.status();
    let body = match resp.body_mut().read_to_string() {
        Ok(b) => b,
        Err(source) => return Err(FetchError::Read { url, source }),
    };
    if !status.is_success() {
        let body = body.trim().to_string();
        return Err(FetchError::Status { url, status, body });
    }
    serde_json::from_str(&body).map_err(|source| FetchError::NotProfile { url, source })
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(200);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        slept += step;
    }
}

/// Logs what the cluster told, once per change.
pub fn log_applied(p: &ClusterProfile) {
    let list = |v: &[ipnet::IpNet]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    info!(
        pod_cidrs = %list(&p.pod_cidrs),
        service_cidrs = %list(&p.service_cidrs),
        cluster_dns = %p.cluster_dns.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
        cluster_domain = p.cluster_domain.as_deref().unwrap_or("(from the profile)"),
        "profile filled from the cluster"
    );
    for note in &p.notes {
        info!(note = %note, "the cluster did not tell");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_moves_only_on_change() {
        let slot = ClusterProfileSlot::default();
        assert!(slot.newer_than(0).is_none());
        let p = ClusterProfile {
            cluster_domain: Some("cluster.local".into()),
            ..ClusterProfile::default()
        };
        slot.set(p.clone());
        let (g, got) = slot.newer_than(0).expect("first profile");
        assert_eq!(got, p);
        slot.set(p.clone());
        assert!(
            slot.newer_than(g).is_none(),
            "the same profile again is no change"
        );
        slot.set(ClusterProfile::default());
        assert!(slot.newer_than(g).is_some());
    }

    /// A controller on a loopback port that gives `answer` to one request.
    fn answering(answer: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/p", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(answer.as_bytes());
        });
        url
    }

    #[test]
    fn a_failed_fetch_says_what_the_controller_answered() {
        let client = http::client(Some(Duration::from_secs(5)));
        let url = answering(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\nconnection: close\r\n\r\nstarting",
        );
        let e = fetch(&client, &url, &Token::None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{url}: the controller answered 503 Service Unavailable: starting")
        );

        let url = answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n42");
        let e = fetch(&client, &url, &Token::None).unwrap_err();
        let chain = outflow_core::error_chain(&e);
        assert!(
            chain.contains("not a cluster profile") && chain.contains("invalid type"),
            "the JSON error follows as the cause: {chain}"
        );
    }
}
