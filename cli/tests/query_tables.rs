//! The query commands' tables show what `analyze` shows: latency, answers, evidence and next
//! checks, with the pod, node and window each record came from; `-o wide` adds every column and
//! writes lists whole. Records are the lab capture's, posted to a real controller as an agent's
//! window report.

mod controller;

use controller::{outflow, post_lab_window, stderr, stdout_of, Controller};

/// The first row that has each of `cells` as a whole cell.
fn row<'a>(table: &'a str, cells: &[&str]) -> &'a str {
    table
        .lines()
        .find(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            cells.iter().all(|c| words.contains(c))
        })
        .unwrap_or_else(|| panic!("no row with {cells:?}:\n{table}"))
}

#[test]
fn connections_show_latency_retransmissions_and_what_the_app_said() {
    let c = Controller::start("tables-conn");
    post_lab_window(&c);
    let addr = c.addr.to_string();
    let table = stdout_of(&["connections", "--controller", &addr]);
    let header = table.lines().next().unwrap();
    for col in [
        "POD",
        "NODE",
        "DESTINATION",
        "SYN-RTX",
        "HANDSHAKE",
        "NAMES / APP",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(!header.contains("FIRST SEEN"), "wide only: {header}");
    let blackholed = row(&table, &["198.51.100.20:80/tcp"]);
    assert!(
        blackholed.contains("default/shop-web")
            && blackholed.contains("node-1")
            && blackholed.contains("unanswered:1")
            && blackholed.contains(" 4 "),
        "{blackholed}"
    );
    let proxy = row(&table, &["10.224.0.1:3128/tcp"]);
    assert!(
        proxy.contains("ms") && proxy.contains("CONNECT 198.51.100.80:80 200:1 407:1"),
        "{proxy}"
    );
    assert!(
        row(&table, &["[fd00:80::80]:80/tcp"]).contains("http 200:2 403:1 503:1"),
        "{table}"
    );

    let wide = stdout_of(&["connections", "--controller", &addr, "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for col in [
        "SRC",
        "BYTES OUT/IN",
        "ICMP FROM",
        "FIRST SEEN",
        "LAST SEEN",
    ] {
        assert!(header.contains(col), "{header}");
    }
    // min/avg/max and how many handshakes.
    assert!(
        row(&wide, &["10.224.0.1:3128/tcp"]).contains("ms×2"),
        "{wide}"
    );
}

#[test]
fn dns_shows_latency_servers_and_answers() {
    let c = Controller::start("tables-dns");
    post_lab_window(&c);
    let addr = c.addr.to_string();
    let table = stdout_of(&["dns", "--controller", &addr]);
    let web = row(&table, &["web.example.com", "A"]);
    assert!(
        web.contains("ok:4 timeout:1")
            && web.contains("10.0.0.10,10.0.0.99")
            && web.contains("ms")
            && web.contains("198.51.100.80"),
        "{web}"
    );
    let wide = stdout_of(&["dns", "--controller", &addr, "--output", "wide"]);
    let header = wide.lines().next().unwrap();
    for col in [
        "CLIENT",
        "EXPANSIONS",
        "QUERIES",
        "RESOLVED AS",
        "TRANSPORT",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        row(&wide, &["api.default.svc.cluster.local", "A"]).contains("10.244.2.20"),
        "{wide}"
    );
}

#[test]
fn findings_carry_their_evidence_and_next_checks() {
    let c = Controller::start("tables-findings");
    post_lab_window(&c);
    let addr = c.addr.to_string();
    let text = stdout_of(&["findings", "--controller", &addr, "--outcome", "error"]);
    assert!(text.starts_with("FINDINGS ("), "{text}");
    let at = text
        .find("cannot resolve nx.example.com")
        .unwrap_or_else(|| panic!("{text}"));
    let block: String = text[at..].lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(block.contains("evidence: 8 queries"), "{block}");
    assert!(
        block.contains("next 1: Compare: `nslookup nx.example.com`"),
        "{block}"
    );
    assert!(
        text.contains("[ERROR] default/shop-web on node-1, window ending "),
        "{text}"
    );
    assert!(!text.contains("kind: "), "wide only: {text}");
    let wide = stdout_of(&["findings", "--controller", &addr, "-o", "wide"]);
    assert!(
        wide.contains("kind: dns_nxdomain, target: nx.example.com"),
        "{wide}"
    );
    let none = stdout_of(&["findings", "--controller", &addr, "--node", "node-2"]);
    assert_eq!(none.trim(), "FINDINGS: none");
}

#[test]
fn analyze_wide_adds_columns_and_whole_lists() {
    let file = outflow_tests::root().join("core/tests/fixtures/lab-pod.pcap");
    let profile = outflow_tests::root().join("examples/lab-profile.yaml");
    let (file, profile) = (file.to_str().unwrap(), profile.to_str().unwrap());
    let table = stdout_of(&["analyze", file, "--profile", profile]);
    let wide = stdout_of(&["analyze", file, "--profile", profile, "-o", "wide"]);
    assert!(!table.contains("FIRST SEEN") && !table.contains("kind: "));
    let conns = wide.lines().find(|l| l.starts_with("SRC ")).unwrap();
    for col in [
        "EGRESS",
        "ICMP FROM",
        "FIRST SEEN",
        "LAST SEEN",
        "NAMES / APP",
    ] {
        assert!(conns.contains(col), "{conns}");
    }
    assert!(wide.contains("kind: syn_unanswered"), "{wide}");
    assert!(row(&wide, &["198.51.100.20", "80", "tcp"]).contains("unanswered:1"));
}

#[test]
fn a_bare_pod_name_is_in_n_s_namespace_or_in_default_as_kubectl_has_it() {
    let c = Controller::start("tables-pod-ns");
    post_lab_window(&c);
    let addr = c.addr.to_string();
    let rows = |args: &[&str]| -> usize {
        let mut all = vec!["connections", "--controller", &addr, "-o", "json"];
        all.extend_from_slice(args);
        let out = stdout_of(&all);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .map_or(0, Vec::len)
    };
    let all = rows(&[]);
    assert!(all > 0);
    assert_eq!(rows(&["--pod", "shop-web"]), all, "default/shop-web");
    assert_eq!(rows(&["--pod", "shop-web", "-n", "default"]), all);
    assert_eq!(rows(&["--pod", "default/shop-web"]), all);
    assert_eq!(
        rows(&["--pod", "shop-web", "-n", "shop"]),
        0,
        "shop/shop-web is another pod"
    );
    let out = outflow(&[
        "connections",
        "--controller",
        &addr,
        "--pod",
        "shop/web",
        "-n",
        "prod",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not in namespace prod"),
        "{}",
        stderr(&out)
    );
}

/// The README's fenced block that follows `marker`.
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(outflow_tests::root().join("README.md")).unwrap();
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &readme[at..];
    let start = rest.find("```\n").expect("a block after the marker") + 4;
    let end = rest[start..].find("\n```").expect("the block ends") + start;
    rest[start..end].to_string()
}

/// Times (`2026-12-06T13:03:52.217342Z`) replaced by one of the same length: they are when the
/// example ran.
fn without_times(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let is_time = b.len() - i >= 11
            && b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 10] == b'T';
        if is_time {
            let len = text[i..].find('Z').map_or(1, |z| z + 1);
            out.push_str(&"T".repeat(len));
            i += len;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[test]
fn the_readmes_analyze_sample_is_what_analyze_prints() {
    let root = outflow_tests::root();
    let file = root.join("core/tests/fixtures/lab-pod.pcap");
    let profile = root.join("examples/lab-profile.yaml");
    let printed = stdout_of(&[
        "analyze",
        file.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ]);
    let sample = readme_block("From the lab capture (`cargo xtask demo`):");
    shows(
        &printed,
        &sample,
        "outflow analyze core/tests/fixtures/lab-pod.pcap --profile examples/lab-profile.yaml",
    );
}

/// Asserts that `printed` is what the README `shown`, line by line, where a README line `…`
/// (or `… (N more …)`) stands for the lines printed up to the README's next line.
fn shows(printed: &str, shown: &str, command: &str) {
    let mut printed_lines = printed.lines().map(str::trim_end).peekable();
    let mut shown_lines = shown.lines().map(str::trim_end).peekable();
    while let Some(want) = shown_lines.next() {
        if want.trim_start().starts_with('…') {
            match shown_lines.peek() {
                None => return,
                Some(next) => {
                    while printed_lines.peek().is_some_and(|p| p != next) {
                        printed_lines.next();
                    }
                }
            }
            continue;
        }
        assert_eq!(
            printed_lines.next(),
            Some(want),
            "the README shows `{command}` printing otherwise; it prints:\n{printed}"
        );
    }
    assert_eq!(
        printed_lines.next(),
        None,
        "`{command}` prints more than the README shows:\n{printed}"
    );
}

#[test]
fn the_readmes_query_examples_print_what_they_show() {
    let c = Controller::start("tables-readme");
    post_lab_window(&c);
    let addr = c.addr.to_string();
    let block = readme_block("For example, after a pod's `curl` to a blackholed address:");
    let mut examples = 0;
    for example in block.split("$ outflow ").filter(|e| !e.trim().is_empty()) {
        let (command, shown) = example.split_once('\n').expect("a command and its output");
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.extend(["--controller", &addr]);
        let printed = without_times(&stdout_of(&args));
        shows(
            &printed,
            &without_times(shown),
            &format!("outflow {command}"),
        );
        examples += 1;
    }
    assert_eq!(examples, 3, "{block}");
}
