//! The controller's cluster-wide watch through the real kube client and watcher, against the API
//! replay server: Services, EndpointSlices, Nodes and pods name addresses, follow changes and
//! deletes, and a relist after `410 Gone` drops what was deleted unseen.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use outflow_core::wire::cluster::ClusterProfile;
use outflow_kube::{ClusterAccess, ClusterNames};
use outflow_tests::kube_api::ApiReplay;
use serde_json::json;

fn start(test: &str) -> (ApiReplay, ClusterNames) {
    start_with(test, |_| {})
}

/// Starts the watch against a replay that `prepare` set up first.
fn start_with(test: &str, prepare: impl FnOnce(&ApiReplay)) -> (ApiReplay, ClusterNames) {
    let fixtures = outflow_tests::root().join("tests/fixtures/kube");
    let api = ApiReplay::start(&fixtures.join("pods.json"));
    api.load(&fixtures.join("cluster.json"));
    prepare(&api);
    let dir = std::env::temp_dir().join(format!("outflow-names-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let names =
        ClusterNames::start(ClusterAccess::Kubeconfig(api.kubeconfig(&dir))).expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while names.status().is_err() {
        assert!(
            Instant::now() < deadline,
            "never synced: {:?}",
            names.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (api, names)
}

fn name(names: &ClusterNames, ip: &str) -> Option<String> {
    names.name_of(ip.parse::<IpAddr>().expect("address"))
}

/// Waits until `ip` is named `want`, or fails saying what it is named.
fn wait_name(names: &ClusterNames, ip: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while name(names, ip).as_deref() != want {
        assert!(
            Instant::now() < deadline,
            "{ip}: want {want:?}, named {:?}",
            name(names, ip)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn services_pods_nodes_and_endpoints_name_addresses_across_the_cluster() {
    let (api, names) = start("all");
    let cases = [
        ("10.0.0.10", Some("service kube-system/kube-dns")),
        ("10.0.12.34", Some("service shop/web")),
        (
            "203.0.113.70",
            Some("service shop/storefront (load balancer)"),
        ),
        ("10.0.40.1", Some("service shop/storefront")),
        // Pods of every node, with their workloads; a pod that is also an endpoint is the pod.
        ("10.244.1.12", Some("pod shop/db-0 (statefulset/db)")),
        (
            "10.244.2.20",
            Some("pod shop/web-7d9f8c6b5-9kd2s (deployment/web)"),
        ),
        // The node's address, though a host-network pod (kube-proxy) shows it too.
        ("10.224.0.4", Some("node aks-nodepool1-0")),
        ("10.224.0.5", Some("node aks-nodepool1-1")),
        // A Service without a selector: its endpoint is all there is of it.
        ("10.50.1.5", Some("service shop/legacy-db (endpoint)")),
        // The finished CronJob pod's address is nobody's now.
        ("10.244.1.13", None),
        // The nodes run on Azure, so Azure's platform addresses are named.
        (
            "168.63.129.16",
            Some("azure DNS and wireserver (168.63.129.16)"),
        ),
        ("169.254.169.254", Some("azure instance metadata (IMDS)")),
        ("198.51.100.20", None),
    ];
    for (ip, want) in cases {
        assert_eq!(name(&names, ip).as_deref(), want, "{ip}");
    }
    // The watches are cluster-wide: no field selector.
    let requests = api.requests();
    for path in [
        "/api/v1/services?",
        "/api/v1/nodes?",
        "/api/v1/pods?",
        "/apis/discovery.k8s.io/v1/endpointslices?",
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(&format!("GET {path}")) && !r.contains("fieldSelector")),
            "{path}: {requests:?}"
        );
    }

    // A Service's address changes; a deleted Service's address is nobody's.
    let mut web: serde_json::Value = {
        let list: serde_json::Value = serde_json::from_slice(
            &std::fs::read(outflow_tests::root().join("tests/fixtures/kube/cluster.json")).unwrap(),
        )
        .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "web")
            .cloned()
            .unwrap()
    };
    web["spec"]["clusterIP"] = json!("10.0.12.35");
    web["spec"]["clusterIPs"] = json!(["10.0.12.35"]);
    api.put(web);
    wait_name(&names, "10.0.12.35", Some("service shop/web"));
    assert_eq!(name(&names, "10.0.12.34"), None);
    api.delete_object("Service", "shop", "web");
    wait_name(&names, "10.0.12.35", None);

    // A node that leaves takes its name, and its address, with it.
    api.delete_object("Node", "", "aks-nodepool1-1");
    wait_name(&names, "10.224.0.5", None);
}

#[test]
fn a_relist_after_410_gone_forgets_what_was_deleted_while_unseen() {
    let (api, names) = start("relist");
    assert_eq!(
        name(&names, "10.0.12.34").as_deref(),
        Some("service shop/web")
    );
    api.delete_unseen_object("Service", "shop", "web");
    wait_name(&names, "10.0.12.34", None);
    // The other kinds were relisted too (every watch was told 410) and kept their names.
    assert_eq!(
        name(&names, "10.244.1.12").as_deref(),
        Some("pod shop/db-0 (statefulset/db)")
    );
    assert_eq!(
        name(&names, "10.224.0.4").as_deref(),
        Some("node aks-nodepool1-0")
    );
    assert!(names.status().is_ok(), "{:?}", names.status());
}

/// Waits until the cluster profile satisfies `done`, or fails showing it.
fn wait_profile(names: &ClusterNames, done: impl Fn(&ClusterProfile) -> bool) -> ClusterProfile {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = names.profile();
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "{p:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn strings<T: ToString>(all: &[T]) -> Vec<String> {
    all.iter().map(T::to_string).collect()
}

#[test]
fn the_cluster_tells_its_pod_ranges_node_addresses_and_dns_service() {
    // The recorded cluster runs Kubernetes 1.31: no ServiceCIDRs.
    let (api, names) = start("profile");
    let p = names.profile();
    assert_eq!(strings(&p.pod_cidrs), ["10.244.1.0/24", "10.244.2.0/24"]);
    assert_eq!(strings(&p.node_addresses), ["10.224.0.4", "10.224.0.5"]);
    assert_eq!(strings(&p.cluster_dns), ["10.0.0.10"]);
    assert_eq!(strings(&p.service_addresses), ["10.0.0.1", "10.0.0.10"]);
    assert!(p.service_cidrs.is_empty());
    assert!(
        p.notes.iter().any(|n| n.contains("no ServiceCIDRs")),
        "{:?}",
        p.notes
    );
    assert!(
        api.requests()
            .iter()
            .all(|r| !r.contains("servicecidrs") || !r.contains("watch=true")),
        "a ServiceCIDR watch against an API that has none would fail forever"
    );
    // A node leaves: its range and address go with it.
    api.delete_object("Node", "", "aks-nodepool1-1");
    let p = wait_profile(&names, |p| p.pod_cidrs.len() == 1);
    assert_eq!(strings(&p.node_addresses), ["10.224.0.4"]);
}

#[test]
fn a_cluster_of_1_33_or_later_tells_its_service_range() {
    let (api, names) = start_with("service-cidr", |api| {
        api.serve_service_cidrs();
        api.put(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": "kubernetes", "resourceVersion": "5"},
            "spec": {"cidrs": ["10.0.0.0/16", "fd00:10::/108"]},
        }));
    });
    // ServiceCIDRs are listed beside the four kinds that make the watch ready.
    let p = wait_profile(&names, |p| !p.service_cidrs.is_empty());
    assert_eq!(strings(&p.service_cidrs), ["10.0.0.0/16", "fd00:10::/108"]);
    assert!(
        !p.notes.iter().any(|n| n.contains("ServiceCIDR")),
        "{:?}",
        p.notes
    );
    // A second range added to a running cluster is watched in.
    api.put(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": "extra"},
        "spec": {"cidrs": ["10.1.0.0/16"]},
    }));
    wait_profile(&names, |p| p.service_cidrs.len() == 3);
}
