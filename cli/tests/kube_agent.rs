//! Pods known by their Kubernetes names, on the lab: `outflow up --kubeconfig` watches the
//! node's pods through the API replay server, is not ready until the pod list arrives, names
//! the lab pod's flows by namespace, pod, uid and workload, and when the pod is deleted and a new
//! one takes its address, each keeps its own flows. Needs root; in CI it must run.

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
    let up = Up::start(
        &prefix,
        17893,
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
}
