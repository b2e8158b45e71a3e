//! `outflow capture --local` on the lab's pod, checked with Wireshark's tools: the file holds the
//! same packets as a tcpdump with the same filter on the same interface, named after the pod,
//! with the pod's directions and the names DNS gave; `-w -` streams into `tshark -r -`; `-c`
//! stops at the count; SIGINT leaves a valid file; a bad filter or an unknown pod is a clear error
//! before anything is written. Needs root; in CI it must run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outflow_tests::{pod_connect, pod_run, privileged, Lab};

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
        .args(["--cluster", "lab-cluster"])
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
    pod_connect(&prefix, 2, "http://203.0.113.7/");
    pod_run(
        &prefix,
        &["dig", "+search", "+time=2", "+tries=1", "nx.example.com"],
    );
    // Blackholed: SYNs at 0, 1 and 3 s; the last is past the SYN timeout.
    pod_connect(&prefix, 4, "http://198.51.100.20/");
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
            "Capture comment:     cluster lab-cluster; node {prefix}-node; pod default/{prefix}-pod-a"
        )),
        "{info}"
    );
    // The packets that decided something say what outflow concluded.
    let notes = fields(ours, &["-Y", "frame.comment"], &["ip.src", "frame.comment"]);
    let note = |src: &str, text: &str| notes.iter().any(|r| r[0] == src && r[1].starts_with(text));
    assert!(
        note("198.51.100.80", "outflow: connection established in "),
        "the SYN-ACK: {notes:?}"
    );
    assert!(
        note(
            "10.0.0.10",
            "outflow: DNS nxdomain for nx.example.com.svc.cluster.local (search-list expansion)"
        ),
        "an expansion's NXDOMAIN: {notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|r| r[1] == "outflow: DNS nxdomain for nx.example.com"),
        "the bare name's NXDOMAIN: {notes:?}"
    );
    assert!(
        note("10.0.0.10", "outflow: DNS ok for web.example.com"),
        "{notes:?}"
    );
    assert!(
        note(
            "10.244.1.10",
            "outflow: SYN sent again 1.0 s after the first, no answer yet"
        ),
        "{notes:?}"
    );
    assert!(
        note("10.244.1.10", "outflow: SYN unanswered for 3."),
        "the SYN sent past the timeout: {notes:?}"
    );
    assert!(
        notes.len() < a.len() / 2,
        "only deciding packets carry comments: {} of {}",
        notes.len(),
        a.len()
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

    // tcpdump's `-s 0`: whole packets; without `-s`, outflow's 512 bytes of headers. A 1,428-byte
    // echo request and its reply; `--duration` so a lost ping fails the test instead of hanging.
    for (snap, want_cut) in [(Some("0"), false), (None, true)] {
        let file = dir.join(format!("{prefix}-snap.pcapng"));
        let mut c = outflow(&prefix);
        c.args(["--pod", &format!("default/{prefix}-pod-a"), "-c", "2"])
            .args(["--duration", "10s"]);
        if let Some(s) = snap {
            c.args(["-s", s]);
        }
        let mut capture = c
            .arg("-w")
            .arg(&file)
            .arg("icmp")
            .stderr(Stdio::null())
            .spawn()
            .expect("outflow capture -s");
        std::thread::sleep(Duration::from_millis(1000));
        pod_run(
            &prefix,
            &["hping3", "--icmp", "-d", "1400", "-c", "1", "198.51.100.80"],
        );
        assert!(capture.wait().expect("wait").success());
        let rows = fields(file.to_str().unwrap(), &[], &["frame.len", "frame.cap_len"]);
        assert_eq!(rows.len(), 2, "the echo and its reply: {rows:?}");
        for r in &rows {
            let (len, cap): (u32, u32) = (r[0].parse().unwrap(), r[1].parse().unwrap());
            assert!(len > 1400, "{rows:?}");
            assert_eq!(cap == 512, want_cut, "-s {snap:?}: {rows:?}");
            assert_eq!(cap == len, !want_cut, "-s {snap:?}: {rows:?}");
        }
        let _ = std::fs::remove_file(&file);
    }

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
        err.contains("pod default/nope has no interface on this node")
            && err.contains("ip netns list"),
        "{err}"
    );
    // outflow's own analysis reads the file: the blackholed SYNs went unanswered.
    let out = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args(["analyze", ours, "--format", "json"])
        .output()
        .expect("outflow analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let blackholed = report["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["dst"] == "198.51.100.20")
        .unwrap_or_else(|| panic!("the blackholed connection: {report}"));
    assert_eq!(blackholed["outcomes"]["unanswered"], 1, "{blackholed}");
    let _ = std::fs::remove_file(ours);
    let _ = std::fs::remove_file(theirs);
}

/// `outflow up` on the lab's node, its controller on `listen`.
fn up(prefix: &str, dir: &std::path::Path, listen: &str, extra: &[&str]) -> Running {
    Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args(["up", "--node-netns", &format!("{prefix}-node")])
        .args([
            "--iface-prefix",
            &format!("{prefix}-veth"),
            "--interval",
            "1s",
        ])
        .args(["--listen", listen, "--db"])
        .arg(dir.join("outflow.db"))
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .map(Running)
        .expect("outflow up")
}

/// A process that is killed when the test ends, by success or by panic, so a failed test never
/// leaves an agent holding the next run's port.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `outflow capture` of the lab's pod through the controller at `url`.
fn remote(prefix: &str, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outflow"));
    c.args([
        "capture",
        "--controller",
        url,
        "--pod",
        &format!("default/{prefix}-pod-a"),
    ]);
    c
}

/// Until the pod has records, the controller does not know its node.
fn wait_until_known(prefix: &str, url: &str) {
    let start = std::time::Instant::now();
    loop {
        pod_run(prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
        let known = remote(prefix, url)
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
}

/// `GET url/api/v1/captures` + `path`.
fn api(url: &str, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", &format!("{url}/api/v1/captures{path}")])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).expect("captures JSON")
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
    let mut up = up(&prefix, &dir, "127.0.0.1:17885", &[]);
    let remote = || remote(&prefix, url);
    wait_until_known(&prefix, url);

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
    let list = api(url, "");
    let last = &list[0];
    assert_eq!(last["state"], "done", "{list}");
    assert_eq!(last["reason"], "stopped", "{list}");
    assert_eq!(last["packets"].as_u64(), Some(all.len() as u64), "{list}");

    // A node's interface, no pod.
    let by_node = dir.join("node.pcapng");
    let mut capture = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args(["capture", "--controller", url])
        .args(["--node", &format!("{prefix}-node")])
        .args(["-i", &format!("{prefix}-veth-a"), "-c", "2", "-w"])
        .arg(&by_node)
        .arg("tcp")
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture --node");
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    assert!(capture.wait().expect("wait").success(), "ends at -c 2");
    let rows = fields(by_node.to_str().unwrap(), &[], &["frame.interface_name"]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], format!("{prefix}-veth-a@{prefix}-node"));
    interrupt(&mut up);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The capture's own ends: `--duration` stops it, and a pod deleted mid-capture ends it with
/// what it got, in a valid file.
#[test]
fn a_capture_ends_at_its_duration_and_when_its_pod_goes() {
    if !privileged("a_capture_ends_at_its_duration_and_when_its_pod_goes") {
        return;
    }
    let prefix = format!("ofv{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let dir = std::env::temp_dir();

    let timed = dir.join(format!("{prefix}-timed.pcapng"));
    let start = std::time::Instant::now();
    let out = outflow(&prefix)
        .args(["--pod", &format!("default/{prefix}-pod-a")])
        .args(["--duration", "2s", "-w"])
        .arg(&timed)
        .output()
        .expect("outflow capture");
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ended: duration reached"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "--duration 2s took {took:?}"
    );
    let info = Command::new("capinfos")
        .arg(&timed)
        .output()
        .expect("capinfos");
    assert!(info.status.success(), "a valid file");
    let _ = std::fs::remove_file(&timed);

    // A second pod on the node, which goes away while it is captured.
    let (node, pod, veth) = (
        format!("{prefix}-node"),
        format!("{prefix}-pod-z"),
        format!("{prefix}-veth-z"),
    );
    let ip = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip {args:?}");
    };
    ip(&["netns", "add", &pod]);
    ip(&[
        "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod,
    ]);
    ip(&["-n", &node, "addr", "add", "169.254.77.1/30", "dev", &veth]);
    ip(&["-n", &pod, "addr", "add", "169.254.77.2/30", "dev", "eth0"]);
    ip(&["-n", &node, "link", "set", &veth, "up"]);
    ip(&["-n", &pod, "link", "set", "eth0", "up"]);
    let gone = dir.join(format!("{prefix}-gone.pcapng"));
    let mut capture = outflow(&prefix)
        .args(["--pod", &format!("default/{pod}"), "-w"])
        .arg(&gone)
        .args(["udp", "port", "9"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow capture");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("ip")
        .args(["netns", "exec", &pod, "bash", "-c"])
        .arg("for i in 1 2 3 4 5; do echo $i > /dev/udp/169.254.77.1/9; sleep 0.2; done")
        .status()
        .expect("bash");
    assert!(sent.success(), "the pod sends to its node");
    std::thread::sleep(Duration::from_millis(500));
    ip(&["netns", "del", &pod]);
    let start = std::time::Instant::now();
    let out = loop {
        if let Some(status) = capture.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the capture did not end when its pod went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut capture.stderr.take().unwrap(), &mut err).unwrap();
    assert!(out.success(), "{err}");
    assert!(
        err.contains(&format!("ended: interface {veth} went away")),
        "{err}"
    );
    let file = gone.to_str().unwrap();
    let sent = fields(
        file,
        &["-Y", "udp.dstport == 9"],
        &["frame.packet_flags_direction"],
    );
    assert_eq!(sent.len(), 5, "what it got before the pod went is kept");
    assert!(
        sent.iter().all(|r| r[0] == "0x00000002"),
        "what the pod sent is outbound: {sent:?}"
    );
    let info = Command::new("capinfos")
        .arg(file)
        .output()
        .expect("capinfos");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Number of stat entries = 1"), "{info}");
    let _ = std::fs::remove_file(&gone);
}

/// The newest capture the controller knows, once it is over (done or failed).
fn newest_when_over(url: &str, within: Duration) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let last = api(url, "")[0].clone();
        if last["state"] == "done" || last["state"] == "failed" {
            return last;
        }
        assert!(start.elapsed() < within, "still {last} after {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's limits win over the request: `--capture-max-duration` cuts a 60 s request to
/// 3 s, `--capture-max-size 1MiB` ends a capture at 1 MiB, `--max-captures 1` refuses a second capture
/// while one runs. A reader that does not read, or goes away, holds up neither the agent nor the
/// controller: the capture ends on its own and its file is whole on the controller.
#[test]
fn the_agent_enforces_its_limits_and_no_reader_holds_it_up() {
    if !privileged("the_agent_enforces_its_limits_and_no_reader_holds_it_up") {
        return;
    }
    let prefix = format!("ofl{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let dir = std::env::temp_dir().join(format!("{prefix}-limits"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let url = "http://127.0.0.1:17886";
    let limits = [
        "--max-captures",
        "1",
        "--capture-max-duration",
        "3s",
        "--capture-max-size",
        "1MiB",
    ];
    let mut up = up(&prefix, &dir, "127.0.0.1:17886", &limits);
    wait_until_known(&prefix, url);

    let start = std::time::Instant::now();
    let mut long = remote(&prefix, url)
        .args(["--duration", "60s", "-w"])
        .arg(dir.join("long.pcapng"))
        .stderr(Stdio::null())
        .spawn()
        .expect("outflow capture");
    std::thread::sleep(Duration::from_millis(1000));
    let refused = remote(&prefix, url)
        .arg("-w")
        .arg(dir.join("refused.pcapng"))
        .output()
        .expect("outflow capture");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("already runs 1 captures, its limit"), "{err}");
    assert!(long.wait().expect("wait").success());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "a 60 s request under a 3 s limit took {took:?}"
    );
    let list = api(url, "");
    let long_info = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["state"] == "done" && c["reason"] == "duration reached")
        .unwrap_or_else(|| panic!("the long capture ended at the agent's limit: {list}"));
    assert!(
        long_info["duration_s"] == 60,
        "the request asked 60 s: {long_info}"
    );

    // A reader asleep while 1.4 MiB of UDP passes: the capture stops at 1 MiB on its own.
    let bin = env!("CARGO_BIN_EXE_outflow");
    let slow_file = dir.join("slow.pcapng");
    let mut slow = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{bin} capture --controller {url} --pod default/{prefix}-pod-a -s 1500 -w - \
             udp port 9 2>/dev/null | (sleep 6; cat > {})",
            slow_file.display()
        ))
        .spawn()
        .expect("sh");
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(
        &prefix,
        &[
            "bash",
            "-c",
            "for i in $(seq 1400); do printf '%1000s' x > /dev/udp/10.0.0.10/9; done",
        ],
    );
    let info = newest_when_over(url, Duration::from_secs(4));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the capture ended while its reader slept"
    );
    assert_eq!(info["state"], "done", "{info}");
    assert_eq!(info["reason"], "byte limit reached", "{info}");
    assert!(slow.wait().expect("wait").success());
    let file = slow_file.to_str().unwrap();
    let lens = fields(file, &[], &["frame.cap_len"]);
    let bytes: u64 = lens.iter().map(|r| r[0].parse::<u64>().unwrap()).sum();
    assert_eq!(Some(lens.len() as u64), info["packets"].as_u64(), "{info}");
    assert!(
        bytes <= 1 << 20 && bytes > (1 << 20) - 2000,
        "{bytes} bytes kept under a 1 MiB limit"
    );

    // A reader that goes away (`| head`): like tcpdump under SIGPIPE, the command stops the
    // capture instead of leaving it to hold a slot until its limit; the controller keeps the file.
    let mut gone = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{bin} capture --controller {url} --pod default/{prefix}-pod-a -w - 2>/dev/null \
             | head -c 100 > /dev/null"
        ))
        .spawn()
        .expect("sh");
    std::thread::sleep(Duration::from_millis(1500));
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    let _ = gone.wait();
    let info = newest_when_over(url, Duration::from_secs(6));
    assert_eq!(info["state"], "done", "{info}");
    assert_eq!(info["reason"], "stopped", "{info}");
    let kept = dir.join("kept.pcapng");
    let fetched = Command::new("curl")
        .args([
            "-sf",
            &format!("{url}/api/v1/captures/{}/pcapng", info["id"]),
            "-o",
        ])
        .arg(&kept)
        .status()
        .expect("curl");
    assert!(fetched.success());
    let packets = fields(kept.to_str().unwrap(), &[], &["frame.number"]);
    assert!(!packets.is_empty(), "the curl was captured");
    assert_eq!(
        Some(packets.len() as u64),
        info["packets"].as_u64(),
        "{info}"
    );
    interrupt(&mut up);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pods named by `--inventory` are captured as well as netns-named ones, locally and through
/// the controller: the node routes the pod's address through the lab's bridge, and the port
/// the pod's Ethernet address was learnt on is the pod's own veth.
#[test]
fn a_pod_named_by_an_inventory_file_is_captured_on_its_own_interface() {
    if !privileged("a_pod_named_by_an_inventory_file_is_captured_on_its_own_interface") {
        return;
    }
    let prefix = format!("ofv{}", std::process::id() % 10_000);
    let _lab = Lab::up(&prefix);
    let dir = std::env::temp_dir().join(format!("{prefix}-inventory"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let inventory = dir.join("pods.yaml");
    std::fs::write(
        &inventory,
        "pods:\n  - {namespace: shop, name: web-1, ips: [10.244.1.10, 'fd00:244:1::10']}\n",
    )
    .unwrap();
    // The node learns the pod's Ethernet address from its first packets.
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);

    let local = dir.join("local.pcapng");
    let capture = outflow(&prefix)
        .arg("--inventory")
        .arg(&inventory)
        .args([
            "--pod",
            "web-1",
            "-n",
            "shop",
            "-c",
            "4",
            "--duration",
            "20s",
            "-w",
        ])
        .arg(&local)
        .arg("tcp")
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow capture");
    std::thread::sleep(Duration::from_millis(1000));
    pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
    let out = capture.wait_with_output().expect("capture ends at -c 4");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("shop/web-1@{prefix}-node ({prefix}-veth-a)")),
        "the pod's own veth behind the bridge: {err}"
    );
    let local = local.to_str().unwrap();
    let rows = fields(
        local,
        &["-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"],
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "ip.src",
        ],
    );
    assert_eq!(
        rows.first().map(|r| r.as_slice()),
        Some(
            [
                format!("shop/web-1@{prefix}-node"),
                "0x00000002".to_string(),
                "10.244.1.10".to_string()
            ]
            .as_slice()
        ),
        "the pod's SYN, outbound, on the pod's interface: {rows:?}"
    );
    let ghost = outflow(&prefix)
        .arg("--inventory")
        .arg(&inventory)
        .args(["--pod", "shop/ghost", "-w"])
        .arg(dir.join("ghost.pcapng"))
        .output()
        .expect("outflow capture");
    assert_eq!(ghost.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&ghost.stderr)
            .contains("pod shop/ghost is not in the inventory file"),
        "{}",
        String::from_utf8_lossy(&ghost.stderr)
    );

    // Through the controller: the agent's inventory names the pod in its records, and its
    // captures find the pod's interface the same way.
    let url = "http://127.0.0.1:17887";
    let inventory_arg = inventory.to_str().unwrap();
    let _up = up(
        &prefix,
        &dir,
        "127.0.0.1:17887",
        &["--inventory", inventory_arg],
    );
    let remote = dir.join("remote.pcapng");
    let start = std::time::Instant::now();
    loop {
        pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
        let took = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["capture", "--controller", url, "--pod", "shop/web-1"])
            .args(["-c", "2", "--duration", "3s", "-w"])
            .arg(&remote)
            .arg("tcp")
            .stderr(Stdio::null())
            .spawn()
            .expect("outflow capture");
        std::thread::sleep(Duration::from_millis(1500));
        pod_run(&prefix, &["curl", "-4", "-s", "http://web.example.com/"]);
        let done = took.wait_with_output().expect("capture");
        let got = done.status.success()
            && !fields(remote.to_str().unwrap(), &[], &["frame.number"]).is_empty();
        if got {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the controller never captured shop/web-1"
        );
    }
    let names = fields(remote.to_str().unwrap(), &[], &["frame.interface_name"]);
    assert!(
        names
            .iter()
            .all(|r| r[0] == format!("shop/web-1@{prefix}-node")),
        "{names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
