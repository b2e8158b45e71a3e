//! Shared pieces of the integration tests: running the lab and analysing its captures.

use std::path::{Path, PathBuf};
use std::process::Command;

use outflow_core::capfile::{CaptureReader, MergedReader};
use outflow_core::report::{ConnectionRecord, DnsRecord};
use outflow_core::{Engine, Profile, Report};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Whether this run is CI's (`CI=true` or `CI=1`): there, nothing a test needs may be missing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The one rule for what a test needs from the machine (root, a tool, a kernel feature): with
/// it, true; without it, a skip said out loud, or in CI a failure naming `need`.
pub fn required(test: &str, need: &str, have: bool) -> bool {
    if have {
        return true;
    }
    if in_ci() {
        panic!("{test} needs {need} and CI forbids skipping it");
    }
    eprintln!("\n*** SKIPPED {test}: needs {need} ***\n");
    false
}

/// Whether privileged tests may run: true as root. Not root: a loud skip, or a failure in CI.
pub fn privileged(test: &str) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    required(
        test,
        "root (network namespaces, eBPF)",
        uid.is_ok_and(|u| u == "0"),
    )
}

/// Runs a client command in the lab's pod `PREFIX-pod-a`, quietly; the test judges by what
/// outflow reports, not by the client's exit status (a blackholed curl fails on purpose).
pub fn pod_run(prefix: &str, args: &[&str]) {
    let _ = Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-pod-a")])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// `curl -s --connect-timeout SECS URL` from the lab's pod: one connection attempt that gives
/// up after `secs`.
pub fn pod_connect(prefix: &str, secs: u32, url: &str) {
    pod_run(
        prefix,
        &["curl", "-s", "--connect-timeout", &secs.to_string(), url],
    );
}

/// A lab of network namespaces (tests/lab/lab.sh, or another script there), torn down when
/// dropped.
pub struct Lab {
    prefix: String,
    script: &'static str,
}

impl Lab {
    /// Builds the lab under a prefix of its own.
    pub fn up(prefix: &str) -> Lab {
        Lab::up_from("lab.sh", prefix)
    }

    /// Builds the lab of `script` in tests/lab/ (`cluster.sh`) under a prefix of its own.
    pub fn up_from(script: &'static str, prefix: &str) -> Lab {
        Lab::up_from_with(script, prefix, &[])
    }

    /// Builds the lab of `script` with more arguments to its `up` (`tunnels.sh up PREFIX vxlan`).
    pub fn up_from_with(script: &'static str, prefix: &str, args: &[&str]) -> Lab {
        let lab = Lab {
            prefix: prefix.to_string(),
            script,
        };
        lab.run(&["down"]);
        let up: Vec<&str> = std::iter::once("up").chain(args.iter().copied()).collect();
        assert!(lab.run(&up), "{script} up {prefix} {args:?} failed");
        lab
    }

    /// The prefix its namespaces' names start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs the lab's traffic while capturing into `out`.
    pub fn capture(&self, out: &Path) {
        std::fs::create_dir_all(out).expect("creating the capture directory");
        let status = self
            .command(&["capture"])
            .arg(out)
            .status()
            .expect("running lab.sh");
        assert!(status.success(), "lab.sh capture failed");
    }

    /// Runs `SCRIPT CMD PREFIX ARGS...` for `[CMD, ARGS...]`; whether it succeeded.
    pub fn run(&self, args: &[&str]) -> bool {
        self.command(args).status().is_ok_and(|s| s.success())
    }

    /// The command `SCRIPT CMD PREFIX ARGS...` for `[CMD, ARGS...]`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(root().join("tests/lab").join(self.script));
        command.args(&args[..1]).arg(&self.prefix).args(&args[1..]);
        command
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.run(&["down"]);
    }
}

/// Analyses capture files with a profile, as `outflow analyze` does.
pub fn analyze(files: &[PathBuf], profile: &Profile) -> Report {
    analyze_files(files, profile).0
}

/// Analyses files; also returns the indexes of files that ended mid-record.
fn analyze_files(files: &[PathBuf], profile: &Profile) -> (Report, Vec<usize>) {
    let readers = files
        .iter()
        .map(|f| {
            let file = std::fs::File::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            CaptureReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect();
    let mut merged = MergedReader::new(readers);
    let mut engine = Engine::new(profile);
    if merged.may_hold_duplicates() {
        engine.enable_dedup();
    }
    while merged.advance() {
        engine.observe(&merged.packet().expect("advance returned true"));
    }
    assert!(
        merged.errors().is_empty(),
        "read errors: {:?}",
        merged.errors()
    );
    let truncated = merged.truncated_files();
    (engine.finish(), truncated)
}

/// The lab's network profile.
pub fn lab_profile() -> Profile {
    let path = root().join("examples/lab-profile.yaml");
    Profile::from_yaml(
        &std::fs::read_to_string(&path).expect("reading the lab profile"),
        "lab-profile.yaml",
    )
    .expect("the lab profile is valid")
}

/// The connection group to `dst:port/proto`.
pub fn conn<'a>(r: &'a Report, dst: &str, port: u16, proto: &str) -> &'a ConnectionRecord {
    r.connections
        .iter()
        .find(|c| c.dst.to_string() == dst && c.dst_port == port && c.proto == proto)
        .unwrap_or_else(|| panic!("no {dst}:{port}/{proto} in {:#?}", r.connections))
}

/// The DNS record of (client, name, qtype).
pub fn dns<'a>(r: &'a Report, client: &str, name: &str, qtype: &str) -> &'a DnsRecord {
    r.dns
        .iter()
        .find(|d| d.client.to_string() == client && d.name == name && d.qtype == qtype)
        .unwrap_or_else(|| panic!("no lookup {client} {name} {qtype} in {:#?}", r.dns))
}

/// A count from an outcome or status map by the key's contract spelling, 0 when absent.
pub fn count<K: AsRef<str>>(map: &std::collections::BTreeMap<K, u64>, key: &str) -> u64 {
    map.iter()
        .find(|(k, _)| k.as_ref() == key)
        .map_or(0, |(_, n)| *n)
}

/// What the lab traffic (`lab.sh traffic`) must yield, as `core/tests/fixtures/README.md` records it.
pub fn assert_lab_results(r: &Report) {
    let web6 = conn(r, "fd00:80::80", 80, "tcp");
    assert_eq!(count(&web6.outcomes, "established"), 4);
    assert_eq!(web6.category.as_str(), "public");
    assert_eq!(
        (
            count(&web6.http_statuses, "200"),
            count(&web6.http_statuses, "403"),
            count(&web6.http_statuses, "503")
        ),
        (2, 1, 1)
    );
    assert!(
        web6.names.contains(&"web.example.com".to_string()),
        "{:?}",
        web6.names
    );

    let internal = conn(r, "10.244.2.20", 80, "tcp");
    assert_eq!(
        (
            count(&internal.outcomes, "established"),
            internal.category.as_str()
        ),
        (1, "internal")
    );
    let peered = conn(r, "10.10.0.5", 80, "tcp");
    assert_eq!(
        (
            count(&peered.outcomes, "established"),
            peered.category.as_str()
        ),
        (1, "peered")
    );

    let blackhole = conn(r, "198.51.100.20", 80, "tcp");
    assert_eq!(blackhole.outcomes.len(), 1);
    assert_eq!(count(&blackhole.outcomes, "unanswered"), 1);
    assert_eq!(blackhole.syn_retransmissions, 4, "5 SYNs with one ISN");

    let prohibited = conn(r, "203.0.113.7", 80, "tcp");
    assert_eq!(count(&prohibited.outcomes, "unreachable"), 1);
    assert_eq!(count(&prohibited.unreachable_codes, "admin-prohibited"), 1);
    assert_eq!(
        prohibited
            .icmp_from
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["10.244.1.1"]
    );

    let closed = conn(r, "192.168.50.5", 8080, "tcp");
    assert_eq!(
        (count(&closed.outcomes, "refused"), closed.category.as_str()),
        (1, "onprem")
    );

    assert_eq!(
        count(&conn(r, "10.0.0.10", 53, "tcp").outcomes, "established"),
        1
    );

    let proxy = conn(r, "10.224.0.1", 3128, "tcp");
    assert_eq!(count(&proxy.outcomes, "established"), 2);
    assert_eq!(proxy.proxy_connects.len(), 1);
    assert_eq!(proxy.proxy_connects[0].target, "198.51.100.80:80");
    assert_eq!(count(&proxy.proxy_connects[0].statuses, "407"), 1);
    assert_eq!(count(&proxy.proxy_connects[0].statuses, "200"), 1);
    assert_eq!(
        count(&proxy.http_statuses, "200"),
        1,
        "the GET inside the tunnel"
    );

    // Three lookups through the search list (3 expansions each), one over TCP without search,
    // and one to the dead server 10.0.0.99.
    let web_a = dns(r, "10.244.1.10", "web.example.com", "A");
    assert_eq!(
        (
            count(&web_a.outcomes, "ok"),
            count(&web_a.outcomes, "timeout")
        ),
        (4, 1),
        "{web_a:?}"
    );
    assert_eq!((web_a.expansions, web_a.queries), (3, 14));
    assert_eq!(web_a.transport, "udp+tcp");
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "web.example.com", "AAAA").outcomes,
            "ok"
        ),
        3
    );
    assert_eq!(
        count(
            &dns(r, "fd00:244:1::10", "web.example.com", "AAAA").outcomes,
            "ok"
        ),
        1
    );
    for qtype in ["A", "AAAA"] {
        let nx = dns(r, "10.244.1.10", "nx.example.com", qtype);
        assert_eq!(
            (count(&nx.outcomes, "nxdomain"), nx.expansions, nx.queries),
            (1, 3, 4)
        );
    }
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "api.default.svc.cluster.local", "A").outcomes,
            "ok"
        ),
        1
    );
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "api.default.svc.cluster.local", "AAAA").outcomes,
            "nodata"
        ),
        1
    );
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "peer.example.com", "A").outcomes,
            "ok"
        ),
        1
    );
    assert_eq!(
        count(
            &dns(r, "10.244.1.10", "servfail.dead.example", "A").outcomes,
            "refused"
        ),
        1
    );
    assert_eq!(r.dns.len(), 10, "{:#?}", r.dns);

    let kinds: Vec<&str> = r.findings.iter().map(|f| f.kind.as_str()).collect();
    for kind in [
        "syn_unanswered",
        "destination_unreachable",
        "connection_refused",
        "dns_nxdomain",
        "dns_refused",
        "dns_timeout",
        "dns_server_unresponsive",
        "http_forbidden",
        "http_server_error",
        "proxy_connect_failed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        !kinds.contains(&"dns_nodata"),
        "AAAA without data is normal, not a finding"
    );
}

/// Analyses checked-in fixtures with the lab profile; also returns the indexes of truncated files.
pub fn analyze_fixtures(names: &[&str]) -> (Report, Vec<usize>) {
    let dir = root().join("core/tests/fixtures");
    let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    analyze_files(&files, &lab_profile())
}

/// What the tunnel lab's traffic (`tunnels.sh capture PREFIX KIND`) must yield from node A's
/// underlay: pod A's connections and lookups to pod B, each with the tunnel between the nodes
/// (none for `vlan`), and no flow between the nodes themselves.
pub fn assert_tunnel_results(kind: &str, r: &Report) {
    let tunnelled = kind != "vlan";

    // Every IP packet on the underlay is one of the pods' (IPv6 is off), so all are tunnelled,
    // and no outer flow between the nodes is left in the report.
    assert!(r.capture.ip_packets >= 20, "{kind}: {:?}", r.capture);
    if tunnelled {
        assert_eq!(
            r.capture.tunnelled, r.capture.ip_packets,
            "{kind}: {:?}",
            r.capture
        );
    } else {
        assert_eq!(r.capture.tunnelled, 0, "{kind}: {:?}", r.capture);
    }
    assert_eq!(r.capture.tunnel_truncated, 0);
    for c in &r.connections {
        assert_eq!(c.src.to_string(), "10.244.1.10", "{kind}: {c:#?}");
    }

    let blackholed = conn(r, "10.244.2.99", 80, "tcp");
    assert_eq!(
        count(&blackholed.outcomes, "unanswered"),
        1,
        "{kind}: {blackholed:#?}"
    );
    assert!(
        blackholed.syn_retransmissions >= 1,
        "{kind}: {blackholed:#?}"
    );
    assert_eq!(blackholed.packets_in, 0);

    let refused = conn(r, "10.244.2.20", 81, "tcp");
    assert_eq!(refused.outcomes.len(), 1, "{kind}: {refused:#?}");
    assert_eq!(count(&refused.outcomes, "refused"), 1);

    let web = conn(r, "10.244.2.20", 80, "tcp");
    assert_eq!(web.outcomes.len(), 1, "{kind}: {web:#?}");
    assert_eq!(count(&web.outcomes, "established"), 1);
    assert_eq!(count(&web.http_statuses, "200"), 1);
    assert_eq!(web.category.as_str(), "internal");
    // The DNS answer's name, then curl's Host header.
    assert_eq!(web.names, ["web.lab.test", "10.244.2.20"]);

    let ok = dns(r, "10.244.1.10", "web.lab.test", "A");
    assert_eq!(count(&ok.outcomes, "ok"), 1, "{kind}: {ok:#?}");
    assert_eq!(
        ok.answers,
        ["10.244.2.20".parse::<std::net::IpAddr>().unwrap()]
    );
    let nx = dns(r, "10.244.1.10", "nx.lab.test", "A");
    assert_eq!(count(&nx.outcomes, "nxdomain"), 1, "{kind}: {nx:#?}");

    for c in [blackholed, refused, web, conn(r, "10.244.2.20", 53, "udp")] {
        let Some(t) = &c.tunnel else {
            assert!(!tunnelled, "{kind}: no tunnel on {c:#?}");
            continue;
        };
        assert!(tunnelled, "{kind}: a VLAN is not a tunnel: {c:#?}");
        let want_kind = kind.trim_end_matches("8472");
        let want_id = (kind != "ipip").then_some(42);
        assert_eq!(
            (
                t.kind.as_str(),
                t.outer_src.to_string().as_str(),
                t.outer_dst.to_string().as_str(),
                t.id,
                t.depth
            ),
            (want_kind, "10.224.0.4", "10.224.0.5", want_id, 1),
            "{kind}: {c:#?}"
        );
    }
}

pub mod kube_api;
pub mod netns;
