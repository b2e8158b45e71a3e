//! Pods known by their Kubernetes names, on the lab: `outflow up --kubeconfig` watches the
//! node's pods through the API replay server, is not ready until the pod list arrives, names
//! the lab pod's flows by namespace, pod, uid and workload, and when the pod is deleted and a new
//! one takes its address, each keeps its own flows. Destinations are named from the cluster's
//! Services, pods and Nodes, and the profile, which names only what the cluster cannot tell,
//! gets the pod ranges and the node and DNS addresses from the API. Needs root; in CI it must
//! run.

use std::time::Duration;

use outflow_tests::kube_api::{pod_like, ApiReplay};
use outflow_tests::{pod_run, privileged, root, Lab};
use serde_json::Value;

mod lab_up;

use lab_up::Up;

const NODE: &str = "aks-nodepool1-0";
/// The lab pod's address (tests/lab/lab.sh).
const POD_IP: &str = "10.244.1.10";

/// What this test asks of the node's API.
impl Up {
    /// The connection rows to the lab's web server whose source is the lab pod's address.
    fn web_rows(&self) -> Vec<Value> {
        let rows = self.get("connections?limit=1000");
        rows.as_array()
            .expect("array")
            .iter()
            .filter(|r| r["dst"] == "198.51.100.80" && r["src"] == POD_IP)
            .cloned()
            .collect()
    }

    /// Established connections to the web server attributed to `pod`.
    fn established(&self, pod: &str) -> u64 {
        self.web_rows()
            .iter()
            .filter(|r| r["pod"] == pod)
            .map(|r| r["outcomes"]["established"].as_u64().unwrap_or(0))
            .sum()
    }

    /// The lab pod's connection rows to `dst:port`.
    fn rows_to(&self, dst: &str, port: u16) -> Vec<Value> {
        let rows = self.get("connections?limit=1000");
        rows.as_array()
            .expect("array")
            .iter()
            .filter(|r| r["dst"] == dst && r["dst_port"] == port && r["src"] == POD_IP)
            .cloned()
            .collect()
    }

    fn listed(&self, pod: &str) -> Option<Value> {
        self.pods().into_iter().find(|p| p["pod"] == pod)
    }
}

fn fixture() -> std::path::PathBuf {
    root().join("tests/fixtures/kube/pods.json")
}

#[test]
fn pods_are_named_by_the_api_and_keep_their_flows_when_an_address_changes_hands() {
    if !privileged("pods_are_named_by_the_api_and_keep_their_flows_when_an_address_changes_hands") {
        return;
    }
    let prefix = format!("ofk{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let api = ApiReplay::start(&fixture());
    let first = "web-7d9f8c6b5-lab01";
    api.put(pod_like(
        &fixture(),
        "web-7d9f8c6b5-2hq4w",
        first,
        "0c1e7a52-5b8e-4c1e-9d0a-1ab2c3d4e501",
        POD_IP,
    ));
    // The API refuses the first lists: the agent must say so, not report pods as unknown.
    api.refuse_next(3);
    let dir = std::env::temp_dir().join(format!("{prefix}-kube"));
    std::fs::create_dir_all(&dir).expect("scratch");
    let kubeconfig = api.kubeconfig(&dir);
    // The cluster's Services, Nodes and EndpointSlices, and a node whose address is the lab's
    // node-subnet gateway, so traffic to it goes to a node by name.
    api.load(&root().join("tests/fixtures/kube/cluster.json"));
    api.put(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "aks-nodepool1-2"},
        "spec": {"podCIDRs": ["10.244.3.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.224.0.1"}]},
    }));
    // The profile as a ConfigMap holds it on AKS: only what the cluster cannot tell.
    let profile = dir.join("profile.yaml");
    std::fs::write(
        &profile,
        "peeredCIDRs: [10.10.0.0/16]\nonPremCIDRs: [192.168.0.0/16]\negress: { type: loadBalancer }\n",
    )
    .expect("profile");
    let up = Up::start_with_profile(
        &prefix,
        17893,
        &profile,
        &[
            "--node".as_ref(),
            NODE.as_ref(),
            "--kubeconfig".as_ref(),
            kubeconfig.as_os_str(),
            // Long enough that only a change of hands ends a window early.
            "--interval".as_ref(),
            "4s".as_ref(),
        ],
    );
    let not_ready = up.wait_ready();
    assert!(
        not_ready.contains(&503),
        "ready before the pod list arrived"
    );
    assert!(
        api.requests()
            .iter()
            .filter(|r| !r.contains("watch=true"))
            .count()
            >= 4,
        "the refused lists were retried: {:?}",
        api.requests()
    );

    // Listed by its API name, uid and workload.
    up.wait_for("the pod listed by its API name", |u| {
        u.listed(first).is_some()
    });
    let listed = up.listed(first).unwrap();
    assert_eq!(listed["namespace"], "shop", "{listed}");
    assert_eq!(listed["workload"], "deployment/web", "{listed}");
    assert_eq!(listed["uid"], "0c1e7a52-5b8e-4c1e-9d0a-1ab2c3d4e501");
    // A pod the API places on another node, or finished, is not this node's.
    let pods = up.pods();
    let names: Vec<&str> = pods.iter().filter_map(|p| p["pod"].as_str()).collect();
    assert!(!names.contains(&"web-7d9f8c6b5-9kd2s"), "{names:?}");
    assert!(!names.contains(&"report-29437260-q8z7r"), "{names:?}");

    for _ in 0..2 {
        pod_run(
            &prefix,
            &["curl", "-s", "-o", "/dev/null", "http://198.51.100.80/"],
        );
    }
    // The packets are read before the address changes hands.
    std::thread::sleep(Duration::from_millis(400));

    // A rollout: the pod goes, a new one is given its address, within one window.
    api.delete("shop", first);
    let second = "web-7d9f8c6b5-lab02";
    api.put(pod_like(
        &fixture(),
        "web-7d9f8c6b5-2hq4w",
        second,
        "0c1e7a52-5b8e-4c1e-9d0a-1ab2c3d4e502",
        POD_IP,
    ));
    // The new pod speaks within the same window: the agent must have ended the window when
    // the address changed hands, or the first pod's flows would be the second's.
    std::thread::sleep(Duration::from_millis(500));
    pod_run(
        &prefix,
        &["curl", "-s", "-o", "/dev/null", "http://198.51.100.80/"],
    );
    up.wait_for("both pods' connections", |u| {
        u.established(first) + u.established(second) >= 3
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(up.established(first), 2, "{:?}", up.web_rows());
    assert_eq!(up.established(second), 1, "{:?}", up.web_rows());
    for row in up.web_rows() {
        let uid = if row["pod"] == first { "e501" } else { "e502" };
        assert!(
            row["pod_uid"].as_str().is_some_and(|u| u.ends_with(uid)),
            "{row}"
        );
        assert_eq!(row["workload"], "deployment/web", "{row}");
        assert_eq!(row["namespace"], "shop", "{row}");
        assert_eq!(row["node"], NODE, "{row}");
    }
    up.wait_for("the deleted pod to leave the node's list", |u| {
        u.listed(first).is_none() && u.listed(second).is_some()
    });

    // The agent took in what the cluster tells before the traffic below.
    up.wait_for("the agent's profile filled from the cluster", |u| {
        u.get("health")["nodes"][0]["datapath"]["cluster_profile_ns"].is_u64()
    });
    let profile = up.get("cluster/profile");
    assert!(
        profile["pod_cidrs"]
            .as_array()
            .is_some_and(|c| c.iter().any(|n| n == "10.244.2.0/24")),
        "{profile}"
    );
    // A pod on another node by its Service name (resolved by the cluster DNS), and a node.
    for url in [
        "http://api.default.svc.cluster.local/",
        "http://10.224.0.1:81/",
    ] {
        pod_run(&prefix, &["curl", "-s", "-o", "/dev/null", "-m", "2", url]);
    }
    up.wait_for("the pod's connections to the cluster", |u| {
        !u.rows_to("10.244.2.20", 80).is_empty()
            && !u.rows_to("10.0.0.10", 53).is_empty()
            && !u.rows_to("10.224.0.1", 81).is_empty()
    });
    // Each is internal only because the cluster said so: the profile names no such range.
    for (dst, port, destination) in [
        (
            "10.244.2.20",
            80,
            "pod shop/web-7d9f8c6b5-9kd2s (deployment/web)",
        ),
        ("10.0.0.10", 53, "service kube-system/kube-dns"),
        ("10.224.0.1", 81, "node aks-nodepool1-2"),
    ] {
        for row in up.rows_to(dst, port) {
            assert_eq!(row["destination"], destination, "{row}");
            assert_eq!(row["category"], "internal", "{row}");
            assert_eq!(row["pod"], second, "{row}");
        }
    }
    let refused = &up.rows_to("10.224.0.1", 81)[0];
    assert_eq!(refused["outcomes"]["refused"], 1, "{refused}");
    // Public stays public.
    for row in up.web_rows() {
        assert_eq!(row["category"], "public", "{row}");
    }
}
