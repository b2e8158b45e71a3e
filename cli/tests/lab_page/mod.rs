//! The page at `/` over a lab's live controller and agents, in chromium driven over WebDriver:
//! what a person sees of the blackhole-one scenario (the matrix, the drill-down into a failing
//! cell, the diagnosis), and the capture they start from the diagnosis's button, run on the
//! live agent, stop, and download.
//!
//! The page's script fills everything in after loading, so each check waits for the page's own
//! "updated" status and reads the DOM it built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chromium::{artifacts, Driver};
use crate::controller::Controller;
use outflow_core::Outcome;
use outflow_tests::Lab;

/// The destination blackhole-one drops: cdn.example.com.
const BLACKHOLED: &str = "198.51.100.11";

/// The matrix as the page drew it, once its data is in: per row its key, its class and each
/// category's cell level, in the page's order.
const MATRIX: &str = r##"
    const status = document.getElementById("status");
    if (status.className === "error") return { error: status.textContent };
    if (!status.textContent.startsWith("updated")) return null;
    return [...document.querySelectorAll("#matrix tbody tr[data-row]")].map(tr => ({
      row: tr.dataset.row,
      class: tr.className,
      cells: Object.fromEntries([...tr.querySelectorAll("td[data-category]")].map(td =>
        [td.dataset.category, td.className.split(" ")[1]])),
    }));
"##;

/// The drill-down as the page drew it: its title, the selected cell, its destination rows and
/// the diagnoses it lists.
const DRILL: &str = r##"
    const status = document.getElementById("status");
    if (status.className === "error") return { error: status.textContent };
    if (!status.textContent.startsWith("updated") || document.getElementById("drill").hidden) return null;
    return {
      title: document.getElementById("drill-title").textContent,
      selected: [...document.querySelectorAll("#matrix td.selected")].map(td => td.dataset.cell),
      rows: [...document.querySelectorAll("#destinations tbody tr[data-destination]")].map(tr => ({
        destination: tr.dataset.destination, class: tr.className,
        failures: Number(tr.children[2].textContent) })),
      diagnoses: [...document.querySelectorAll("#cell-diagnoses .diagnosis")].map(d => d.dataset.id),
    };
"##;

/// Waits for the page to have drawn what `script` reads; fails on an API error.
fn drawn(page: &Driver, what: &str, script: &str) -> Value {
    page.wait_for(what, Duration::from_secs(15), |p| {
        let v = p.script(script);
        assert!(v.get("error").is_none(), "the page's API calls failed: {v}");
        if v.is_null() {
            Err("not drawn yet".into())
        } else {
            Ok(v)
        }
    })
}

fn rows_in(matrix: &Value) -> Vec<&Value> {
    matrix.as_array().expect("rows").iter().collect()
}

/// Checks the page over the blackhole-one run of `c`, whose one diagnosis is `diagnosis`, then
/// captures from the diagnosis's button.
pub fn check_blackhole_one(lab: &Lab, c: &Controller, diagnosis: &Value) {
    let t0 = Instant::now();
    let page = Driver::start(lab.prefix());
    let base = format!("http://{}/", c.addr);
    let dir = artifacts();

    // The matrix: shop and pay, on both nodes, fail to reach one public destination, so their
    // rows fail in the public column alone; every other row (the cluster DNS's) is healthy.
    page.open(&format!("{base}#since=600"));
    let matrix = drawn(&page, "the matrix", MATRIX);
    let rows = rows_in(&matrix);
    let mut failing: Vec<&str> = rows
        .iter()
        .filter(|r| r["class"] == "failing")
        .map(|r| r["row"].as_str().unwrap())
        .collect();
    failing.sort();
    assert_eq!(failing, ["pay~", "shop~"], "the failing rows: {matrix:#}");
    for r in &rows {
        let cells = &r["cells"];
        if ["shop~", "pay~"].contains(&r["row"].as_str().unwrap()) {
            assert_eq!(r["class"], "failing", "{} fails: {matrix:#}", r["row"]);
            let public = cells["public"].as_str().unwrap_or("");
            assert!(
                public == "degraded" || public == "failing",
                "{}'s public cell fails: {matrix:#}",
                r["row"]
            );
            for (cat, level) in cells.as_object().unwrap() {
                assert!(
                    cat == "public" || level == "ok" || level == "none",
                    "{} fails to public alone: {matrix:#}",
                    r["row"]
                );
            }
        } else {
            assert_eq!(r["class"], "healthy", "{} is healthy: {matrix:#}", r["row"]);
            for (cat, level) in cells.as_object().unwrap() {
                assert!(
                    level == "ok" || level == "none",
                    "{} {cat}: {level}: {matrix:#}",
                    r["row"]
                );
            }
        }
    }
    assert!(rows.len() > 2, "the cluster DNS's row too: {matrix:#}");
    let first_healthy = rows.iter().position(|r| r["class"] == "healthy").unwrap();
    assert!(
        rows[..first_healthy]
            .iter()
            .all(|r| r["class"] == "failing")
            && first_healthy == 2,
        "failing rows first: {matrix:#}"
    );
    // The diagnosis, as the API states it.
    let id = diagnosis["id"].as_str().expect("a diagnosis id");
    let shown = format!(r##"#diagnoses .diagnosis[data-id="{id}"]"##);
    let summary = page.script(&format!(
        r##"const d = document.querySelector('{shown}');
           return d && [d.dataset.kind, d.querySelector(".summary").textContent];"##
    ));
    assert_eq!(
        summary,
        serde_json::json!([diagnosis["kind"], diagnosis["summary"]]),
        "the diagnosis on the page"
    );
    page.screenshot(&dir.join("lab-matrix.png"));

    // A deep link into shop's public cell: its destinations, the blackholed one first.
    page.open(&format!("{base}#since=600&cell=shop~~public"));
    let drill = drawn(&page, "the drill-down", DRILL);
    assert_eq!(drill["title"], "shop → public", "{drill:#}");
    assert_eq!(drill["selected"], serde_json::json!(["shop~~public"]));
    let dests = drill["rows"].as_array().expect("destination rows");
    assert!(dests.len() >= 3, "the three public names: {drill:#}");
    // Named by address, or by the name the pods looked up; the diagnosis names it alike.
    let first = dests[0]["destination"].as_str().unwrap();
    assert!(
        [format!("{BLACKHOLED}:80"), "cdn.example.com:80".into()].contains(&first.to_string()),
        "the blackholed destination first: {drill:#}"
    );
    assert!(
        diagnosis["scope"]["destinations"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == first)),
        "the diagnosis is about {first}: {diagnosis:#}"
    );
    assert_eq!(dests[0]["class"], "failing", "{drill:#}");
    assert!(dests[0]["failures"].as_u64() > Some(0), "{drill:#}");
    for d in &dests[1..] {
        assert!(
            d["class"] == "" && d["failures"] == 0,
            "only {first} fails: {drill:#}"
        );
    }
    assert_eq!(drill["diagnoses"], serde_json::json!([id]), "{drill:#}");
    page.screenshot(&dir.join("lab-drill-down.png"));
    eprintln!(
        "lab page: matrix and drill-down in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    capture_from_the_diagnosis(lab, &page, &shown, diagnosis);
    eprintln!("lab page: all in {:.1} s", t0.elapsed().as_secs_f64());
}

/// Clicks the diagnosis's capture button; sends traffic from its pod while the capture runs;
/// stops it from the page; checks the page shows it done and the pcapng it downloaded.
fn capture_from_the_diagnosis(lab: &Lab, page: &Driver, shown: &str, diagnosis: &Value) {
    let hint = &diagnosis["evidence"]["capture"];
    let pod = hint["pod"]
        .as_str()
        .expect("the diagnosis suggests a capture");
    let filter = hint["filter"].as_str().unwrap();
    assert!(
        filter.contains(BLACKHOLED),
        "filtered to the destination: {filter}"
    );
    let button = format!("{shown} button.capture");
    let note = format!("{shown} .capture-state");
    // The capture's state, id and words under the button, and the button's words, once the
    // state is `want`.
    let state_is = |want: &str| {
        let script = format!(
            r##"const n = document.querySelector('{note}');
               return n && [n.dataset.state || "", n.dataset.capture || "", n.textContent,
                            document.querySelector('{button}').textContent];"##
        );
        page.wait_for(
            &format!("the capture {want}"),
            Duration::from_secs(20),
            |p| {
                let s = p.script(&script);
                if s[0] == want {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
    };
    page.click(&button);
    let running = state_is("running");
    assert_eq!(
        running[3], "stop",
        "a running capture's button stops it: {running}"
    );
    let id = running[1].as_str().unwrap().to_string();

    // What the pod sends to the blackholed destination: a SYN and its retransmission.
    let netns = format!("{}-{}", lab.prefix(), pod.split('/').nth(1).unwrap());
    let curl = Command::new("ip")
        .args(["netns", "exec", &netns, "curl", "-s", "-o", "/dev/null"])
        .args(["--connect-timeout", "2", &format!("http://{BLACKHOLED}/")])
        .status()
        .expect("running curl in the pod");
    assert!(!curl.success(), "{BLACKHOLED} is blackholed");

    page.click(&button);
    let done = state_is("done");
    let text = done[2].as_str().unwrap();
    assert!(
        text.starts_with(&format!("capture {id}: done, ")) && !text.contains(", 0 packets"),
        "the page shows the capture done with its packets: {done}"
    );
    assert_eq!(
        done[3], "capture",
        "an ended capture's button starts another"
    );
    // The Captures table, refreshed once it ended.
    page.wait_for("the capture in the table", Duration::from_secs(10), |p| {
        let row = p.script(&format!(
            r##"const tr = [...document.querySelectorAll("#captures tbody tr")]
                 .find(tr => tr.children[0].textContent === "{id}");
               return tr && [tr.children[2].textContent, tr.children[4].textContent];"##
        ));
        // The state, and why it ended when it was stopped: "done (stopped)".
        if row[0] == pod && row[1].as_str().is_some_and(|s| s.starts_with("done")) {
            Ok(())
        } else {
            Err(row.to_string())
        }
    });

    let file = downloaded(page, &format!("outflow-capture-{id}.pcapng"));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        bytes.get(..4),
        Some(&[0x0A, 0x0D, 0x0D, 0x0A][..]),
        "a pcapng section header block"
    );
    let report = outflow_tests::analyze(std::slice::from_ref(&file), &outflow_tests::lab_profile());
    let to_it: Vec<_> = report
        .connections
        .iter()
        .filter(|c| c.dst.to_string() == BLACKHOLED && c.dst_port == 80)
        .collect();
    assert!(
        !to_it.is_empty()
            && to_it
                .iter()
                .all(|c| !c.outcomes.is_empty() && !c.outcomes.contains_key(&Outcome::Established)),
        "the pcapng holds the pod's unanswered SYNs to {BLACKHOLED}: {:#?}",
        report.connections
    );
    assert!(
        report
            .connections
            .iter()
            .all(|c| c.dst.to_string() == BLACKHOLED),
        "the filter kept other traffic out: {:#?}",
        report.connections
    );
    let _ = std::fs::copy(&file, artifacts().join("lab-capture.pcapng"));
}

/// The file the browser saved as `name`, once whole.
fn downloaded(page: &Driver, name: &str) -> PathBuf {
    let file = page.downloads.join(name);
    let partial = |p: &Path| {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"))
            })
            .unwrap_or(false)
    };
    page.wait_for(
        &format!("the download {name}"),
        Duration::from_secs(15),
        |p| {
            if file.exists() && !partial(&p.downloads) {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    std::fs::read_dir(&p.downloads)
                        .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                ))
            }
        },
    );
    file
}
