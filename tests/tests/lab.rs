//! The lab, live: network namespaces, real dnsmasq, nginx and tinyproxy, blackhole and prohibit
//! routes, real curl and dig from a pod with a Kubernetes resolv.conf, captured by tcpdump and
//! dumpcap on the node while it happens. outflow's report must match what the lab did, from the
//! pod's interface and from the node's `any` captures alike. Needs root; in CI it must run.

use outflow_tests::{analyze, assert_lab_results, lab_profile, privileged, Lab};

#[test]
fn lab_traffic_is_reported_as_the_lab_made_it() {
    if !privileged("lab_traffic_is_reported_as_the_lab_made_it") {
        return;
    }
    // A prefix of its own, so a developer's lab (`of`) or a demo (`ofdemo`) is left alone.
    let prefix = format!("oft{}", std::process::id() % 10_000);
    let out = std::env::temp_dir().join(format!("{prefix}-captures"));
    let lab = Lab::up(&prefix);
    lab.capture(&out);
    drop(lab);
    let profile = lab_profile();

    let pod = analyze(&[out.join("pod-veth.pcap")], &profile);
    assert_eq!(pod.capture.duplicates, 0);
    assert_lab_results(&pod);

    for node_capture in ["node-any.pcapng", "node-any-sll2.pcap"] {
        let node = analyze(&[out.join(node_capture)], &profile);
        assert!(
            node.capture.duplicates > node.capture.ip_packets,
            "{node_capture}: {:?}",
            node.capture
        );
        assert_lab_results(&node);
    }
    std::fs::remove_dir_all(&out).ok();
}
