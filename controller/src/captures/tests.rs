//! Captures kept on disk: states, handing over to agents, eviction and the quiet-agent warning.

use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("outflow-captures-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec(pod: &str) -> CaptureSpec {
    CaptureSpec {
        pod: Some(pod.to_string()),
        ..CaptureSpec::default()
    }
}

fn done(caps: &Captures, id: u64, bytes: usize) {
    assert_eq!(caps.take_tasks("n1", 1).len(), 1);
    let mut file = caps.open_upload(id).expect("open");
    caps.append(id, &mut file, &vec![7u8; bytes])
        .expect("append");
    caps.finish(
        id,
        CaptureResult {
            ended: "stopped".into(),
            ..CaptureResult::default()
        },
        9,
    )
    .expect("finish");
}

#[test]
fn finished_captures_past_the_budget_are_evicted_oldest_first_and_survive_a_restart() {
    let d = dir("budget");
    let caps = Captures::open(&d, 2500).expect("open");
    for _ in 0..3 {
        let id = caps.create(spec("default/web"), "n1".into(), 1).id;
        done(&caps, id, 1000);
    }
    let ids: Vec<u64> = caps.list().iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![3, 2], "the oldest went to stay within 2500 bytes");
    assert!(!caps.path(1).exists() && caps.path(2).exists());
    let again = Captures::open(&d, 2500).expect("reopen");
    let listed: Vec<(u64, CaptureState)> = again.list().iter().map(|c| (c.id, c.state)).collect();
    assert_eq!(
        listed,
        vec![(3, CaptureState::Done), (2, CaptureState::Done)]
    );
    assert_eq!(
        again.create(spec("default/web"), "n1".into(), 1).id,
        4,
        "ids are not reused"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_capture_goes_pending_running_stopping_done_and_only_its_node_takes_it() {
    let d = dir("states");
    let caps = Captures::open(&d, u64::MAX).expect("open");
    let id = caps.create(spec("default/web"), "n1".into(), 1).id;
    assert!(
        caps.take_tasks("n2", 1).is_empty(),
        "another node's agent does not get it"
    );
    assert_eq!(caps.take_tasks("n1", 1)[0].id, id);
    assert!(caps.take_tasks("n1", 1).is_empty(), "handed over once");
    assert_eq!(
        caps.stop(id, 2).expect("stop").state,
        CaptureState::Stopping
    );
    caps.finish(
        id,
        CaptureResult {
            packets: 5,
            ended: "stopped".into(),
            ..CaptureResult::default()
        },
        3,
    )
    .expect("finish");
    let c = caps.get(id).expect("kept");
    assert_eq!((c.state, c.packets), (CaptureState::Done, 5));
    let pending = caps.create(spec("default/db"), "n1".into(), 4).id;
    let c = caps.stop(pending, 5).expect("stop");
    assert_eq!(
        c.state,
        CaptureState::Done,
        "a capture stopped before it started is over"
    );
    assert!(caps.take_tasks("n1", 1).is_empty());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_capture_on_a_node_whose_agent_went_quiet_says_so_at_once() {
    let caps = Captures::open(&dir("stale"), 1 << 20).expect("open");
    let start = caps.opened_ns;
    let s = 1_000_000_000;
    // Just started: agents have not had time to poll; no warning.
    let fresh = caps.create(spec("default/web"), "n1".into(), start + s);
    assert_eq!(fresh.warning, None);
    // An agent that polls is heard from; one that stopped 2 minutes ago is not.
    caps.take_tasks("n1", start + 10 * s);
    caps.take_tasks("n2", start + 10 * s);
    caps.take_tasks("n1", start + 120 * s);
    let live = caps.create(spec("default/web"), "n1".into(), start + 125 * s);
    assert_eq!(live.warning, None);
    let quiet = caps.create(spec("default/api"), "n2".into(), start + 130 * s);
    let w = quiet.warning.expect("a warning");
    assert!(
        w.contains("node n2's agent last asked for captures 120 s ago"),
        "{w}"
    );
    // A node no agent ever polled for, once the controller has run long enough to know.
    let unknown = caps.create(spec("default/db"), "n9".into(), start + 130 * s);
    let w = unknown.warning.expect("a warning");
    assert!(w.contains("no agent on node n9 has asked"), "{w}");
    // The warning is part of what the API serves for the capture.
    assert_eq!(caps.get(unknown.id).expect("kept").warning, Some(w));
}
