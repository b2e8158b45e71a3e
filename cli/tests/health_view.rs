//! `outflow health` on a real controller: the nodes, the flow matrix and the diagnoses of what
//! an agent posted (the lab capture's records), as a table and as JSON.

mod controller;

use controller::{outflow, post_lab_window, stderr, stdout_of, Controller};

/// The diagnosis block whose first line has `kind` and whose summary names `what`.
fn diagnosis<'a>(text: &'a str, kind: &str, what: &str) -> &'a str {
    text.split("\n\n")
        .find(|b| {
            b.lines()
                .any(|l| l.contains(&format!("ACTIVE {kind} since")))
                && b.contains(what)
        })
        .unwrap_or_else(|| panic!("no active {kind} diagnosis of {what}:\n{text}"))
}

#[test]
fn health_shows_the_matrix_and_the_diagnoses_of_the_lab_window() {
    let c = Controller::start("health-view");
    post_lab_window(&c);
    let addr = c.addr.to_string();
    let text = stdout_of(&["health", "--controller", &addr]);
    // Not a terminal: no colour escapes.
    assert!(!text.contains('\x1b'), "{text}");
    let flows = text
        .split("FLOWS over the last 15m by namespace")
        .nth(1)
        .expect("the matrix");
    let mut lines = flows.lines().skip(1);
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "INTERNAL", "PEERED", "ONPREM", "PUBLIC"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("default "), "{row}");
    // The lab pod's public attempts: 6 of 19 failed (unanswered, ICMP-rejected, …); all
    // internal ones worked; its one on-prem attempt was refused.
    assert!(
        row.contains("ok 6") && row.contains("100% 1/1") && row.contains("32% 6/19"),
        "{row}"
    );

    let refused = diagnosis(
        &text,
        "destination",
        "192.168.50.5:8080 (onprem) is refused (RST)",
    );
    assert!(refused.contains("pods default/shop-web"), "{refused}");
    assert!(
        refused.contains("capture: outflow capture --pod default/shop-web -c 1000 -w default_shop-web.pcapng 'host 192.168.50.5 and tcp port 8080'"),
        "{refused}"
    );
    let icmp = diagnosis(
        &text,
        "destination",
        "203.0.113.7:80 (public) is rejected with ICMP admin-prohibited from 10.244.1.1",
    );
    assert!(
        icmp.contains("next: from a debug pod: curl -v telnet://203.0.113.7:80"),
        "{icmp}"
    );
    diagnosis(
        &text,
        "destination",
        "198.51.100.20:80 (public) goes unanswered",
    );
    diagnosis(&text, "dns-name-missing", "nx.example.com does not exist");
    diagnosis(&text, "dns-upstream-error", "servfail.dead.example");

    let json = stdout_of(&[
        "health",
        "--controller",
        &addr,
        "-o",
        "json",
        "--by",
        "workload",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["nodes"][0]["node"], "node-1");
    assert_eq!(v["view"]["by"], "workload");
    assert_eq!(v["view"]["rows"][0]["workload"], "pod/shop-web");
    let kinds: Vec<&str> = v["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "destination").count(),
        3,
        "{kinds:?}"
    );

    // Another namespace: nothing of it, and so no diagnosis.
    let other = stdout_of(&["health", "--controller", &addr, "-n", "prod"]);
    assert!(
        other.contains("no traffic in the range") && other.contains("no diagnosis"),
        "{other}"
    );

    let out = outflow(&["health", "--controller", &addr, "--by", "pod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("namespace, workload"),
        "{}",
        stderr(&out)
    );
}
