//! `outflow up` live on the lab: the agent in the lab's node namespace (`--node-netns`), real
//! curl and dig from the pod, and the API must report per pod, category and outcome what the lab
//! did. Both ways of attaching (TCX and clsact/netlink); SIGTERM must detach and leave nothing.
//! Needs root; in CI it must run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outflow_tests::{privileged, root, Lab};
use serde_json::Value;

struct Up {
    child: Child,
    api: String,
}

impl Up {
    fn start(prefix: &str, tc_mode: &str, port: u16) -> Up {
        let db = std::env::temp_dir().join(format!("{prefix}-{tc_mode}.db"));
        let _ = std::fs::remove_file(&db);
        let child = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["up", "--node-netns", &format!("{prefix}-node")])
            .args(["--iface-prefix", &format!("{prefix}-veth")])
            .args(["--interval", "1s", "--tc-mode", tc_mode])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(&db)
            .arg("--profile")
            .arg(root().join("examples/lab-profile.yaml"))
            .stdout(Stdio::null())
            .spawn()
            .expect("outflow up starts");
        let up = Up {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1"),
        };
        up.wait_for(
            || get(&format!("{}/health", up.api)).is_some(),
            "the API to answer",
        );
        up
    }

    fn wait_for(&self, ok: impl FnMut() -> bool, what: &str) {
        self.wait_for_or(ok, what, String::new)
    }

    fn wait_for_or(&self, mut ok: impl FnMut() -> bool, what: &str, seen: impl Fn() -> String) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("gave up waiting for {what}; the API had: {}", seen());
    }

    /// Rows of an endpoint matching a predicate, waiting until there is one.
    fn find(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let url = format!("{}/{path}", self.api);
        self.wait_for_or(
            || {
                found = get(&url).and_then(|v| {
                    v.as_array()
                        .and_then(|a| a.iter().find(|r| pred(r)).cloned())
                });
                found.is_some()
            },
            what,
            || format!("{url}: {:?}", get(&url)),
        );
        found.expect("found")
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "outflow up exits cleanly on SIGTERM: {status}"
                );
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "outflow up did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str) -> Option<Value> {
    let mut resp = ureq::get(url).call().ok()?;
    serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
}

fn pod_run(prefix: &str, args: &[&str]) {
    let _ = Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-pod-a")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What `tc ARGS` prints in the lab's node namespace.
fn node_tc(prefix: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-node"), "tc"])
        .args(args)
        .output()
        .expect("tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn outcome(r: &Value, key: &str) -> u64 {
    r["outcomes"][key].as_u64().unwrap_or(0)
}

fn check_mode(prefix: &str, tc_mode: &str, port: u16) {
    let up = Up::start(prefix, tc_mode, port);
    let pod = format!("default/{prefix}-pod-a");
    let q = |extra: &str| format!("connections?pod={pod}{extra}");
    pod_run(
        prefix,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "4",
            "http://198.51.100.20/",
        ],
    );
    pod_run(
        prefix,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "2",
            "http://203.0.113.7/",
        ],
    );
    pod_run(
        prefix,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "2",
            "http://192.168.50.5:8080/",
        ],
    );
    pod_run(prefix, &["curl", "-s", "http://web.example.com/"]);
    pod_run(
        prefix,
        &["dig", "+search", "+time=2", "+tries=1", "nx.example.com"],
    );

    let r = up.find(&q("&outcome=unanswered"), "the blackholed SYNs", |r| {
        r["dst"] == "198.51.100.20"
    });
    assert_eq!(r["category"], "public", "{r}");
    assert_eq!(r["node"], format!("{prefix}-node"));
    assert!(
        outcome(&r, "unanswered") >= 1 && r["window_start"].is_string(),
        "{r}"
    );
    let r = up.find(&q("&outcome=unreachable"), "the prohibited route", |r| {
        r["dst"] == "203.0.113.7"
    });
    assert!(
        r["unreachable_codes"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "{r}"
    );
    let r = up.find(&q("&category=onprem"), "the refused on-prem port", |r| {
        r["dst"] == "192.168.50.5" && outcome(r, "refused") >= 1
    });
    assert_eq!(r["dst_port"], 8080);
    let r = up.find(&q("&outcome=established"), "the web server", |r| {
        r["names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == "web.example.com"))
    });
    assert_eq!(r["category"], "public");
    let r = up.find(
        &format!("dns?pod={pod}&outcome=nxdomain"),
        "the failing lookup",
        |r| r["name"] == "nx.example.com",
    );
    assert!(
        r["expansions"].as_u64().unwrap_or(0) >= 1,
        "search expansions folded: {r}"
    );
    up.find(
        &format!("findings?pod={pod}"),
        "a finding on the blackhole",
        |r| {
            r["kind"] == "syn_unanswered"
                && r["target"]
                    .as_str()
                    .is_some_and(|t| t.contains("198.51.100.20"))
        },
    );
    let health = get(&format!("{}/health", up.api)).expect("health");
    let dp = &health["nodes"][0]["datapath"];
    assert_eq!(dp["kind"], "ebpf", "{health}");
    assert_eq!(dp["event_drops"], 0, "{health}");
    up.stop();
    let veth = format!("{prefix}-veth-a");
    assert!(
        node_tc(prefix, &["filter", "show", "dev", &veth, "ingress"])
            .trim()
            .is_empty(),
        "no filter left behind"
    );
    assert!(
        !node_tc(prefix, &["qdisc", "show", "dev", &veth]).contains("clsact"),
        "no qdisc left behind"
    );
}

#[test]
fn outflow_up_reports_the_lab_pods_failures_per_pod_category_and_outcome() {
    if !privileged("outflow_up_reports_the_lab_pods_failures_per_pod_category_and_outcome") {
        return;
    }
    let prefix = format!("ofl{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    check_mode(&prefix, "tcx", 17_878);
    check_mode(&prefix, "netlink", 17_879);
}
