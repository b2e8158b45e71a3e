//! The page at `/` in a real headless browser (Debian's chromium) over a controller holding an
//! agent's lab window and a healthy node: the matrix, the diagnoses, a deep-linked drill-down
//! into a failing cell, and the nodes, read back from the DOM the page's script built.
//! Screenshots go to `target/artifacts/browser/`, kept by CI.
//!
//! Chromium reaches only the controller on loopback (see the `chromium` module).

mod chromium;
mod controller;

use chromium::{artifacts, browse, chromium, element_text};
use controller::{post_lab_window, post_report, Controller};
use outflow_core::report::{rfc3339, ConnectionRecord};
use outflow_core::wire::{NodePod, NodeReport, Scope, Scoped};
use outflow_core::{Category, Outcome};

/// A node whose pod in `pay` reaches public and internal destinations without a failure.
fn healthy_node() -> NodeReport {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let scope = Scope {
        pod: Some("api-5d8f".into()),
        namespace: Some("pay".into()),
        workload: Some("deployment/api".into()),
        node: "node-2".into(),
        window_start: rfc3339(now - 10_000_000_000),
        window_end: rfc3339(now),
        ..Default::default()
    };
    let conn = |dst: &str, port: u16, category: Category| Scoped {
        scope: scope.clone(),
        record: ConnectionRecord {
            src: "10.244.2.7".parse().unwrap(),
            dst: dst.parse().unwrap(),
            dst_port: port,
            proto: "tcp".into(),
            category,
            label: None,
            destination: None,
            egress: None,
            outcomes: [(Outcome::Established, 12)].into(),
            unreachable_codes: Default::default(),
            icmp_from: vec![],
            syn_retransmissions: 0,
            handshake_ms: None,
            packets_out: 40,
            packets_in: 40,
            bytes_out: 4000,
            bytes_in: 9000,
            names: vec![],
            http_statuses: Default::default(),
            proxy_connects: vec![],
            tunnel: None,
            first_seen: String::new(),
            last_seen: String::new(),
            ingress_iface: None,
        },
    };
    NodeReport {
        connections: vec![
            conn("198.51.100.30", 443, Category::Public),
            conn("10.244.1.20", 8080, Category::Internal),
        ],
        pods: vec![NodePod {
            namespace: "pay".into(),
            pod: "api-5d8f".into(),
            workload: Some("deployment/api".into()),
            addresses: vec!["10.244.2.7".parse().unwrap()],
            ..Default::default()
        }],
        ..NodeReport::empty("node-2", (now - 10_000_000_000, now), "ebpf")
    }
}

#[test]
fn the_page_shows_the_matrix_the_diagnoses_and_a_deep_linked_drill_down() {
    let browser = chromium();
    let test = "the_page_shows_the_matrix_the_diagnoses_and_a_deep_linked_drill_down";
    if !outflow_tests::required(test, "chromium (cargo xtask setup)", browser.is_some()) {
        return;
    }
    let browser = browser.unwrap();
    let c = Controller::start("browser");
    post_lab_window(&c);
    post_report(&c, &healthy_node());
    let base = format!("http://{}/", c.addr);

    let dom = browse(&browser, &base, &["--dump-dom"]);
    assert!(
        !dom.contains("id=\"status\" class=\"error\""),
        "the page's API calls failed:\n{dom}"
    );
    // The failing namespace first, the healthy one receding.
    let failing = dom.find("data-row=\"default~\"").expect("the default row");
    let healthy = dom.find("data-row=\"pay~\"").expect("the pay row");
    assert!(failing < healthy, "failing rows come first");
    assert!(
        dom.contains("<tr class=\"failing\" data-row=\"default~\">"),
        "{dom}"
    );
    assert!(
        dom.contains("<tr class=\"healthy\" data-row=\"pay~\">"),
        "{dom}"
    );
    let public = element_text(&dom, "data-cell=\"default~~public\"");
    assert!(public.starts_with("32% 6/19"), "{public}");
    assert!(
        dom.contains(
            "class=\"cell degraded\" data-category=\"public\" data-cell=\"default~~public\""
        ),
        "{dom}"
    );
    assert!(
        dom.contains(
            "class=\"cell failing\" data-category=\"onprem\" data-cell=\"default~~onprem\""
        ),
        "{dom}"
    );
    assert_eq!(element_text(&dom, "data-cell=\"pay~~public\""), "ok 12");
    // The diagnoses, each with its capture button.
    for id in [
        "destination:onprem/192.168.50.5:8080",
        "destination:public/198.51.100.20:80",
        "destination:public/203.0.113.7:80",
        "dns-name-missing:nx.example.com",
    ] {
        assert!(
            dom.contains(&format!("data-id=\"{id}\"")),
            "no diagnosis {id}:\n{dom}"
        );
    }
    assert!(
        dom.contains("data-pod=\"default/shop-web\""),
        "capture buttons: {dom}"
    );
    assert!(dom.contains("data-node=\"node-1\"") && dom.contains("data-node=\"node-2\""));
    assert!(
        dom.contains("id=\"drill\" hidden"),
        "no cell selected, no drill-down"
    );

    // A deep link to the public cell opens its destinations, failing first.
    let deep = format!("{base}#since=3600&cell=default~~public");
    let dom = browse(&browser, &deep, &["--dump-dom"]);
    assert!(!dom.contains("id=\"drill\" hidden"), "{dom}");
    // Failing destinations first: the first row is one, and every failing row comes before the
    // first healthy one.
    let rows: Vec<&str> = dom
        .split("<tr class=\"")
        .skip(1)
        .filter(|r| r.contains("data-destination="))
        .collect();
    assert!(rows.len() >= 4, "{dom}");
    let failing: Vec<bool> = rows.iter().map(|r| r.starts_with("failing\"")).collect();
    assert!(failing[0], "{dom}");
    assert!(failing.windows(2).all(|w| w[0] || !w[1]), "{failing:?}");
    for dest in ["198.51.100.20:80", "203.0.113.7:80", "nx.example.com"] {
        let row = format!("failing\" data-destination=\"{dest}\"");
        assert!(
            rows.iter().any(|r| r.starts_with(&row)),
            "{dest} failing in the drill-down"
        );
    }
    assert!(
        dom.contains("class=\"cell degraded selected\""),
        "the selected cell is marked"
    );
    assert!(
        dom.contains("10.244.1.10 → 203.0.113.7:80 tcp"),
        "the example record: {dom}"
    );

    // Screenshots, for people and CI's artifacts.
    let dir = artifacts();
    for (name, url) in [("matrix.png", base.clone()), ("drill-down.png", deep)] {
        let file = dir.join(name);
        let _ = std::fs::remove_file(&file);
        browse(
            &browser,
            &url,
            &[&format!("--screenshot={}", file.display())],
        );
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{name}: a screenshot of {size} bytes");
    }
}
