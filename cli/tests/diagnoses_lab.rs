//! The diagnoses proven on real traffic: a lab of two nodes (tests/lab/cluster.sh) with pods of
//! the shop and pay namespaces, a cluster DNS forwarding to an upstream resolver and a router
//! hosting the public names. Faults are switched on one at a time; each must yield its
//! diagnosis, with the right scope and evidence, and no other; a healthy run yields none.
//!
//! Rollups are minute buckets, so every scenario gets a controller with a store of its own and
//! agents of its own (agents queue what they could not deliver). Needs root; in CI it must run.
//!
//! While blackhole-one's controller and agents are up, the page at `/` is checked in chromium
//! over them, and a capture is started from its diagnosis's button (the `lab_page` module).

mod chromium;
mod controller;
mod lab_page;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controller::Controller;
use outflow_tests::{privileged, root, Lab};
use serde_json::Value;

const NODES: [&str; 2] = ["node-a", "node-b"];
/// How often the agents report.
const INTERVAL: Duration = Duration::from_secs(1);
/// The engine's DNS timeout (5 s, longer than its SYN timeout) and a report to carry what it
/// decided: the least to wait after the traffic before the diagnoses can be complete.
const SETTLE: Duration = Duration::from_secs(7);

/// The inventory file of node `a` or `b`, written under the lab's state directory.
fn inventory(lab: &Lab, node: &str) -> PathBuf {
    let out = lab
        .command(&["inventory", node])
        .output()
        .expect("running cluster.sh inventory");
    assert!(out.status.success(), "cluster.sh inventory failed");
    let path = PathBuf::from(format!("/tmp/{}-lab/inventory-{node}.yaml", lab.prefix()));
    std::fs::write(&path, out.stdout).expect("writing the inventory");
    path
}

/// An agent, stopped with SIGTERM (so it detaches) when dropped.
struct Agent(Child);

impl Agent {
    fn start(lab: &Lab, node: &str, controller: &Controller, log: &str) -> Agent {
        let x = node.trim_start_matches("node-");
        let log = std::fs::File::create(format!("/tmp/{}-lab/agent-{x}-{log}.log", lab.prefix()))
            .expect("agent log file");
        let child = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args([
                "agent",
                "--node-netns",
                &format!("{}-node-{x}", lab.prefix()),
            ])
            .args(["--node", node])
            .args(["--controller", &format!("http://{}", controller.addr)])
            .arg("--inventory")
            .arg(inventory(lab, x))
            .args(["--interval", &format!("{}s", INTERVAL.as_secs())])
            .args(["--iface-prefix", &format!("{}-v", lab.prefix())])
            .arg("--profile")
            .arg(root().join("examples/lab-profile.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("outflow agent starts");
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(c: &Controller, path: &str) -> Option<Value> {
    let mut resp = ureq::get(&format!("http://{}/api/v1/{path}", c.addr))
        .call()
        .ok()?;
    serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
}

/// Waits until both nodes have reported with every pod of theirs on an interface.
fn wait_for_nodes(c: &Controller) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = get(c, "health").unwrap_or_default();
        let ready = NODES.iter().all(|name| {
            health["nodes"].as_array().is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["node"] == *name
                        && n["pods"].as_array().is_some_and(|pods| {
                            !pods.is_empty()
                                && pods.iter().all(|p| {
                                    p["interfaces"].as_array().is_some_and(|i| !i.is_empty())
                                })
                        })
                })
            })
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never reported with their pods attached: {health:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What makes two answers the same diagnoses (times move on).
fn shape(diagnoses: &[Value]) -> Vec<String> {
    diagnoses
        .iter()
        .map(|d| format!("{} {} {}", d["kind"], d["scope"], d["evidence"]["counts"]))
        .collect()
}

/// The diagnoses once the reports covering the traffic are in: at least [`SETTLE`] after it,
/// then unchanged over three report intervals.
fn settled_diagnoses(c: &Controller) -> Vec<Value> {
    std::thread::sleep(SETTLE);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let mut same = 0;
    loop {
        let d = get(c, "diagnoses?since=600")
            .and_then(|v| v["diagnoses"].as_array().cloned())
            .expect("GET /api/v1/diagnoses answers");
        let s = shape(&d);
        if last.as_ref() == Some(&s) {
            same += 1;
        } else {
            same = 0;
        }
        if same >= 3 || Instant::now() > deadline {
            return d;
        }
        last = Some(s);
        std::thread::sleep(INTERVAL);
    }
}

/// A scenario's settled diagnoses, with its controller and agents still up.
struct Run {
    diagnoses: Vec<Value>,
    /// Stopped before the controller, so they deliver what they hold.
    _agents: Vec<Agent>,
    controller: Controller,
}

/// Runs one scenario with a fresh controller and agents.
fn scenario(lab: &Lab, name: &str) -> Run {
    let t0 = Instant::now();
    assert!(lab.run(&["scenario", name]), "cluster.sh scenario {name}");
    let c = Controller::start(&format!("{}-{name}", lab.prefix()));
    let agents: Vec<Agent> = NODES
        .iter()
        .map(|n| Agent::start(lab, n, &c, name))
        .collect();
    wait_for_nodes(&c);
    assert!(lab.run(&["traffic"]), "cluster.sh traffic");
    let d = settled_diagnoses(&c);
    eprintln!(
        "scenario {name}: {} diagnoses in {:.1} s",
        d.len(),
        t0.elapsed().as_secs_f64()
    );
    Run {
        diagnoses: d,
        _agents: agents,
        controller: c,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A property a scenario's diagnosis must have: what it says, and the test of it.
type Check = (&'static str, fn(&Value) -> bool);

fn has_shop_and_pay(d: &Value) -> bool {
    let ns = strings(&d["scope"]["namespaces"]);
    ns.contains(&"shop".to_string()) && ns.contains(&"pay".to_string())
}

fn has_both_nodes(d: &Value) -> bool {
    strings(&d["scope"]["nodes"]) == NODES
}

/// Each fault: its scenario, the kind of its one diagnosis, and what that diagnosis must say.
const FAULTS: [(&str, &str, &[Check]); 5] = [
    (
        "upstream-dead",
        "dns-upstream-down",
        &[
            ("names the upstream 10.99.0.53", |d| {
                format!("{} {}", d["summary"], d["fault"]).contains("10.99.0.53")
            }),
            ("shop and pay in scope", has_shop_and_pay),
            ("both nodes in scope", has_both_nodes),
            // The DNS pod's node sees the other node's queries only going into the DNS pod.
            ("every source a pod", |d| {
                !strings(&d["scope"]["namespaces"]).contains(&"(unknown)".to_string())
            }),
        ],
    ),
    (
        "blackhole-one",
        "destination",
        &[
            ("the cdn destination", |d| {
                let dests = strings(&d["scope"]["destinations"]).join(" ");
                dests.contains("198.51.100.11") || dests.contains("cdn.example.com")
            }),
            ("unanswered in the counts", |d| {
                d["evidence"]["counts"]["unanswered"].as_u64() > Some(0)
            }),
            ("shop and pay in scope", has_shop_and_pay),
            ("both nodes in scope", has_both_nodes),
        ],
    ),
    (
        "node-egress",
        "node",
        &[("node-a alone", |d| {
            strings(&d["scope"]["nodes"]) == ["node-a"]
        })],
    ),
    (
        "namespace-blocked",
        "network-policy",
        &[("shop alone", |d| {
            strings(&d["scope"]["namespaces"]) == ["shop"]
        })],
    ),
    (
        "refusing",
        "destination",
        &[("says refused", |d| {
            d["summary"].as_str().is_some_and(|t| t.contains("refused"))
        })],
    ),
];

#[test]
fn each_fault_of_a_two_node_lab_yields_its_one_diagnosis_and_a_healthy_run_none() {
    if !privileged("each_fault_of_a_two_node_lab_yields_its_one_diagnosis_and_a_healthy_run_none") {
        return;
    }
    let page = outflow_tests::required(
        "each_fault_of_a_two_node_lab_yields_its_one_diagnosis_and_a_healthy_run_none (the page)",
        "chromium and chromium-driver (cargo xtask setup)",
        chromium::driver_installed(),
    );
    let lab = Lab::up_from("cluster.sh", &format!("odl{}", std::process::id() % 1000));
    let d = scenario(&lab, "healthy").diagnoses;
    assert!(
        d.is_empty(),
        "healthy: no diagnosis, got {:#}",
        Value::from(d)
    );
    for (name, kind, checks) in FAULTS {
        let run = scenario(&lab, name);
        let all = &run.diagnoses;
        assert!(
            all.len() == 1 && all[0]["kind"] == kind,
            "{name}: expected exactly one {kind} diagnosis, got {:#}",
            Value::from(all.clone())
        );
        for (what, ok) in checks {
            assert!(ok(&all[0]), "{name}: {what}: {:#}", all[0]);
        }
        if name == "blackhole-one" && page {
            lab_page::check_blackhole_one(&lab, &run.controller, &all[0]);
        }
    }
}
