//! The kube layer through the real kube client and watcher, against the API replay server:
//! the node's pods by field selector, changes and deletes, bookmarks, `410 Gone` and the relist,
//! dropped connections and refused requests.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use outflow_kube::{ClusterAccess, PodWatch, Snapshot};
use outflow_tests::kube_api::ApiReplay;
use serde_json::Value;

const NODE: &str = "aks-nodepool1-0";

fn fixture() -> PathBuf {
    outflow_tests::root().join("tests/fixtures/kube/pods.json")
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outflow-kube-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn start(test: &str) -> (ApiReplay, PodWatch) {
    let api = ApiReplay::start(&fixture());
    let kubeconfig = api.kubeconfig(&scratch(test));
    let watch = PodWatch::start(ClusterAccess::Kubeconfig(kubeconfig), NODE).expect("client");
    (api, watch)
}

/// Waits until the watch's view passes `ok`, or fails saying what it last saw.
fn wait_for(watch: &PodWatch, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = watch.snapshot();
        if watch.status().is_ok() && ok(&s) {
            return (*s).clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen in 20 s; status {:?}, pods {:?}",
            watch.status(),
            s.pods.values().map(|p| &p.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn owner(s: &Snapshot, addr: &str) -> Option<String> {
    s.owner_of(ip(addr))
        .map(|p| format!("{}/{}", p.namespace, p.name))
}

/// A pod from the fixture, renamed and readdressed, as a new pod of the same workload.
fn new_pod(template: &str, name: &str, uid: &str, addr: &str) -> Value {
    outflow_tests::kube_api::pod_like(&fixture(), template, name, uid, addr)
}

#[test]
fn the_watch_sees_only_its_nodes_pods_with_their_workloads() {
    let (api, watch) = start("names");
    let s = wait_for(&watch, "first list", |s| !s.pods.is_empty());
    let mut names: Vec<String> = s.pods.values().map(|p| p.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "coredns-6f776c8fb5-k2x9p",
            "db-0",
            "kube-proxy-7xk2m",
            "report-29437260-q8z7r",
            "web-7d9f8c6b5-2hq4w"
        ],
        "the pod on aks-nodepool1-1 must not be listed"
    );
    let web = s
        .owner_of(ip("10.244.1.11"))
        .expect("web holds its address");
    assert_eq!(web.workload.as_deref(), Some("deployment/web"));
    assert_eq!(web.uid, "c4d2a1e7-5b3f-4a9c-8e1d-7f6b2a0c9d88");
    let dns = s.owner_of(ip("10.244.1.10")).expect("coredns");
    assert_eq!(dns.workload.as_deref(), Some("deployment/coredns"));
    assert_eq!(
        s.owner_of(ip("10.244.1.12")).unwrap().workload.as_deref(),
        Some("statefulset/db")
    );
    // A finished Job's pod and a host-network pod hold no pod address.
    assert_eq!(owner(&s, "10.244.1.13"), None);
    assert_eq!(owner(&s, "10.224.0.4"), None);
    assert_eq!(s.host_addresses().collect::<Vec<_>>(), [ip("10.224.0.4")]);
    let requests = api.requests();
    let list = requests
        .iter()
        .find(|r| !r.contains("watch=true"))
        .expect("a list request");
    assert!(
        list.contains("fieldSelector=spec.nodeName%3Daks-nodepool1-0"),
        "{list}"
    );
    wait_for(&watch, "a watch open", |_| api.open_watches() == 1);
    let w = api
        .requests()
        .into_iter()
        .find(|r| r.contains("watch=true"))
        .expect("a watch");
    assert!(
        w.contains("allowWatchBookmarks=true") && w.contains("spec.nodeName%3Daks-nodepool1-0"),
        "{w}"
    );
}

#[test]
fn adds_changes_and_deletes_reach_the_view_and_a_reused_address_changes_hands() {
    let (api, watch) = start("churn");
    wait_for(&watch, "first list", |s| !s.pods.is_empty());
    wait_for(&watch, "a watch open", |_| api.open_watches() == 1);
    api.put(new_pod(
        "web-7d9f8c6b5-2hq4w",
        "web-7d9f8c6b5-x7p2k",
        "uid-x7p2k",
        "10.244.1.20",
    ));
    wait_for(&watch, "the added pod", |s| {
        owner(s, "10.244.1.20").as_deref() == Some("shop/web-7d9f8c6b5-x7p2k")
    });
    // web-…-2hq4w ends; a new pod gets its address before the old object is gone.
    let mut old = new_pod(
        "web-7d9f8c6b5-2hq4w",
        "web-7d9f8c6b5-2hq4w",
        "c4d2a1e7-5b3f-4a9c-8e1d-7f6b2a0c9d88",
        "10.244.1.11",
    );
    old["metadata"]["creationTimestamp"] = "2026-12-05T14:02:10Z".into();
    old["status"]["phase"] = "Failed".into();
    api.put(old);
    wait_for(&watch, "the failed pod lets its address go", |s| {
        owner(s, "10.244.1.11").is_none()
    });
    api.put(new_pod("db-0", "cache-0", "uid-cache-0", "10.244.1.11"));
    let s = wait_for(&watch, "the new owner", |s| {
        owner(s, "10.244.1.11").as_deref() == Some("shop/cache-0")
    });
    assert_eq!(
        s.owner_of(ip("10.244.1.11")).unwrap().workload.as_deref(),
        Some("statefulset/db")
    );
    api.delete("shop", "cache-0");
    api.delete("shop", "web-7d9f8c6b5-2hq4w");
    wait_for(&watch, "deletes", |s| {
        owner(s, "10.244.1.11").is_none() && s.pods.len() == 5
    });
}

#[test]
fn an_expired_version_relists_and_a_pod_deleted_in_the_gap_leaves() {
    let (api, watch) = start("gone");
    wait_for(&watch, "first list", |s| owner(s, "10.244.1.12").is_some());
    wait_for(&watch, "a watch open", |_| api.open_watches() == 1);
    let lists_before = api
        .requests()
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count();
    api.delete_unseen("shop", "db-0");
    let s = wait_for(&watch, "the relist", |s| owner(s, "10.244.1.12").is_none());
    assert_eq!(s.pods.len(), 4);
    let lists = api
        .requests()
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count();
    assert_eq!(
        lists,
        lists_before + 1,
        "a 410 is answered by exactly one relist"
    );
    // The stream did not end: later changes still arrive.
    wait_for(&watch, "a watch open again", |_| api.open_watches() == 1);
    api.put(new_pod("db-0", "db-1", "uid-db-1", "10.244.1.14"));
    wait_for(&watch, "a change after the relist", |s| {
        owner(s, "10.244.1.14").is_some()
    });
}

#[test]
fn a_dropped_connection_watches_again_from_the_bookmark_without_relisting() {
    let (api, watch) = start("drop");
    wait_for(&watch, "first list", |s| !s.pods.is_empty());
    wait_for(&watch, "a watch open", |_| api.open_watches() == 1);
    // Another node's pod moves the version on; only the bookmark tells this watch so.
    api.put(new_pod(
        "web-7d9f8c6b5-9kd2s",
        "web-7d9f8c6b5-zz",
        "uid-zz",
        "10.244.2.21",
    ));
    let mark = api.bookmark();
    std::thread::sleep(Duration::from_millis(200));
    api.drop_watches();
    wait_for(&watch, "a watch open again", |_| api.open_watches() == 1);
    let requests = api.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| !r.contains("watch=true"))
            .count(),
        1,
        "no relist: {requests:#?}"
    );
    let again = requests
        .iter()
        .filter(|r| r.contains("watch=true"))
        .nth(1)
        .expect("a second watch");
    assert!(
        again.contains(&format!("resourceVersion={mark}")),
        "watches from the bookmark: {again}"
    );
    api.put(new_pod("db-0", "db-2", "uid-db-2", "10.244.1.15"));
    wait_for(&watch, "a change after the reconnect", |s| {
        owner(s, "10.244.1.15").is_some()
    });
}

#[test]
fn a_refused_list_says_why_and_the_watch_recovers() {
    let api = ApiReplay::start(&fixture());
    api.refuse_next(2);
    let kubeconfig = api.kubeconfig(&scratch("refused"));
    let watch = PodWatch::start(ClusterAccess::Kubeconfig(kubeconfig), NODE).expect("client");
    let deadline = Instant::now() + Duration::from_secs(10);
    let why = loop {
        if let Some(e) = watch.last_error() {
            break e;
        }
        assert!(Instant::now() < deadline, "no error reported");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(why.contains("forbidden"), "{why}");
    assert!(watch.status().is_err());
    wait_for(&watch, "the list after the refusals", |s| s.pods.len() == 5);
}

#[test]
fn a_kubeconfig_that_cannot_be_used_is_named() {
    let dir = scratch("badconfig");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, "apiVersion: v1\nkind: Config\nclusters: [oops\n").unwrap();
    let err = PodWatch::start(ClusterAccess::Kubeconfig(path.clone()), NODE)
        .err()
        .expect("refused");
    let text = outflow_core::error_chain(&err);
    assert!(text.contains(&path.display().to_string()), "{text}");
}
