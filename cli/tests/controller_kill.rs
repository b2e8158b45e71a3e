//! A controller killed with SIGKILL while agents post loses no report it acknowledged: after a
//! restart on the same store, every report answered 204 is there, and the flow health view
//! counts exactly the reports the records hold (both are written in one transaction).

mod controller;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controller::Controller;
use outflow_core::report::ConnectionRecord;
use outflow_core::wire::{routes, NodeReport, Scope, Scoped};
use outflow_core::{Category, Outcome};

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Report `seq` of `sender`: one connection from a pod named after it.
fn report(sender: usize, seq: u64) -> NodeReport {
    let end = now_ns();
    let pod = format!("s{sender}-r{seq}");
    let rfc = outflow_core::report::rfc3339;
    NodeReport {
        report_id: Some(format!("{sender:04x}-{seq}")),
        connections: vec![Scoped {
            scope: Scope {
                pod: Some(pod),
                namespace: Some("default".into()),
                node: format!("node-{sender}"),
                window_start: rfc(end - 1_000_000_000),
                window_end: rfc(end),
                ..Scope::default()
            },
            record: ConnectionRecord {
                src: "10.244.1.10".parse().unwrap(),
                dst: "203.0.113.7".parse().unwrap(),
                dst_port: 443,
                proto: "tcp".into(),
                category: Category::Public,
                label: None,
                destination: None,
                egress: None,
                outcomes: BTreeMap::from([(Outcome::Established, 1)]),
                unreachable_codes: BTreeMap::new(),
                icmp_from: vec![],
                syn_retransmissions: 0,
                handshake_ms: None,
                packets_out: 3,
                packets_in: 2,
                bytes_out: 180,
                bytes_in: 120,
                names: vec![],
                http_statuses: BTreeMap::new(),
                proxy_connects: vec![],
                tunnel: None,
                first_seen: rfc(end - 1_000_000_000),
                last_seen: rfc(end),
                ingress_iface: None,
            },
        }],
        ..NodeReport::empty(
            &format!("node-{sender}"),
            (end - 1_000_000_000, end),
            "ebpf",
        )
    }
}

#[test]
fn a_controller_killed_under_load_keeps_every_report_it_acknowledged() {
    let mut c = Controller::start("sigkill");
    let url = format!("http://{}{}", c.addr, routes::REPORTS);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..6)
        .map(|sender| {
            let (url, acknowledged, stop) = (url.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(5)))
                        .http_status_as_error(false)
                        .build(),
                );
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let r = report(sender, seq);
                    let pod = r.connections[0].scope.pod.clone().unwrap();
                    match agent.post(&url).send_json(&r) {
                        Ok(resp) if resp.status() == 204 => acknowledged.lock().unwrap().push(pod),
                        // Killed: the connection fails; try again after the restart.
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    // Under load, killed mid-write.
    std::thread::sleep(Duration::from_millis(1_500));
    let before_kill = acknowledged.lock().unwrap().len();
    assert!(
        before_kill > 50,
        "too little load before the kill: {before_kill}"
    );
    c.kill_and_restart();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let rows: serde_json::Value = ureq::get(format!(
        "http://{}{}?since=3600&limit=10000",
        c.addr,
        routes::CONNECTIONS
    ))
    .call()
    .expect("the restarted controller answers")
    .body_mut()
    .read_json()
    .unwrap();
    let stored: std::collections::HashSet<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pod"].as_str())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|p| !stored.contains(p.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged reports lost to SIGKILL: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    // The view survived with the records: one established attempt per stored report.
    let view: serde_json::Value =
        ureq::get(format!("http://{}{}?since=3600", c.addr, routes::VIEW))
            .call()
            .expect("the view answers")
            .body_mut()
            .read_json()
            .unwrap();
    let cell = &view["rows"][0]["cells"][0];
    assert_eq!(cell["category"], "public", "{view}");
    assert_eq!(
        cell["connections"]["established"].as_u64(),
        Some(rows.as_array().unwrap().len() as u64),
        "{view}"
    );
}
