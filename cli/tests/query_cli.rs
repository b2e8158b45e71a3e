//! The commands that talk to a controller as a user types them: one pod grammar, checked values,
//! one output flag, one grammar of durations and sizes, a controller address with or without its
//! scheme, and captures whose output is checked before they start, listed and stopped.

use std::process::Command;
use std::time::{Duration, Instant};

use outflow_core::query::RecordKind;

mod controller;

use controller::{outflow, outflow_command, stderr, Controller};

/// Nothing listens on port 9 of loopback here, so a command that got as far as a request would
/// say "cannot reach": the refusals below must come before that.
const NOWHERE: &str = "127.0.0.1:9";

#[test]
fn bad_filter_values_exit_2_naming_the_value_before_any_request() {
    for (args, words) in [
        (
            vec!["connections", "--outcome", "bogus"],
            "established, refused",
        ),
        (
            vec!["findings", "--outcome", "unanswered"],
            "error, warning, info",
        ),
        (vec!["dns", "--outcome", "established"], "nxdomain"),
        (
            vec!["dns", "--category", "public"],
            "no destination category",
        ),
        (vec!["connections", "--category", "galactic"], "internal"),
        (vec!["connections", "--pod", "a/b/c"], "NAMESPACE/NAME"),
        (vec!["capture", "--pod", "a/b/c"], "NAMESPACE/NAME"),
        (vec!["findings", "-o", "yaml"], "table"),
        (vec!["connections", "--since", "3x"], "is not a duration"),
        (
            vec!["capture", "--duration", "soon", "--pod", "web"],
            "30s, 1500ms",
        ),
        (vec!["capture", "-s", "lots", "--pod", "web"], "-s"),
        (vec!["agent", "--ring-size", "big"], "is not a size"),
    ] {
        let mut full = args.clone();
        full.extend(["--controller", NOWHERE]);
        let out = outflow(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("cannot reach"), "{args:?} was sent: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed data");
    }
}

#[test]
fn each_query_command_takes_its_own_records_outcomes_at_parse_time() {
    // clap's own refusal, naming every value the API takes for those records and nothing else.
    for (command, kind, other) in [
        ("connections", RecordKind::Connection, "nxdomain"),
        ("dns", RecordKind::Dns, "established"),
        ("findings", RecordKind::Finding, "unanswered"),
    ] {
        let out = outflow(&[command, "--outcome", other, "--controller", NOWHERE]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains(&format!(
                "invalid value '{other}' for '--outcome <OUTCOME>'"
            )),
            "{command}: {err}"
        );
        let values = format!("[possible values: {}]", kind.outcomes().join(", "));
        assert!(err.contains(&values), "{command}: {err}");
        let help = outflow(&[command, "--help"]);
        assert!(
            String::from_utf8_lossy(&help.stdout).contains(&values),
            "{command} --help names its outcomes"
        );
    }
    let out = outflow(&["dns", "--category", "public", "--controller", NOWHERE]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'public' for '--category <CATEGORY>': DNS lookups have no"),
        "{err}"
    );
    let help = outflow(&["dns", "--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("--category"));
}

#[test]
fn bad_durations_and_sizes_exit_2_with_the_grammar() {
    for (args, words) in [
        (
            vec!["controller", "--capture-budget", "10q"],
            "64KiB, 10MiB",
        ),
        (vec!["controller", "--retention", "forever"], "2h"),
        (
            vec!["analyze", "--syn-timeout", "3x", "f.pcap"],
            "is not a duration",
        ),
        (
            vec!["analyze", "--dns-timeout=-1", "f.pcap"],
            "is not a duration",
        ),
    ] {
        let out = outflow(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

#[test]
fn a_controller_address_without_a_scheme_is_reached_over_http() {
    let c = Controller::start("scheme");
    let addr = c.addr.to_string();
    for output in [&["-o", "json"][..], &["--json"], &["--output", "json"]] {
        let mut args = vec!["connections", "--controller", &addr];
        args.extend(output);
        let out = outflow(&args);
        assert_eq!(out.status.code(), Some(0), "{output:?}: {}", stderr(&out));
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(body, serde_json::json!([]), "{output:?}");
    }
    let out = outflow(&["findings", "--controller", &addr, "--outcome", "error"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "FINDINGS: none"
    );
}

#[test]
fn capture_takes_a_bare_pod_name_with_its_namespace_as_kubectl_does() {
    let c = Controller::start("capture");
    let addr = c.addr.to_string();
    let dir = c.dir.to_string_lossy().into_owned();
    let file = format!("{dir}/web.pcapng");
    // The controller knows no pod yet, so it answers for the pod it was asked about: the one
    // that `web -n shop` names, or `web` in `default`.
    for (naming, pod) in [
        (&["web", "-n", "shop"][..], "shop/web"),
        (&["shop/web"], "shop/web"),
        (&["web"], "default/web"),
    ] {
        let mut args = vec!["capture", "--controller", &addr, "-w", &file, "--pod"];
        args.extend(naming);
        let out = outflow(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{naming:?}: {err}");
        assert!(err.contains(&format!("pod {pod} ")), "{naming:?}: {err}");
        assert!(
            !std::path::Path::new(&file).exists(),
            "no file is left for a capture that never started"
        );
    }
}

/// Asserts that the controller at `addr` has no capture: whatever was refused never reached it.
fn assert_no_capture(addr: &str) {
    assert_eq!(
        captures_json(addr),
        serde_json::json!([]),
        "a capture was created"
    );
}

fn captures_json(addr: &str) -> serde_json::Value {
    let out = outflow(&["captures", "--controller", addr, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A capture on an interface of a node no agent runs on: the controller takes it and waits.
const ON_N1_ETH0: &[&str] = &["--node", "n1", "-i", "eth0"];

#[test]
fn a_capture_whose_output_cannot_be_written_never_reaches_the_node() {
    let c = Controller::start("badout");
    let addr = c.addr.to_string();
    let dir = c.dir.to_string_lossy().into_owned();
    for bad in ["/nonexistent/dir/x.pcapng", dir.as_str()] {
        let out = outflow(&[&["capture", "--controller", &addr, "-w", bad], ON_N1_ETH0].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(&format!("creating {bad}")), "{bad}: {err}");
    }
    // A capture the controller refuses removes the file it made, never one that was there.
    let kept = c.dir.join("kept.pcapng");
    std::fs::write(&kept, b"earlier").unwrap();
    let kept_s = kept.to_string_lossy().into_owned();
    let out = outflow(&[
        "capture",
        "--controller",
        &addr,
        "--pod",
        "default/ghost",
        "-w",
        &kept_s,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(kept.exists(), "a file that was there before stays");
    assert_no_capture(&addr);
}

#[test]
fn a_capture_to_standard_output_on_a_terminal_is_refused_before_it_starts() {
    let c = Controller::start("tty");
    let addr = c.addr.to_string();
    // The master end stays open until the command has ended, so the terminal is there all along.
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let args = [&["capture", "--controller", &addr, "-w", "-"], ON_N1_ETH0].concat();
    let out = outflow_command(&args)
        .stdout(std::process::Stdio::from(pty.slave))
        .output()
        .expect("running outflow");
    drop(pty.master);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("-w - writes binary pcapng, and standard output is a terminal: pipe it"),
        "{err}"
    );
    assert!(!err.contains("capture 1"), "it never started: {err}");
    assert_no_capture(&addr);
}

#[test]
fn a_capture_waiting_for_a_silent_agent_says_so_and_can_be_listed_and_stopped() {
    use std::io::{BufRead, BufReader};
    let c = Controller::start("pending");
    let addr = c.addr.to_string();
    let file = c.dir.join("ghost.pcapng");
    let mut capture = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args([
            "capture",
            "--controller",
            &addr,
            "--node",
            "ghost",
            "-i",
            "eth0",
            "-w",
        ])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("outflow capture");
    let mut lines = BufReader::new(capture.stderr.take().expect("stderr")).lines();
    let started = lines.next().expect("a line").expect("text");
    assert!(started.contains("capture 1 on node ghost"), "{started}");
    let t0 = Instant::now();
    let notice = lines.next().expect("a line").expect("text");
    assert!(
        notice.contains("still waits for node ghost's agent"),
        "{notice}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "said within seconds"
    );

    let listed = outflow(&["captures", "--controller", &addr]);
    let table = String::from_utf8_lossy(&listed.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("1 ")
            && row.contains("pending")
            && row.contains("ghost")
            && row.contains("eth0"),
        "{table}"
    );
    let stopped = outflow(&["captures", "--controller", &addr, "stop", "1"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    assert_eq!(
        String::from_utf8_lossy(&stopped.stdout).trim(),
        "capture 1 on node ghost: done"
    );
    // The waiting command sees the end and exits by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = capture.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the capture command did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let end: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        end.iter()
            .any(|l| l.contains("capture 1 done") && l.contains("stopped before it started")),
        "{end:?}"
    );
    let listed = captures_json(&addr);
    assert_eq!(listed[0]["state"], "done", "{listed}");
    let unknown = outflow(&["captures", "--controller", &addr, "stop", "7"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no capture 7"),
        "{}",
        stderr(&unknown)
    );
}

/// One grammar for durations: a bare number is seconds, and units work everywhere, so
/// `--since 90`, `--since 90s` and `--syn-timeout 3s` all mean what they say.
#[test]
fn durations_take_bare_seconds_and_units_alike() {
    let c = Controller::start("units");
    let addr = c.addr.to_string();
    for since in ["90", "90s", "1m30s", "0.5"] {
        let out = outflow(&["dns", "--controller", &addr, "--since", since, "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "--since {since}: {}",
            stderr(&out)
        );
    }
    let dir = std::env::temp_dir().join(format!("outflow-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("syns.pcap");
    std::fs::write(&file, syns()).unwrap();
    let file = file.to_str().unwrap();
    let unanswered = |timeout: &str| {
        let out = outflow(&["analyze", "--syn-timeout", timeout, "--json", file]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["connections"][0]["outcomes"]["unanswered"].clone()
    };
    // Two attempts 2 s apart: a 1 s timeout (any spelling) judges the first unanswered by the
    // time of the second; 3 s (any spelling) leaves it undecided at the capture's end.
    for one in ["1", "1s", "1000ms"] {
        assert_eq!(unanswered(one), 1, "--syn-timeout {one}");
    }
    for three in ["3", "3s", "0.05m"] {
        assert!(unanswered(three).is_null(), "--syn-timeout {three}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two SYNs to one destination from two sockets, 2 s apart, then nothing: raw-IP pcap.
fn syns() -> Vec<u8> {
    let mut f = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
    ];
    for (i, t) in [0u32, 2].into_iter().enumerate() {
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 244, 1, 10, 198, 51, 100, 20,
        ];
        let port = 40_000 + i as u16;
        ip.extend_from_slice(&port.to_be_bytes());
        ip.extend_from_slice(&[
            1, 187, 0, 0, 3, 232, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f.extend_from_slice(&(1_700_000_000 + t).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        f.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        f.extend_from_slice(&ip);
    }
    f
}
