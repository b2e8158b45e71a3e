//! Ready means ready, on the lab: `/readyz` turns 200 only once the datapath watches the pods'
//! interfaces and the controller knows the node's pods, so traffic made the instant it answers
//! is in the records, a pod that has not spoken yet can be captured, and a pod that appears
//! mid-run is listed, captured and recorded from its attach on. Needs root; in CI it must run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outflow_tests::{analyze, lab_profile, pod_run, privileged, Lab};

mod lab_up;

use lab_up::Up;

/// What these tests ask of the node's API.
impl Up {
    /// Connection attempts of a pod to a destination that ended as `outcome`, over all windows.
    fn attempts(&self, pod: &str, dst: &str, outcome: &str) -> u64 {
        let rows = self.get(&format!("connections?pod=default/{pod}&limit=1000"));
        rows.as_array()
            .expect("array")
            .iter()
            .filter(|r| r["dst"] == dst)
            .map(|r| r["outcomes"][outcome].as_u64().unwrap_or(0))
            .sum()
    }

    /// `outflow capture --pod default/POD -c COUNT -w FILE` through this controller, returned
    /// once the agent runs it (it starts on the agent's next poll).
    fn capture(&self, pod: &str, count: u32, file: &std::path::Path) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["capture", "--controller", &self.url])
            .args(["--pod", &format!("default/{pod}")])
            .args(["-c", &count.to_string(), "--duration", "20s", "-w"])
            .arg(file)
            .arg("tcp port 80")
            .stderr(Stdio::piped())
            .spawn()
            .expect("outflow capture");
        self.wait_for("the capture to run", |u| capture_running(u) > 0);
        // libpcap's handle opens as the agent marks it running.
        std::thread::sleep(Duration::from_millis(300));
        child
    }
}

/// Waits for a capture command and returns its stderr; fails if it failed.
fn finished(child: Child, what: &str) {
    let out = child.wait_with_output().expect("capture ends");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn curl_from(netns: &str, url: &str) {
    let _ = Command::new("ip")
        .args(["netns", "exec", netns, "curl", "-s", "-o", "/dev/null"])
        .args(["--connect-timeout", "2", url])
        .status();
}

#[test]
fn traffic_made_the_instant_readyz_answers_is_in_the_records() {
    if !privileged("traffic_made_the_instant_readyz_answers_is_in_the_records") {
        return;
    }
    let prefix = format!("ofr{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let up = Up::start(&prefix, 17891, &["--interval".as_ref(), "1s".as_ref()]);
    let saw_not_ready = up.wait_ready().contains(&503);
    for _ in 0..5 {
        pod_run(
            &prefix,
            &["curl", "-s", "-o", "/dev/null", "http://198.51.100.80/"],
        );
    }
    pod_run(
        &prefix,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "2",
            "http://192.168.50.5:8080/",
        ],
    );
    let pod = format!("{prefix}-pod-a");
    up.wait_for("the connections made right after ready", |u| {
        u.attempts(&pod, "198.51.100.80", "established") >= 5
            && u.attempts(&pod, "192.168.50.5", "refused") >= 1
    });
    assert_eq!(up.attempts(&pod, "198.51.100.80", "established"), 5);
    assert_eq!(up.attempts(&pod, "192.168.50.5", "refused"), 1);

    // The node's pod list names the pod, its address and when its interface was attached.
    let pods = up.pods();
    let me = pods
        .iter()
        .find(|p| p["pod"] == pod.as_str())
        .unwrap_or_else(|| panic!("pod listed: {pods:?}"));
    assert!(
        me["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "10.244.1.10"),
        "{me}"
    );
    assert_eq!(me["interfaces"][0]["name"], format!("{prefix}-veth-a"));
    assert!(me["interfaces"][0]["attached_ns"].is_u64(), "{me}");
    eprintln!("a 503 came before the 200: {saw_not_ready}");
}

/// A second pod, added to the lab's node after `outflow up` started; removed when dropped.
struct LatePod {
    netns: String,
}

impl LatePod {
    fn add(prefix: &str) -> LatePod {
        let pod = LatePod {
            netns: format!("{prefix}-pod-b"),
        };
        let node = format!("{prefix}-node");
        let veth = format!("{prefix}-veth-b");
        let steps: [&[&str]; 8] = [
            &["netns", "add", &pod.netns],
            &[
                "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &pod.netns,
            ],
            &["-n", &node, "link", "set", &veth, "master", "br0", "up"],
            &[
                "-n",
                &pod.netns,
                "addr",
                "add",
                "10.244.1.11/24",
                "dev",
                "eth0",
            ],
            &["-n", &pod.netns, "link", "set", "eth0", "up"],
            &["-n", &pod.netns, "link", "set", "lo", "up"],
            &[
                "-n",
                &pod.netns,
                "route",
                "add",
                "default",
                "via",
                "10.244.1.1",
            ],
            &["-n", &node, "link", "show", &veth],
        ];
        for args in steps {
            let ok = Command::new("ip").args(args).status().expect("ip");
            assert!(ok.success(), "ip {args:?}");
        }
        pod
    }
}

impl Drop for LatePod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn a_silent_pod_is_captured_and_a_late_pod_is_covered_from_its_attach() {
    if !privileged("a_silent_pod_is_captured_and_a_late_pod_is_covered_from_its_attach") {
        return;
    }
    let prefix = format!("ofs{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let up = Up::start(&prefix, 17892, &["--interval".as_ref(), "1s".as_ref()]);
    up.wait_ready();
    let dir = std::env::temp_dir();

    // The pod has sent nothing yet: the controller knows its node from the first report.
    let pod_a = format!("{prefix}-pod-a");
    let file_a = dir.join(format!("{prefix}-silent.pcapng"));
    let capture = up.capture(&pod_a, 6, &file_a);
    pod_run(
        &prefix,
        &["curl", "-s", "-o", "/dev/null", "http://198.51.100.80/"],
    );
    finished(capture, "capture of a pod that had not spoken");
    let r = analyze(std::slice::from_ref(&file_a), &lab_profile());
    let c = outflow_tests::conn(&r, "198.51.100.80", 80, "tcp");
    assert_eq!(outflow_tests::count(&c.outcomes, "established"), 1, "{c:?}");

    // A pod that appears mid-run: listed with its attach time, then captured and recorded.
    let late = LatePod::add(&prefix);
    let pod_b = format!("{prefix}-pod-b");
    up.wait_for("the late pod to be listed as attached", |u| {
        u.pods()
            .iter()
            .any(|p| p["pod"] == pod_b.as_str() && p["interfaces"][0]["attached_ns"].is_u64())
    });
    let file_b = dir.join(format!("{prefix}-late.pcapng"));
    let capture = up.capture(&pod_b, 6, &file_b);
    for _ in 0..3 {
        curl_from(&late.netns, "http://198.51.100.80/");
    }
    finished(capture, "capture of the late pod");
    let r = analyze(std::slice::from_ref(&file_b), &lab_profile());
    let c = outflow_tests::conn(&r, "198.51.100.80", 80, "tcp");
    assert!(c.src.to_string() == "10.244.1.11", "{c:?}");
    up.wait_for("the late pod's connections in the records", |u| {
        u.attempts(&pod_b, "198.51.100.80", "established") >= 3
    });
    assert_eq!(up.attempts(&pod_b, "198.51.100.80", "established"), 3);
    // Its first connection came after it was listed, so no flow went to nobody.
    let rows = up.get("connections?limit=1000");
    let unowned = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["src"] == "10.244.1.11" && r.get("pod").is_none())
        .count();
    assert_eq!(unowned, 0, "{rows}");
}

/// Captures the controller lists as running.
fn capture_running(up: &Up) -> usize {
    up.get("captures")
        .as_array()
        .map(|a| a.iter().filter(|c| c["state"] == "running").count())
        .unwrap_or(0)
}
