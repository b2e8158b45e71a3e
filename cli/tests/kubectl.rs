//! `kubectl outflow`: the binary run as the kubectl plugin `kubectl-outflow` reaches the
//! controller through the API server's service proxy (the API replay server forwards it as the
//! API server does, dropping `Authorization`), with the kubeconfig's credentials and the
//! controller's token from the Secret the controller made on its first start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod controller;

use base64::Engine;
use controller::{stderr, Controller};
use outflow_core::wire::{routes, DatapathStats, NodePod, NodeReport};
use outflow_tests::kube_api::ApiReplay;

const NODE: &str = "aks-nodepool1-0";
const POD: &str = "web-7d9f8c6b5-2hq4w";

/// A directory of the test's own (the tests run side by side).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outflow-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary as kubectl finds a plugin: `kubectl-outflow` on the PATH.
fn plugin(dir: &Path) -> PathBuf {
    let link = dir.join("kubectl-outflow");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_outflow"), &link).unwrap();
    link
}

fn kubectl_outflow(plugin: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(plugin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("OUTFLOW_CONTROLLER")
        .env_remove("OUTFLOW_TOKEN")
        .output()
        .expect("running kubectl-outflow")
}

fn token_of(api: &ApiReplay) -> String {
    let secret = api
        .secret("outflow", "outflow-token")
        .expect("the controller made its Secret");
    let b64 = secret["data"]["token"].as_str().expect("data.token");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    String::from_utf8(bytes).expect("text")
}

/// A controller in namespace `outflow` that keeps its token in the Secret `outflow-token`.
fn controller_with_secret(name: &str, kubeconfig: &Path) -> Controller {
    Controller::start_with(
        name,
        &[
            "--token-secret".as_ref(),
            "outflow-token".as_ref(),
            "--kubeconfig".as_ref(),
            kubeconfig.as_os_str(),
        ],
        &[("POD_NAMESPACE", "outflow")],
    )
}

/// What the node's agent would post: its pods, and the web pod's connections to the cluster DNS
/// Service, to another node's kubelet and to the internet.
fn post_report(c: &Controller, token: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let report = NodeReport {
        node: NODE.into(),
        report_id: None,
        window_start_ns: now - 1_000_000_000,
        window_end_ns: now,
        connections: [
            ("10.0.0.10", 53, "udp"),
            ("10.224.0.5", 10250, "tcp"),
            ("198.51.100.20", 443, "tcp"),
        ]
        .iter()
        .map(|(dst, port, proto)| {
            serde_json::from_value(serde_json::json!({
                "namespace": "shop", "pod": POD, "node": NODE,
                "window_start": "2026-12-07T06:00:00Z", "window_end": "2026-12-07T06:00:10Z",
                "src": "10.244.1.11", "dst": dst, "dst_port": port, "proto": proto,
                "category": "internal", "outcomes": {"established": 1},
                "syn_retransmissions": 0, "packets_out": 2, "packets_in": 2,
                "bytes_out": 120, "bytes_in": 240,
                "first_seen": "2026-12-07T06:00:01Z", "last_seen": "2026-12-07T06:00:02Z",
                // An agent cannot name destinations: the controller does.
                "destination": "service kube-system/trust-me"
            }))
            .expect("a connection record")
        })
        .collect(),
        dns: vec![],
        findings: vec![],
        capture: Default::default(),
        datapath: DatapathStats {
            kind: "ebpf".into(),
            interfaces: 1,
            ..DatapathStats::default()
        },
        pods: vec![NodePod {
            namespace: "shop".into(),
            pod: POD.into(),
            uid: Some("7b1f0a43-0c5e-4f7e-9a55-0d2a6c1e9f11".into()),
            workload: Some("deployment/web".into()),
            addresses: vec!["10.244.1.11".parse().unwrap()],
            ..Default::default()
        }],
    };
    let resp = ureq::post(format!("http://{}{}", c.addr, routes::REPORTS))
        .header("authorization", format!("Bearer {token}"))
        .send_json(&report)
        .expect("posting the report");
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[test]
fn kubectl_outflow_reaches_the_controller_through_the_api_servers_service_proxy() {
    let dir = scratch("kubectl");
    let api = ApiReplay::start(&outflow_tests::root().join("tests/fixtures/kube/pods.json"));
    api.load(&outflow_tests::root().join("tests/fixtures/kube/cluster.json"));
    let kubeconfig = api.kubeconfig(&dir);
    let c = controller_with_secret("kubectl", &kubeconfig);
    // Ready once the cluster's Services, EndpointSlices, Nodes and pods are listed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ureq::get(format!("http://{}/readyz", c.addr))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the controller never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The controller made its token and wants it.
    let token = token_of(&api);
    assert_eq!(token.len(), 64, "{token}");
    let bare = ureq::get(format!("http://{}{}", c.addr, routes::HEALTH)).call();
    assert!(
        matches!(bare, Err(ureq::Error::StatusCode(401))),
        "{bare:?}"
    );
    post_report(&c, &token);
    api.proxy(
        "outflow",
        "outflow-controller",
        &format!("http://{}", c.addr),
    );
    let plugin = plugin(&dir);

    let out = kubectl_outflow(&plugin, &kubeconfig, &["health", "-o", "wide"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let node = text
        .lines()
        .find(|l| l.starts_with(NODE))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        node.contains("ebpf") && node.contains("1 (0 idle)"),
        "{node}"
    );
    let pod = text
        .lines()
        .find(|l| l.starts_with(&format!("shop/{POD}")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        pod.contains("deployment/web") && pod.contains("10.244.1.11"),
        "{pod}"
    );
    // Destinations named from the cluster at ingest; the agent's own name was not taken.
    let out = kubectl_outflow(
        &plugin,
        &kubeconfig,
        &["connections", "-n", "shop", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let named = |dst: &str| {
        records
            .iter()
            .find(|r| r["dst"] == dst)
            .unwrap_or_else(|| panic!("{dst}: {records:?}"))
            .get("destination")
            .cloned()
    };
    assert_eq!(
        named("10.0.0.10"),
        Some("service kube-system/kube-dns".into())
    );
    assert_eq!(named("10.224.0.5"), Some("node aks-nodepool1-1".into()));
    assert_eq!(named("198.51.100.20"), None);
    let out = kubectl_outflow(&plugin, &kubeconfig, &["connections", "-n", "shop"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains("10.0.0.10:53/udp") && l.contains("service kube-system/kube-dns")),
        "{table}"
    );

    let requests = api.requests();
    assert!(
        requests.iter().any(|r| {
            r
            == "GET /api/v1/namespaces/outflow/services/outflow-controller:http/proxy/api/v1/health"
        }),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r == "GET /api/v1/namespaces/outflow/secrets/outflow-token"),
        "{requests:?}"
    );

    // kubectl's habits: the pod as a positional name with -n. No agent polls here, so the
    // capture waits for the node's agent until it is stopped.
    let file = dir.join("web.pcapng");
    let capture = Command::new(&plugin)
        .args(["capture", POD, "-n", "shop", "-c", "5", "-w"])
        .arg(&file)
        .arg("tcp port 443")
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("OUTFLOW_CONTROLLER")
        .env_remove("OUTFLOW_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl-outflow capture");
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let out = kubectl_outflow(&plugin, &kubeconfig, &["captures", "-o", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        if let Some(c) = v.as_array().and_then(|a| a.first()).cloned() {
            break c;
        }
        assert!(Instant::now() < deadline, "the capture was never listed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed["pod"], format!("shop/{POD}"), "{listed}");
    assert_eq!(listed["node"], NODE, "{listed}");
    assert_eq!(listed["filter"], "tcp port 443", "{listed}");
    let id = listed["id"].to_string();
    let out = kubectl_outflow(&plugin, &kubeconfig, &["captures", "stop", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = capture.wait_with_output().expect("capture ends");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped before it started"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Help speaks of the command as kubectl users type it.
    let out = kubectl_outflow(&plugin, &kubeconfig, &["--help"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Usage: kubectl outflow"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn without_the_right_to_read_the_token_the_controllers_refusal_says_what_is_missing() {
    let dir = scratch("kubectl-refused");
    let api = ApiReplay::start(&outflow_tests::root().join("tests/fixtures/kube/pods.json"));
    let kubeconfig = api.kubeconfig(&dir);
    let c = controller_with_secret("kubectl-refused", &kubeconfig);
    let _ = token_of(&api);
    api.proxy(
        "outflow",
        "outflow-controller",
        &format!("http://{}", c.addr),
    );
    let plugin = plugin(&dir);
    // RBAC refuses the Secret, not the proxy.
    api.refuse_next_matching(1, "GET /api/v1/namespaces/outflow/secrets/outflow-token");
    let out = kubectl_outflow(&plugin, &kubeconfig, &["health"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("401") && err.contains("outflow-token"),
        "{err}"
    );

    // A controller that is not installed: the API server's own words.
    let out = kubectl_outflow(
        &plugin,
        &kubeconfig,
        &["findings", "-n", "shop", "--outflow-namespace", "elsewhere"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("503") && err.contains("no endpoints"), "{err}");
}
