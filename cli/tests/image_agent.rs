//! The agent from the image, with exactly the DaemonSet's privileges: `outflow agent` runs from
//! the unpacked image (`cargo xtask image`) on a read-only root, with CAP_BPF, CAP_PERFMON,
//! CAP_NET_ADMIN and CAP_NET_RAW only and no_new_privs, in the lab node's network namespace
//! (host network), with pods from the API replay server. It must attach eBPF and name the lab
//! pod's traffic by the API's names; without CAP_NET_ADMIN it must fall back to libpcap and say
//! why. Needs root and the image; in CI it must run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use outflow_tests::kube_api::{pod_like, ApiReplay};
use outflow_tests::netns::in_netns;
use outflow_tests::{pod_connect, pod_run, privileged, root, Lab};
use serde_json::Value;

mod lab_up;

use lab_up::Up;

const NODE: &str = "aks-nodepool1-0";
/// The lab pod's address (tests/lab/lab.sh).
const POD_IP: &str = "10.244.1.10";
const POD: &str = "web-7d9f8c6b5-img01";
const CONTROLLER_PORT: u16 = 17894;
const PROBE_PORT: u16 = 17895;
const PROBE_PORT_NO_NET_ADMIN: u16 = 17896;

/// The DaemonSet's capabilities: (number, capsh name).
const DAEMONSET_CAPS: [(u32, &str); 4] = [
    (12, "cap_net_admin"),
    (13, "cap_net_raw"),
    (38, "cap_perfmon"),
    (39, "cap_bpf"),
];

/// The unpacked image's root filesystem, or None (a loud skip) when it or a tool is missing
/// outside CI; in CI a missing piece fails the test.
fn image_rootfs(test: &str) -> Option<PathBuf> {
    let rootfs = root().join("target/image/bundle/rootfs");
    let mut missing = Vec::new();
    if !rootfs.join("usr/local/bin/outflow").is_file() {
        missing.push(format!(
            "the unpacked image {} (run `cargo xtask image --debug`)",
            rootfs.display()
        ));
    }
    for tool in ["capsh", "unshare", "ip", "curl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("{tool} (cargo xtask setup)"));
        }
    }
    if missing.is_empty() {
        return Some(rootfs);
    }
    outflow_tests::required(test, &missing.join(", "), false);
    None
}

/// The capability mask of a set of (number, name) capabilities, as /proc/PID/status prints it.
fn mask(caps: &[(u32, &str)]) -> String {
    format!("{:016x}", caps.iter().fold(0u64, |m, (n, _)| m | 1 << n))
}

/// Starts `outflow ARGS` from the image in the lab's node namespace with only `caps`; its log
/// goes to `log`.
fn start_in_image(
    rootfs: &Path,
    conf: &Path,
    node_netns: &str,
    caps: &[(u32, &str)],
    log: &Path,
    args: &[&str],
) -> std::process::Child {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .expect("a number");
    let drop: Vec<String> = (0..=last)
        .filter(|n| !caps.iter().any(|(c, _)| c == n))
        .map(|n| n.to_string())
        .collect();
    let keep: Vec<&str> = caps.iter().map(|(_, name)| *name).collect();
    Command::new("ip")
        .args(["netns", "exec", node_netns])
        .arg(root().join("tests/lab/image_run.sh"))
        .arg(rootfs)
        .arg(conf)
        .arg(drop.join(","))
        .arg(keep.join(","))
        .arg("/usr/local/bin/outflow")
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("agent log"))
        .spawn()
        .expect("image_run.sh starts")
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Asserts the agent's own view of its privileges and root: the capability sets are `caps`,
/// no_new_privs is set, and `/` is the image's root filesystem, mounted read-only.
fn assert_confined(pid: u32, rootfs: &Path, caps: &[(u32, &str)]) {
    for field in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status_field(pid, field), mask(caps), "{field} of the agent");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let seen_root = std::fs::read_link(format!("/proc/{pid}/root")).expect("root link");
    assert_eq!(seen_root, rootfs, "the agent's root is the image's");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    // Fields: id, parent, dev, root, mount point, options, ...; the last mount on / wins.
    let root_options = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"/")).then(|| f[5].to_string())
        })
        .next_back()
        .expect("a mount on / in the agent's view");
    assert!(
        root_options.split(',').any(|o| o == "ro"),
        "the agent's root is mounted {root_options}, not read-only"
    );
}

/// The node's datapath as the controller's health has it.
fn datapath(controller: &Up) -> Value {
    controller.get("health")["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == NODE).cloned())
        .map(|n| n["datapath"].clone())
        .unwrap_or(Value::Null)
}

/// The pod's attempts to `dst:port` with `outcome`, summed over the controller's records.
fn attempts(controller: &Up, dst: &str, port: u16, outcome: &str) -> u64 {
    controller
        .get("connections?limit=1000")
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["src"] == POD_IP && r["dst"] == dst && r["dst_port"] == port)
        .map(|r| {
            assert_eq!(r["pod"], POD, "{r}");
            assert_eq!(r["namespace"], "shop", "{r}");
            assert_eq!(r["workload"], "deployment/web", "{r}");
            assert_eq!(r["node"], NODE, "{r}");
            r["outcomes"][outcome].as_u64().unwrap_or(0)
        })
        .sum()
}

#[test]
fn the_image_agent_attaches_ebpf_and_names_pods_with_the_daemonsets_capabilities_only() {
    let test = "the_image_agent_attaches_ebpf_and_names_pods_with_the_daemonsets_capabilities_only";
    if !privileged(test) {
        return;
    }
    let Some(rootfs) = image_rootfs(test) else {
        return;
    };
    let prefix = format!("ofi{}", std::process::id() % 10_000);
    let node_netns = format!("{prefix}-node");
    let _lab = Lab::up(&prefix);
    let fixture = root().join("tests/fixtures/kube/pods.json");

    // The API server, reachable from the node's network as in a cluster.
    let api = in_netns(&node_netns, || ApiReplay::start(&fixture));
    api.put(pod_like(
        &fixture,
        "web-7d9f8c6b5-2hq4w",
        POD,
        "0c1e7a52-5b8e-4c1e-9d0a-1ab2c3d4e5f1",
        POD_IP,
    ));
    // What a ConfigMap would bring: the kubeconfig, mounted read-only into the container.
    let conf = std::env::temp_dir().join(format!("{prefix}-image-conf"));
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(&conf).expect("scratch");
    api.kubeconfig(&conf);

    let db = std::env::temp_dir().join(format!("{prefix}-image.db"));
    let _ = std::fs::remove_file(&db);
    let controller = Up::in_netns(
        Command::new("ip")
            .args(["netns", "exec", &node_netns])
            .arg(env!("CARGO_BIN_EXE_outflow"))
            .args(["controller", "--listen"])
            .arg(format!("127.0.0.1:{CONTROLLER_PORT}"))
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("outflow controller starts"),
        CONTROLLER_PORT,
        &node_netns,
    );
    // `outflow agent` as the DaemonSet runs it, with `caps`, its probes on `probe`.
    let start_agent = |caps: &[(u32, &str)], probe: u16, log: &Path| {
        let controller_url = format!("http://127.0.0.1:{CONTROLLER_PORT}");
        let iface_prefix = format!("{prefix}-veth");
        let probe_listen = format!("127.0.0.1:{probe}");
        let args = [
            "agent",
            "--controller",
            &controller_url,
            "--node",
            NODE,
            "--kubeconfig",
            "/tmp/conf/kubeconfig",
            "--iface-prefix",
            &iface_prefix,
            "--probe-listen",
            &probe_listen,
            "--interval",
            "1s",
        ];
        Up::in_netns(
            start_in_image(&rootfs, &conf, &node_netns, caps, log, &args),
            probe,
            &node_netns,
        )
    };

    // The DaemonSet's securityContext.
    let log = std::env::temp_dir().join(format!("{prefix}-image-agent.log"));
    let agent = start_agent(&DAEMONSET_CAPS, PROBE_PORT, &log);
    agent.wait_ready();
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_confined(agent.pid(), &rootfs, &DAEMONSET_CAPS);
    controller.wait_for("the agent's first report", |c| !datapath(c).is_null());
    let dp = datapath(&controller);
    assert_eq!(dp["kind"], "ebpf", "{dp}\n{}", agent_log());
    assert_eq!(dp["attach_errors"], 0, "{dp}");

    for _ in 0..2 {
        pod_run(
            &prefix,
            &["curl", "-s", "-o", "/dev/null", "http://198.51.100.80/"],
        );
    }
    // On-prem, nothing listens: answered by RST.
    pod_connect(&prefix, 2, "http://192.168.50.5:8080/");
    controller.wait_for("the pod's connections, named by the API", |c| {
        attempts(c, "198.51.100.80", 80, "established") >= 2
            && attempts(c, "192.168.50.5", 8080, "refused") >= 1
    });
    assert_eq!(attempts(&controller, "198.51.100.80", 80, "established"), 2);
    assert_eq!(attempts(&controller, "192.168.50.5", 8080, "refused"), 1);
    drop(agent);

    // Without CAP_NET_ADMIN the kernel refuses to load TC programs: the agent falls back to
    // libpcap (CAP_NET_RAW), says why, and still names the pod's traffic.
    let without: Vec<(u32, &str)> = DAEMONSET_CAPS
        .into_iter()
        .filter(|(_, name)| *name != "cap_net_admin")
        .collect();
    let log = std::env::temp_dir().join(format!("{prefix}-image-agent-no-net-admin.log"));
    let agent = start_agent(&without, PROBE_PORT_NO_NET_ADMIN, &log);
    agent.wait_ready();
    assert_confined(agent.pid(), &rootfs, &without);
    controller.wait_for("the fallback datapath in the node's health", |c| {
        datapath(c)["kind"] == "pcap"
    });
    let dp = datapath(&controller);
    let reason = dp["reason"].as_str().unwrap_or_default();
    for words in [
        "cannot load the eBPF programs",
        "Operation not permitted",
        "CAP_NET_ADMIN",
    ] {
        assert!(reason.contains(words), "reason {reason:?} lacks {words:?}");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("falling back to libpcap") && text.contains("CAP_NET_ADMIN"),
        "the agent's log says why it fell back:\n{text}"
    );
    pod_connect(&prefix, 2, "http://192.168.50.5:8080/");
    controller.wait_for("the refused connection seen by libpcap", |c| {
        attempts(c, "192.168.50.5", 8080, "refused") >= 2
    });
    drop(agent);
    drop(controller);
    let _ = std::fs::remove_dir_all(&conf);
    let _ = std::fs::remove_file(&db);
}
