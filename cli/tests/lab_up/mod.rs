//! `outflow up` on a lab's node, for the tests that drive it: started with the lab's interface
//! prefix and profile, a database of its own and a loopback port, and killed when the test ends
//! however it ends. Or any outflow process whose API listens inside a lab's node
//! (`Up::in_netns`), queried from there.

#![allow(dead_code)] // each test uses the part it needs

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outflow_tests::netns::in_netns;
use outflow_tests::root;
use serde_json::Value;

pub struct Up {
    child: Child,
    pub url: String,
    /// The network namespace the API listens in, when not the test's own.
    netns: Option<String>,
}

impl Up {
    /// Starts `outflow up` in `PREFIX-node` on `127.0.0.1:PORT`, with `extra` flags after the
    /// lab's own.
    pub fn start(prefix: &str, port: u16, extra: &[&std::ffi::OsStr]) -> Up {
        Up::start_with_profile(
            prefix,
            port,
            &root().join("examples/lab-profile.yaml"),
            extra,
        )
    }

    /// As [`Up::start`], with the network profile `profile` instead of the lab's.
    pub fn start_with_profile(
        prefix: &str,
        port: u16,
        profile: &std::path::Path,
        extra: &[&std::ffi::OsStr],
    ) -> Up {
        let db = std::env::temp_dir().join(format!("{prefix}-{port}.db"));
        let _ = std::fs::remove_file(&db);
        let child = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["up", "--node-netns", &format!("{prefix}-node")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--iface-prefix", &format!("{prefix}-veth")])
            .arg("--db")
            .arg(&db)
            .arg("--profile")
            .arg(profile)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("outflow up starts");
        Up {
            child,
            url: format!("http://127.0.0.1:{port}"),
            netns: None,
        }
    }

    /// A process started by the test whose API (or probes) listen on `127.0.0.1:PORT` inside
    /// the network namespace `netns`.
    pub fn in_netns(child: Child, port: u16, netns: &str) -> Up {
        Up {
            child,
            url: format!("http://127.0.0.1:{port}"),
            netns: Some(netns.to_string()),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a request where the API listens.
    fn http<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            Some(ns) => in_netns(ns, f),
            None => f(),
        }
    }

    /// `/readyz`'s status, or None while nothing listens.
    pub fn readyz(&self) -> Option<u16> {
        self.http(|| match ureq::get(format!("{}/readyz", self.url)).call() {
            Ok(_) => Some(200),
            Err(ureq::Error::StatusCode(code)) => Some(code),
            Err(_) => None,
        })
    }

    /// Polls `/readyz` until it answers 200; returns the answers before it (503s, if any).
    pub fn wait_ready(&self) -> Vec<u16> {
        let start = Instant::now();
        let mut before = Vec::new();
        loop {
            match self.readyz() {
                Some(200) => return before,
                Some(code) => before.push(code),
                None => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "outflow up never became ready; answers so far {before:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `GET /api/v1/PATH` as JSON.
    pub fn get(&self, path: &str) -> Value {
        self.http(|| {
            let mut resp = ureq::get(format!("{}/api/v1/{path}", self.url))
                .call()
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("JSON")
        })
    }

    /// Waits until `f` holds of the API, or fails saying `what`.
    pub fn wait_for(&self, what: &str, f: impl Fn(&Up) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pods the node's last report listed.
    pub fn pods(&self) -> Vec<Value> {
        let h = self.get("health");
        h["nodes"][0]["pods"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
