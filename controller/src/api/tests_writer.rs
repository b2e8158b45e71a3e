//! Reports written by the one writer thread: reports waiting together share a commit and each
//! gets its own answer, and a report whose request is gone before its turn is not stored.

use std::time::Duration;

use axum::http::StatusCode;
use outflow_core::{Category, Outcome};
use tower::ServiceExt;

use super::tests::{call, connection, get, node_names, post, report, state, text};
use super::*;

/// Holds the store's lock from another thread until the returned sender is sent to (or
/// dropped): the writer waits on it as on a slow disk.
pub(super) fn hold_store(
    state: &AppState,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let store = state.store.clone();
    let holder = std::thread::spawn(move || {
        let _busy = store.lock().unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    locked_rx.recv().unwrap();
    (release_tx, holder)
}

fn node_report(node: &str) -> Vec<u8> {
    let mut r = report(vec![connection(
        "web",
        "203.0.113.7",
        Outcome::Unanswered,
        Category::Public,
    )]);
    r.node = node.into();
    serde_json::to_vec(&r).unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_waiting_together_share_a_commit_and_each_is_answered() {
    let state = state();
    let app = app(state.clone());
    let (release, holder) = hold_store(&state);
    let pending: Vec<_> = (0..20)
        .map(|i| {
            let (app, body) = (app.clone(), node_report(&format!("node-{i}")));
            tokio::spawn(async move { call(&app, post(body)).await })
        })
        .collect();
    while state.ingest_slots.available_permits() > MAX_INGEST_IN_FLIGHT - 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    for p in pending {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (_, nodes) = call(&app, get("/api/v1/health")).await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 20, "{nodes}");
    let (_, m) = text(&app, get("/metrics")).await;
    // The first report may be taken alone before the others arrive; the rest wait together.
    let batches = metric(&m, "outflow_store_batches_total");
    assert!(
        (1..=2).contains(&batches),
        "20 reports in {batches} commits"
    );
    assert_eq!(m.matches("outflow_reports_total{").count(), 20, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_request_is_gone_before_its_turn_is_not_stored() {
    let state = state();
    let app = app(state.clone());
    let (release, holder) = hold_store(&state);
    // The writer takes the first report and waits on the store with it.
    let first = tokio::spawn({
        let app = app.clone();
        async move { call(&app, post(node_report("node-a"))).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second waits behind it; its agent gives up (a timeout) before its turn.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        app.clone().oneshot(post(node_report("node-b"))),
    )
    .await;
    assert!(gave_up.is_err(), "answered while the store was held");
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::NO_CONTENT);
    // One more report goes through the writer after the abandoned one.
    let (status, _) = call(&app, post(node_report("node-c"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, health) = call(&app, get("/api/v1/health")).await;
    assert_eq!(
        node_names(&health),
        ["node-a", "node-c"],
        "the abandoned report was stored"
    );
    let (_, m) = text(&app, get("/metrics")).await;
    assert_eq!(metric(&m, "outflow_reports_abandoned_total"), 1);
    // Sent again, as its agent does, it is stored.
    let (status, _) = call(&app, post(node_report("node-b"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, health) = call(&app, get("/api/v1/health")).await;
    assert_eq!(health["nodes"].as_array().unwrap().len(), 3);
}
