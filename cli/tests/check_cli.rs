//! `outflow check` as a user runs it: bad input exits 2 with a message before anything is sent,
//! `--pod` says it needs the controller path, and on the check lab (root) the table and the
//! JSON tell the same verdict.

use std::process::{Command, Output};

use outflow_tests::{privileged, Lab};

fn outflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outflow"))
        .arg("check")
        .args(args)
        .output()
        .expect("running outflow")
}

fn fails_saying(args: &[&str], text: &str) {
    let out = outflow(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(text), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    fails_saying(&["--netns", "x", "ftp://a"], "scheme \"ftp\"");
    fails_saying(&["--netns", "x", "a:0"], "1 to 65535");
    fails_saying(&["--netns", "x", "a;reboot"], "not a DNS name");
    fails_saying(&["--netns", "x", "--timeout", "30s", "a"], "100ms to 10s");
    fails_saying(&["--netns", "x", "--timeout", "soon", "a"], "soon");
    fails_saying(
        &["--netns", "../etc", "a"],
        "not a name from `ip netns list`",
    );
    fails_saying(&["web.example.com"], "--netns NAME");
    fails_saying(&["--netns", "outflow-no-such-ns", "a"], "does not exist");
}

#[test]
fn a_pod_needs_the_controller_path_and_says_how_to_check_meanwhile() {
    fails_saying(&["--pod", "shop/web", "a"], "checking pod shop/web");
    fails_saying(&["web", "-n", "shop", "a"], "checking pod shop/web");
    fails_saying(&["web", "a"], "--netns NETNS a");
}

#[test]
fn on_the_lab_table_and_json_tell_the_same_verdict() {
    if !privileged("on_the_lab_table_and_json_tell_the_same_verdict") {
        return;
    }
    let prefix = format!("ofj{}", std::process::id() % 10_000);
    let lab = Lab::up_from("check.sh", &prefix);
    let p = lab.prefix();
    let (pod, node) = (format!("{p}-pod-b"), format!("{p}-node"));
    let base = [
        "--netns",
        &pod,
        "--node-netns",
        &node,
        "--upstream",
        "10.1.0.53",
        "--timeout",
        "1s",
    ];
    let json = outflow(&[&base[..], &["-o", "json", "web.example.com:80"]].concat());
    assert_eq!(json.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(v["verdict"]["kind"], "network_policy", "{v:#}");
    assert_eq!(v["pod"]["connects"][0]["outcome"], "unanswered");
    assert_eq!(v["node"]["connects"][0]["outcome"], "established");
    assert_eq!(v["node"]["http"]["status"], 200);
    assert_eq!(v["pod"]["resolver"]["queries"].as_array().unwrap().len(), 4);

    let table = outflow(&[&base[..], &["web.example.com:80"]].concat());
    assert_eq!(table.status.code(), Some(0));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("target http://web.example.com/\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "verdict: the node reaches web.example.com:80, the pod does not → network policy"
        ),
        "{text}"
    );
    assert!(text.contains("TCP 198.51.100.80:80"), "{text}");
    drop(lab);
}
