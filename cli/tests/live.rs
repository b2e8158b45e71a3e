//! `outflow up` live on the lab: the agent in the lab's node namespace (`--node-netns`), real
//! curl and dig from the pod, and the API must report per pod, category and outcome what the lab
//! did. Both datapaths (eBPF attached as TCX and as clsact/netlink filters, and libpcap), the
//! fallback to libpcap when eBPF may not load, and two nodes — one behind `outflow agent`
//! whose controller is down at first — reporting into one controller. SIGTERM must detach and
//! leave nothing. Needs root; in CI it must run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outflow_tests::{pod_connect, pod_run, privileged, root, Lab};
use serde_json::Value;

struct Up {
    child: Child,
    api: String,
    netns: Option<String>,
}

/// `outflow up` on the lab's node, its API on this host.
fn up(prefix: &str, extra: &[&str], port: u16) -> Up {
    let db = std::env::temp_dir().join(format!("{prefix}-{port}.db"));
    let _ = std::fs::remove_file(&db);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outflow"));
    cmd.args(["up", "--node-netns", &format!("{prefix}-node")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--db")
        .arg(&db);
    Up::start(cmd, prefix, extra, port, None)
}

impl Up {
    /// Starts `cmd` (an outflow command) with the lab's common flags and waits for its API;
    /// `netns` is where the API listens when it is not this host's namespace.
    fn start(mut cmd: Command, prefix: &str, extra: &[&str], port: u16, netns: Option<&str>) -> Up {
        let child = cmd
            .args(["--iface-prefix", &format!("{prefix}-veth")])
            .args(["--interval", "1s"])
            .args(extra)
            .arg("--profile")
            .arg(root().join("examples/lab-profile.yaml"))
            .stdout(Stdio::null())
            .spawn()
            .expect("outflow starts");
        let up = Up {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1"),
            netns: netns.map(str::to_string),
        };
        up.wait_for(|| up.get("health").is_some(), "the API to answer");
        up
    }

    /// GETs an API path, from the namespace the API listens in.
    fn get(&self, path: &str) -> Option<Value> {
        let url = format!("{}/{path}", self.api);
        match &self.netns {
            None => get(&url),
            Some(ns) => {
                let out = Command::new("ip")
                    .args(["netns", "exec", ns, "curl", "-sf", &url])
                    .output()
                    .ok()?;
                serde_json::from_slice(&out.stdout).ok()
            }
        }
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
        self.wait_for_or(
            || {
                found = self.get(path).and_then(|v| {
                    v.as_array()
                        .and_then(|a| a.iter().find(|r| pred(r)).cloned())
                });
                found.is_some()
            },
            what,
            || format!("{path}: {:?}", self.get(path)),
        );
        found.expect("found")
    }

    fn stop(mut self) {
        terminate(&mut self.child, "outflow up");
    }
}

/// SIGTERM, then a clean exit within 10 s.
fn terminate(child: &mut Child, what: &str) {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success(),
                "{what} exits cleanly on SIGTERM: {status}"
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
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

/// Runs the lab's traffic from the pod and checks what the API says about it.
fn check_lab(up: &Up, prefix: &str, datapath: &str) {
    let pod = format!("default/{prefix}-pod-a");
    let q = |extra: &str| format!("connections?pod={pod}{extra}");
    pod_connect(prefix, 4, "http://198.51.100.20/");
    pod_connect(prefix, 2, "http://203.0.113.7/");
    pod_connect(prefix, 2, "http://192.168.50.5:8080/");
    pod_run(prefix, &["curl", "-s", "http://web.example.com/"]);
    pod_run(
        prefix,
        &["dig", "+search", "+time=2", "+tries=1", "nx.example.com"],
    );
    // From an address the pod holds on no interface that leads to the node (its loopback): no
    // inventory gives it the address, yet its packets came in through the pod's veth.
    pod_run(
        prefix,
        &["ip", "addr", "replace", "10.244.1.77/32", "dev", "lo"],
    );
    pod_run(
        prefix,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--connect-timeout",
            "2",
            "--interface",
            "10.244.1.77",
            "http://198.51.100.80/",
        ],
    );

    up.find(
        &q(""),
        "the pod's packets from an address it does not hold",
        |r| r["src"] == "10.244.1.77" && r["dst"] == "198.51.100.80",
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
    if datapath == "ebpf" {
        // The kernel counts every packet; libpcap sees control packets only.
        assert!(r["bytes_in"].as_u64().unwrap_or(0) > 0, "{r}");
    }
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
    let health = up.get("health").expect("health");
    let node = health["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == format!("{prefix}-node")))
        .expect("the node in health");
    assert_eq!(node["datapath"]["kind"], datapath, "{health}");
    assert_eq!(node["totals"]["event_drops"], 0, "{health}");
}

/// Nothing of the agent stays on the pod's interface.
fn check_clean(prefix: &str) {
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
    for (extra, port, kind) in [
        (["--datapath", "ebpf", "--tc-mode", "tcx"], 17_878, "ebpf"),
        (
            ["--datapath", "ebpf", "--tc-mode", "netlink"],
            17_879,
            "ebpf",
        ),
        (["--datapath", "pcap", "--tc-mode", "auto"], 17_880, "pcap"),
    ] {
        let up = up(&prefix, &extra, port);
        check_lab(&up, &prefix, kind);
        up.stop();
        check_clean(&prefix);
    }
}

/// Without CAP_BPF (nor CAP_SYS_ADMIN, which would stand in for it) eBPF cannot load: the agent
/// runs on libpcap, says why, and reports the same failures.
#[test]
fn without_bpf_privileges_the_agent_falls_back_to_libpcap_and_says_why() {
    if !privileged("without_bpf_privileges_the_agent_falls_back_to_libpcap_and_says_why") {
        return;
    }
    let prefix = format!("ofp{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let node = format!("{prefix}-node");
    let db = std::env::temp_dir().join(format!("{prefix}-fallback.db"));
    let _ = std::fs::remove_file(&db);
    // Dropping CAP_SYS_ADMIN also forbids entering a namespace, so the whole process starts in
    // the node's namespace instead of using --node-netns, and an inventory file names the pod.
    let inventory = std::env::temp_dir().join(format!("{prefix}-inventory.yaml"));
    std::fs::write(
        &inventory,
        format!("pods:\n- namespace: default\n  name: {prefix}-pod-a\n  ips: [10.244.1.10, fd00:244:1::10]\n"),
    )
    .expect("inventory file");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node, "setpriv"])
        .args(["--bounding-set", "-bpf,-sys_admin,-perfmon"])
        .args(["--inh-caps", "-bpf,-sys_admin,-perfmon", "--"])
        .arg(env!("CARGO_BIN_EXE_outflow"))
        .args(["up", "--node", &node, "--listen", "127.0.0.1:17881"])
        .arg("--inventory")
        .arg(&inventory)
        .arg("--db")
        .arg(&db);
    let up = Up::start(cmd, &prefix, &[], 17_881, Some(&node));
    check_lab(&up, &prefix, "pcap");
    let health = up.get("health").expect("health");
    let reason = health["nodes"][0]["datapath"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("cannot load the eBPF programs") && reason.contains("CAP_BPF"),
        "the reason names the failure and the fix: {health}"
    );
    up.stop();
}

/// Kills a child left running by a failed assertion.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Node B runs `outflow agent` and its pod fails while the controller is not there yet; node A
/// then starts `outflow up`, whose embedded controller must end up holding both nodes' records,
/// B's queued ones included.
#[test]
fn two_nodes_report_into_one_controller_and_a_late_controller_gets_the_queued_reports() {
    if !privileged(
        "two_nodes_report_into_one_controller_and_a_late_controller_gets_the_queued_reports",
    ) {
        return;
    }
    let id = std::process::id() % 10_000;
    let (a, b) = (format!("ofa{id}"), format!("ofb{id}"));
    let (_lab_a, _lab_b) = (Lab::up(&a), Lab::up(&b));
    let port = 17_882;
    let mut agent = Reaper(
        Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["agent", "--node-netns", &format!("{b}-node")])
            .args(["--controller", &format!("http://127.0.0.1:{port}")])
            .args(["--iface-prefix", &format!("{b}-veth"), "--interval", "1s"])
            .arg("--profile")
            .arg(root().join("examples/lab-profile.yaml"))
            .stdout(Stdio::null())
            .spawn()
            .expect("outflow agent starts"),
    );
    std::thread::sleep(Duration::from_millis(500));
    pod_connect(&b, 2, "http://198.51.100.20/");
    pod_run(
        &b,
        &["dig", "+search", "+time=2", "+tries=1", "nx.example.com"],
    );
    // The SYN timeout concludes the attempt a few windows later, still without a controller.
    std::thread::sleep(Duration::from_secs(4));
    let controller_up = outflow_core::report::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64,
    );
    let up = up(&a, &[], port);
    check_lab(&up, &a, "ebpf");
    let node_b = format!("{b}-node");
    let r = up.find(
        &format!("connections?node={node_b}&outcome=unanswered"),
        "node B's blackholed SYNs, queued while the controller was down",
        |r| r["dst"] == "198.51.100.20",
    );
    assert_eq!(r["pod"], format!("{b}-pod-a"), "{r}");
    assert!(
        r["window_end"].as_str().unwrap_or_default() < controller_up.as_str(),
        "made before the controller started ({controller_up}): {r}"
    );
    up.find(
        &format!("dns?node={node_b}&outcome=nxdomain"),
        "node B's failing lookup",
        |r| r["name"] == "nx.example.com",
    );
    let health = up.get("health").expect("health");
    let nodes: Vec<&str> = health["nodes"]
        .as_array()
        .map(|n| n.iter().filter_map(|n| n["node"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        nodes.contains(&format!("{a}-node").as_str()) && nodes.contains(&node_b.as_str()),
        "{health}"
    );
    terminate(&mut agent.0, "outflow agent");
    check_clean(&b);
    up.stop();
}

fn node_ip(prefix: &str, args: &[&str]) {
    let _ = Command::new("ip")
        .args(["-n", &format!("{prefix}-node")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Faults while live: a SYN flood from the pod overruns a 4 KiB ring buffer and the smallest
/// flow map, the pod sends a DNS message whose name is a compression loop, and pod interfaces
/// appear and vanish in a tight loop. The agent counts what it lost, stays up, and still
/// reports the next failure.
#[test]
fn floods_malformed_dns_and_vanishing_interfaces_are_counted_and_survived() {
    if !privileged("floods_malformed_dns_and_vanishing_interfaces_are_counted_and_survived") {
        return;
    }
    let prefix = format!("off{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let up = up(
        &prefix,
        &["--ring-size", "4KiB", "--flow-entries", "1024"],
        17_883,
    );
    let churn = {
        let prefix = prefix.clone();
        std::thread::spawn(move || {
            let (veth, peer) = (format!("{prefix}-veth-z"), format!("{prefix}-pz"));
            let start = Instant::now();
            let mut rounds = 0;
            while start.elapsed() < Duration::from_secs(3) {
                node_ip(
                    &prefix,
                    &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
                );
                node_ip(&prefix, &["link", "set", &veth, "up"]);
                if rounds % 2 == 0 {
                    // Sometimes at once, sometimes after the agent had time to attach.
                    std::thread::sleep(Duration::from_millis(30));
                }
                node_ip(&prefix, &["link", "del", &veth]);
                rounds += 1;
            }
            rounds
        })
    };
    pod_run(
        &prefix,
        &[
            "timeout",
            "3",
            "hping3",
            "-q",
            "-S",
            "-p",
            "8080",
            "--flood",
            "192.168.50.5",
        ],
    );
    // The flood's last events fill the 4 KiB ring for a moment after hping3 exits; a message
    // sent then would be one more counted drop.
    std::thread::sleep(Duration::from_secs(1));
    // Header (id 0x1234, one question) and a name that is a pointer to itself.
    pod_run(
        &prefix,
        &[
            "bash",
            "-c",
            r"printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01' > /dev/udp/10.0.0.10/53",
        ],
    );
    let rounds = churn.join().expect("churn thread");
    assert!(rounds > 10, "the interfaces came and went {rounds} times");
    let node = format!("{prefix}-node");
    up.wait_for_or(
        || {
            let h = up.get("health").unwrap_or_default();
            let t = &h["nodes"][0]["totals"];
            let positive = |k: &str| t[k].as_u64().unwrap_or(0) > 0;
            positive("event_drops") && positive("flows_evicted") && positive("dns_malformed")
        },
        "the ring-buffer drops, map evictions and the malformed DNS message to be counted",
        || format!("{:?}", up.get("health")),
    );
    // Still working: a new refused connection is reported, and the vanished interfaces are gone.
    pod_connect(&prefix, 2, "http://192.168.50.5:8081/");
    let r = up.find(
        &format!("connections?node={node}&outcome=refused"),
        "a refused connection after the faults",
        |r| r["dst_port"] == 8081,
    );
    assert_eq!(r["pod"], format!("{prefix}-pod-a"), "{r}");
    up.wait_for(
        || up.get("health").unwrap_or_default()["nodes"][0]["datapath"]["interfaces"] == 1,
        "the agent to watch the pod's interface alone",
    );
    up.stop();
    check_clean(&prefix);
}
