//! The `outflow controller` binary binding agents to their nodes: with `--agent-auth
//! tokenreview` against the API replay server (the real kube client asking TokenReviews), and
//! with `--agent-tokens FILE` outside a cluster, a file changed while it runs included.

use std::path::Path;
use std::time::{Duration, Instant};

mod controller;

use controller::Controller;
use outflow_core::wire::{routes, NodeReport};
use outflow_tests::kube_api::{ApiReplay, PodToken};

const PEOPLE: &str = "people-token-0123456789abcdef";

/// Posts an empty report of `node` with `token`: the status and the error message.
fn post(c: &Controller, node: &str, token: &str) -> (u16, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let report = NodeReport::empty(node, (now - 1_000_000_000, now), "ebpf");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut resp = agent
        .post(format!("http://{}{}", c.addr, routes::REPORTS))
        .header("authorization", format!("Bearer {token}"))
        .send_json(&report)
        .expect("posting the report");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// A directory of the test's own (the tests run side by side).
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outflow-identity-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn people_token(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("people-token");
    std::fs::write(&file, PEOPLE).unwrap();
    file
}

#[test]
fn with_tokenreview_an_agent_pod_reports_as_its_node_only() {
    let dir = scratch("cli");
    let fixtures = outflow_tests::root().join("tests/fixtures/kube");
    let api = ApiReplay::start(&fixtures.join("pods.json"));
    api.load(&fixtures.join("cluster.json"));
    api.issue_pod_token(PodToken {
        token: "projected-token-of-agent-on-aks-nodepool1-0",
        service_account: ("outflow", "outflow-agent"),
        pod: "outflow-agent-4xk2p",
        node: Some("aks-nodepool1-0"),
        audiences: &["outflow"],
    });
    let kubeconfig = api.kubeconfig(&dir);
    let people = people_token(&dir);
    let c = Controller::start_with(
        "identity-review",
        &[
            "--token-file".as_ref(),
            people.as_os_str(),
            "--kubeconfig".as_ref(),
            kubeconfig.as_os_str(),
            "--agent-auth".as_ref(),
            "tokenreview".as_ref(),
        ],
        &[("POD_NAMESPACE", "outflow")],
    );
    let token = "projected-token-of-agent-on-aks-nodepool1-0";
    for _ in 0..5 {
        let (status, err) = post(&c, "aks-nodepool1-0", token);
        assert_eq!(status, 204, "{err}");
    }
    let (status, err) = post(&c, "aks-nodepool1-1", token);
    assert_eq!(status, 403, "{err}");
    assert!(
        err.contains("aks-nodepool1-0") && err.contains("aks-nodepool1-1"),
        "{err}"
    );
    assert_eq!(api.token_reviews(), 1, "one review for six reports");
    let (status, err) = post(&c, "aks-nodepool1-0", PEOPLE);
    assert_eq!(status, 403, "the shared token may not post: {err}");
    api.fail_token_reviews(1, 503);
    let (status, err) = post(&c, "aks-nodepool1-0", "a-token-never-seen-before");
    assert_eq!(status, 503, "{err}");
    let (status, _) = post(&c, "aks-nodepool1-0", "forged");
    assert_eq!(status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_agent_tokens_each_agent_reports_as_its_line_and_new_lines_count_at_once() {
    let dir = scratch("file");
    let file = dir.join("agents");
    std::fs::write(&file, "# node token\nnode-1 token-of-node-1-0123456789\n").unwrap();
    let people = people_token(&dir);
    let c = Controller::start_with(
        "identity-file",
        &[
            "--token-file".as_ref(),
            people.as_os_str(),
            "--agent-tokens".as_ref(),
            file.as_os_str(),
        ],
        &[],
    );
    assert_eq!(post(&c, "node-1", "token-of-node-1-0123456789").0, 204);
    let (status, err) = post(&c, "node-2", "token-of-node-1-0123456789");
    assert_eq!(status, 403, "{err}");
    assert_eq!(post(&c, "node-2", "token-of-node-2-0123456789").0, 401);
    std::fs::write(
        &file,
        "node-1 token-of-node-1-0123456789\nnode-2 token-of-node-2-0123456789\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(&c, "node-2", "token-of-node-2-0123456789").0 != 204 {
        assert!(Instant::now() < deadline, "the new line never counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_agent_tokens_file_stops_the_controller_naming_the_line() {
    let dir = scratch("bad");
    let file = dir.join("agents");
    std::fs::write(&file, "node-1 token-of-node-1-0123456789\nnode-2\n").unwrap();
    let out = controller::outflow(&[
        "controller",
        "--listen",
        "127.0.0.1:0",
        "--db",
        dir.join("db").to_str().unwrap(),
        "--agent-tokens",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = controller::stderr(&out);
    assert!(
        err.contains("line 2") && err.contains("NODE TOKEN"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
