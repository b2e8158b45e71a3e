//! `outflow analyze` as a user runs it: files, standard input, bad input, exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn outflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outflow"))
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outflow-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A raw-IP (LINKTYPE_RAW) pcap holding TCP SYNs from 10.244.1.10 to 198.51.100.20:443, one per
/// second: nothing answers, so every attempt but the last is unanswered.
fn syn_capture(count: u32) -> Vec<u8> {
    let mut f = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
    ];
    for i in 0..count {
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 244, 1, 10, 198, 51, 100, 20,
        ];
        let port = (40000 + i as u16).to_be_bytes();
        ip.extend_from_slice(&[port[0], port[1], 1, 187]);
        ip.extend_from_slice(&(1000 + i).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&(1_700_000_000 + 4 * i).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        f.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        f.extend_from_slice(&ip);
    }
    f
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `outflow analyze FILE --json`, which must succeed, as JSON.
fn analyze_json(path: &std::path::Path) -> serde_json::Value {
    let out = outflow()
        .arg("analyze")
        .arg(path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

#[test]
fn unanswered_syns_are_reported_in_json() {
    let path = temp("syn.pcap", &syn_capture(3));
    let v = analyze_json(&path);
    let c = &v["connections"][0];
    assert_eq!(c["dst"], "198.51.100.20");
    assert_eq!(c["dst_port"], 443);
    assert_eq!(c["category"], "public");
    assert_eq!(c["outcomes"]["unanswered"], 2);
    assert_eq!(c["outcomes"]["incomplete"], 1);
    assert_eq!(v["findings"][0]["kind"], "syn_unanswered");
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let mut child = outflow()
        .args(["analyze", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&syn_capture(2))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(json(&out)["capture"]["packets"], 2);
}

#[test]
fn fail_on_error_exits_one_when_an_error_finding_exists() {
    let path = temp("fail.pcap", &syn_capture(3));
    let out = outflow()
        .arg("analyze")
        .arg(&path)
        .args(["--fail-on", "error"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FINDINGS"));
}

#[test]
fn truncated_capture_keeps_what_was_read_and_says_so() {
    let mut bytes = syn_capture(3);
    bytes.truncate(bytes.len() - 10);
    let path = temp("cut.pcap", &bytes);
    let out = outflow()
        .arg("analyze")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["capture"]["packets"], 2);
    assert!(v["capture"]["truncated_files"][0]
        .as_str()
        .unwrap()
        .ends_with("cut.pcap"));
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "capture_truncated"));
}

#[test]
fn a_capture_cut_before_its_first_packet_does_not_claim_an_analysis() {
    let mut bytes = syn_capture(1);
    bytes.truncate(24 + 20);
    let path = temp("cut-early.pcap", &bytes);
    let out = outflow()
        .arg("analyze")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["capture"]["packets"], 0);
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let message = findings[0]["message"].as_str().unwrap();
    assert!(
        message.contains("before its first whole packet"),
        "{message}"
    );
    assert!(!message.contains("analysed"), "{message}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut-early.pcap is cut off before"), "{err}");
    // Logs to a file or a pipe carry no terminal colour codes.
    assert!(!err.contains('\x1b'), "{err:?}");
}

#[test]
fn a_directory_is_named_once_with_what_to_give_instead() {
    let dir = std::env::temp_dir().join(format!("outflow-cli-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = outflow().arg("analyze").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is a directory"), "{err}");
    assert_eq!(err.matches("directory").count(), 1, "{err}");
    assert!(err.contains("*.pcap"), "{err}");
}

#[test]
fn a_file_that_is_not_a_capture_is_a_clear_error() {
    let path = temp("notes.txt", b"hello, this is not a capture\n");
    let out = outflow().arg("analyze").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng capture"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
}

#[test]
fn empty_and_missing_files_are_clear_errors() {
    let empty = temp("empty.pcap", b"");
    let out = outflow().arg("analyze").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    let out = outflow()
        .args(["analyze", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/x.pcap"));
}

#[test]
fn a_bad_profile_names_the_line() {
    let cap = temp("p.pcap", &syn_capture(1));
    let profile = temp(
        "profile.yaml",
        b"podCIDRs: [10.244.0.0/16]\nonPremCIDRs: [192.168.0/16]\n",
    );
    let out = outflow()
        .arg("analyze")
        .arg(&cap)
        .arg("--profile")
        .arg(&profile)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("not a CIDR"), "{err}");
}

#[test]
fn a_profile_decides_the_category() {
    let cap = temp("q.pcap", &syn_capture(1));
    let profile = temp("onprem.yaml", b"onPremCIDRs: [198.51.100.0/24]\n");
    let out = outflow()
        .arg("analyze")
        .arg(&cap)
        .arg("--profile")
        .arg(&profile)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(json(&out)["connections"][0]["category"], "onprem");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let path = temp("pipe.pcap", &syn_capture(50));
    let mut child = outflow()
        .arg("analyze")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_vxlan_underlay_capture_shows_the_pods_connections_and_the_nodes_between() {
    let fixture = outflow_tests::root().join("core/tests/fixtures/vxlan-underlay.pcap");
    let v = analyze_json(&fixture);
    let blackholed = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dst"] == "10.244.2.99")
        .expect("the blackholed connection");
    assert_eq!(blackholed["src"], "10.244.1.10");
    assert_eq!(blackholed["outcomes"]["unanswered"], 1);
    assert_eq!(
        blackholed["tunnel"],
        serde_json::json!({"kind": "vxlan", "outer_src": "10.224.0.4",
                           "outer_dst": "10.224.0.5", "id": 42, "depth": 1})
    );
    assert_eq!(v["capture"]["tunnelled"], 20);

    let out = outflow().arg("analyze").arg(&fixture).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("(20 IP, 20 of them from tunnels,"),
        "{table}"
    );
    let row = table
        .lines()
        .skip_while(|l| !l.starts_with("CONNECTIONS"))
        .find(|l| l.contains("10.244.2.99"))
        .unwrap_or_else(|| panic!("no row for 10.244.2.99 in {table}"));
    assert!(
        row.starts_with("10.244.1.10  vxlan 42 10.224.0.4→10.224.0.5  10.244.2.99"),
        "{row}"
    );
}
