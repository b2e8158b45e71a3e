//! `outflow capture --local` on the lab's pod, checked with Wireshark's tools: the file holds the
//! same packets as a tcpdump with the same filter on the same interface, named after the pod,
//! with the pod's directions and the names DNS gave; `-w -` streams into `tshark -r -`; `-c`
//! stops at the count; SIGINT leaves a valid file; a bad filter or an unknown pod is a clear error
//! before anything is written. Needs root; in CI it must run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outflow_tests::{pod_run, privileged, Lab};

fn outflow(prefix: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outflow"));
    c.args([
        "capture",
        "--local",
        "--node-netns",
        &format!("{prefix}-node"),
    ]);
    c
}

fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    child.wait().expect("wait")
}

/// `tshark -r FILE -T fields -e …`, one vector per packet.
fn fields(file: &str, extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.args(["-r", file])
        .args(extra)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn a_pod_capture_holds_what_tcpdump_holds_with_the_pods_names_and_directions() {
    if !privileged("a_pod_capture_holds_what_tcpdump_holds_with_the_pods_names_and_directions") {
        return;
    }
    let prefix = format!("ofc{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let dir = std::env::temp_dir();
    let ours = dir.join(format!("{prefix}-pod.pcapng"));
    let theirs = dir.join(format!("{prefix}-tcpdump.pcap"));
    let filter = "tcp or udp port 53";
    let mut capture = outflow(&prefix)
        .args(["--pod", &format!("default/{prefix}-pod-a"), "-w"])
        .arg(&ours)
        .arg(filter)
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture");
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-node"), "tcpdump", "-i"])
        .arg(format!("{prefix}-veth-a"))
        .args(["-s", "512", "-w"])
        .arg(&theirs)
        .arg(filter)
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    // Rejected by ICMP: the ICMP error is outside the filter, the SYN inside.
    pod_run(
        &prefix,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "2",
            "http://203.0.113.7/",
        ],
    );
    pod_run(
        &prefix,
        &["dig", "+search", "+time=2", "+tries=1", "nx.example.com"],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        interrupt(&mut capture).success(),
        "Ctrl-C ends the capture cleanly"
    );
    interrupt(&mut tcpdump);

    let (ours, theirs) = (ours.to_str().unwrap(), theirs.to_str().unwrap());
    let packets = |f: &str| {
        fields(
            f,
            &[],
            &["ip.src", "ip.dst", "ip.id", "frame.len", "frame.cap_len"],
        )
    };
    let (mut a, mut b) = (packets(ours), packets(theirs));
    a.sort();
    b.sort();
    assert!(
        a.len() >= 20,
        "the lab traffic was captured: {} packets",
        a.len()
    );
    assert_eq!(
        a, b,
        "the same packets as tcpdump with the same filter and snaplen"
    );
    assert!(
        fields(ours, &["-Y", "icmp or arp"], &["frame.number"]).is_empty(),
        "the filter applied"
    );

    let rows = fields(
        ours,
        &["-N", "n", "-Y", "tcp.flags.syn == 1"],
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "ip.src",
            "ip.dst_host",
            "tcp.flags.ack",
        ],
    );
    let web_syn = rows
        .iter()
        .find(|r| r[3] == "web.example.com" && r[4] == "0")
        .unwrap_or_else(|| panic!("a SYN to web.example.com, named from the DNS answer: {rows:?}"));
    assert_eq!(web_syn[0], format!("default/{prefix}-pod-a@{prefix}-node"));
    assert_eq!(web_syn[1], "0x00000002", "what the pod sent is outbound");
    let syn_ack = rows
        .iter()
        .find(|r| r[2] == "198.51.100.80" && r[4] == "1")
        .unwrap_or_else(|| panic!("the SYN-ACK: {rows:?}"));
    assert_eq!(syn_ack[1], "0x00000001", "what the pod received is inbound");
    let info = Command::new("capinfos")
        .arg(ours)
        .output()
        .expect("capinfos");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Filter string = tcp or udp port 53"),
        "{info}"
    );
    assert!(
        info.contains(&format!(
            "Capture comment:     node {prefix}-node; pod default/{prefix}-pod-a"
        )),
        "{info}"
    );
    assert!(info.contains("Number of stat entries = 1"), "{info}");

    // Stopped right after the last packet: that packet is in the file.
    let tail = dir.join(format!("{prefix}-tail.pcapng"));
    let mut capture = outflow(&prefix)
        .args(["--pod", &format!("default/{prefix}-pod-a"), "-w"])
        .arg(&tail)
        .args(["udp", "port", "53"])
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture");
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(&prefix, &["dig", "+time=2", "+tries=1", "web.example.com"]);
    assert!(interrupt(&mut capture).success());
    let tail_rows = fields(tail.to_str().unwrap(), &[], &["dns.flags.response"]);
    assert!(
        tail_rows.iter().any(|r| r[0] == "1" || r[0] == "True"),
        "the answer that came just before Ctrl-C is in the file: {tail_rows:?}"
    );
    let _ = std::fs::remove_file(&tail);

    // Streaming, with a count.
    let mut streamed = outflow(&prefix)
        .args([
            "--pod",
            &format!("default/{prefix}-pod-a"),
            "-c",
            "4",
            "-w",
            "-",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture -w -");
    let stdout = streamed.stdout.take().expect("stdout");
    let tshark = Command::new("tshark")
        .args(["-r", "-", "-T", "fields", "-e", "frame.number"])
        .stdin(stdout)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark -r -");
    std::thread::sleep(Duration::from_millis(500));
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    assert!(
        streamed.wait().expect("wait").success(),
        "stops by itself at -c 4"
    );
    let tshark = tshark
        .wait_with_output()
        .expect("tshark ends with the stream");
    assert_eq!(
        String::from_utf8_lossy(&tshark.stdout).lines().count(),
        4,
        "tshark read exactly the 4 packets from the pipe: {}",
        String::from_utf8_lossy(&tshark.stderr)
    );

    // Mistakes are said before anything is written.
    let bad = dir.join(format!("{prefix}-bad.pcapng"));
    let out = outflow(&prefix)
        .args(["--pod", &format!("default/{prefix}-pod-a"), "-w"])
        .arg(&bad)
        .args(["tcp", "port", "http80"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad filter") && err.contains("http80"),
        "{err}"
    );
    assert!(!bad.exists(), "no file for a capture that never started");
    let out = outflow(&prefix)
        .args(["--pod", "default/nope", "-w"])
        .arg(&bad)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pod default/nope has no interface on node"),
        "{err}"
    );
    let _ = std::fs::remove_file(ours);
    let _ = std::fs::remove_file(theirs);
}

/// Through the controller: `outflow up` on the lab's node, `outflow capture --pod` from the
/// host. The controller finds the pod's node from its records, the agent captures and streams
/// the file up, the command streams it down; Ctrl-C stops it through the API and the file is
/// still whole.
#[test]
fn a_capture_through_the_controller_streams_stops_and_stays_valid() {
    if !privileged("a_capture_through_the_controller_streams_stops_and_stays_valid") {
        return;
    }
    let prefix = format!("ofr{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let dir = std::env::temp_dir().join(format!("{prefix}-controller"));
    let _ = std::fs::remove_dir_all(&dir);
    let url = "http://127.0.0.1:17885";
    let mut up = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args(["up", "--node-netns", &format!("{prefix}-node")])
        .args([
            "--iface-prefix",
            &format!("{prefix}-veth"),
            "--interval",
            "1s",
        ])
        .args(["--listen", "127.0.0.1:17885", "--db"])
        .arg(dir.join("outflow.db"))
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow up");
    let remote = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_outflow"));
        c.args([
            "capture",
            "--controller",
            url,
            "--pod",
            &format!("default/{prefix}-pod-a"),
        ]);
        c
    };
    // Until the pod has records, the controller does not know its node.
    let start = std::time::Instant::now();
    loop {
        pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
        let known = remote()
            .args(["-c", "1", "--duration", "1s", "-w", "/dev/null"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if known {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the controller never learnt the pod's node"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut streamed = remote()
        .args(["-c", "4", "-w", "-", "tcp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture -w -");
    let tshark = Command::new("tshark")
        .args(["-r", "-", "-T", "fields", "-e", "tcp.srcport"])
        .stdin(streamed.stdout.take().expect("stdout"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark -r -");
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    assert!(streamed.wait().expect("wait").success(), "ends at -c 4");
    let out = tshark.wait_with_output().expect("tshark");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        4,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let file = dir.join("dns.pcapng");
    let mut stopped = remote()
        .arg("-w")
        .arg(&file)
        .args(["udp", "port", "53"])
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture");
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(
        &prefix,
        &["dig", "+search", "+time=2", "+tries=1", "nx.example.com"],
    );
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    assert!(
        interrupt(&mut stopped).success(),
        "Ctrl-C stops it through the controller"
    );
    let file = file.to_str().unwrap();
    let all = fields(file, &[], &["frame.number"]);
    assert!(all.len() >= 8, "the lookups were captured: {}", all.len());
    assert!(fields(file, &["-Y", "not udp.port == 53"], &["frame.number"]).is_empty());
    let rows = fields(file, &[], &["frame.interface_name"]);
    assert_eq!(rows[0][0], format!("default/{prefix}-pod-a@{prefix}-node"));
    let list = Command::new("curl")
        .args(["-sf", &format!("{url}/api/v1/captures")])
        .output()
        .expect("curl");
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("captures JSON");
    let last = &list[0];
    assert_eq!(last["state"], "done", "{list}");
    assert_eq!(last["reason"], "stopped", "{list}");
    assert_eq!(last["packets"].as_u64(), Some(all.len() as u64), "{list}");
    interrupt(&mut up);
    let _ = std::fs::remove_dir_all(&dir);
}
