//! Shipping reports to a real controller (in-process, on loopback) that is down at first:
//! every report is either delivered or counted as dropped, and the controller learns the count.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outflow_agent::http::Token;
use outflow_agent::ship::{ShipConfig, Shipper};
use outflow_controller::{app, AppState, Store};
use outflow_core::wire::NodeReport;
use serde_json::Value;

fn report(node: &str, i: u64) -> NodeReport {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    NodeReport::empty(node, (now - 1_000_000 + i, now + i), "ebpf")
}

/// A port nothing listens on (for now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// Serves the controller on `port` from a thread of its own.
fn controller(port: u16, token: &str) {
    let state = AppState::new(Store::open(Path::new(":memory:"), u64::MAX).expect("store"))
        .with_token(Some(token.to_string()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            axum::serve(listener, app(state)).await.expect("serve");
        })
    });
}

fn health(port: u16, token: &str) -> Value {
    let mut resp = ureq::get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .expect("health");
    serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json")
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reports_wait_for_a_controller_that_is_down_and_those_past_the_queue_are_counted() {
    let port = free_port();
    let shipper = Shipper::start(ShipConfig {
        controller: format!("http://127.0.0.1:{port}"),
        token: Token::Fixed("t0ken".into()),
        capacity: 3,
        timeout: Duration::from_secs(2),
    })
    .expect("shipper");
    let sent = 8;
    for i in 0..sent {
        shipper.send(report("node-1", i));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = shipper.stats();
    assert_eq!(before.delivered, 0, "nothing can be delivered yet");
    // Three wait in the queue, one may be in flight: the rest were dropped, oldest first.
    assert!(before.dropped >= sent - 4, "{before:?}");

    controller(port, "t0ken");
    wait_until("the queue to drain", || {
        let s = shipper.stats();
        s.queued == 0 && s.delivered + s.dropped == sent
    });
    let after = shipper.close(Duration::from_secs(1));
    assert!(
        after.delivered >= 3,
        "the queued reports got through: {after:?}"
    );
    let h = health(port, "t0ken");
    let node = &h["nodes"][0];
    assert_eq!(node["reports"], after.delivered, "{h}");
    assert_eq!(
        node["totals"]["reports_dropped"], after.dropped,
        "the controller learns how many reports it missed: {h}"
    );
}

#[test]
fn a_report_the_controller_refuses_is_dropped_and_counted_not_retried_forever() {
    let port = free_port();
    controller(port, "k");
    let shipper = Shipper::start(ShipConfig {
        controller: format!("http://127.0.0.1:{port}"),
        token: Token::Fixed("k".into()),
        capacity: 10,
        timeout: Duration::from_secs(2),
    })
    .expect("shipper");
    wait_until("the controller to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    shipper.send(report("", 0)); // a node with no name: 400
    shipper.send(report("node-2", 1));
    wait_until("both reports handled", || {
        let s = shipper.stats();
        s.delivered + s.dropped == 2
    });
    let s = shipper.close(Duration::from_secs(1));
    assert_eq!((s.delivered, s.dropped), (1, 1), "{s:?}");
    let h = health(port, "k");
    assert_eq!(h["nodes"][0]["totals"]["reports_dropped"], 1, "{h}");
}
