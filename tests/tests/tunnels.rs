//! Overlay tunnels, live: two node namespaces joined by a real kernel tunnel (tests/lab/tunnels.sh),
//! a pod on each, nginx and dnsmasq in pod B, blackholed, refused and answered connections and
//! DNS lookups from pod A, captured by tcpdump on node A's underlay. outflow must report the
//! pods' connections and lookups inside the tunnel exactly, with the nodes as the tunnel, and no
//! outer flow. Needs root and the kernel's tunnel driver; in CI both must be there. The kernel
//! of the machines CI runs on has VXLAN only, so the other kinds are ignored (listed as such,
//! never passed) and run with `--ignored` where the kernel has their driver; their decoding is
//! tested on built packets in core's tunnel tests.

use std::process::Command;

use outflow_tests::{analyze, assert_tunnel_results, lab_profile, privileged, required, root, Lab};

const SCRIPT: &str = "tunnels.sh";

/// Builds the lab for `kind`, captures its traffic on the underlay and checks the report.
fn tunnel_lab(test: &str, kind: &str, prefix: &str) {
    if !privileged(test) {
        return;
    }
    let supported = Command::new(root().join("tests/lab").join(SCRIPT))
        .args(["probe", kind])
        .status()
        .is_ok_and(|s| s.success());
    if !required(
        test,
        &format!("kernel support for {kind} devices"),
        supported,
    ) {
        return;
    }
    // A prefix of the test's own, so parallel tests and a developer's lab are left alone.
    let prefix = format!("{prefix}{}", std::process::id() % 1000);
    let lab = Lab::up_from_with(SCRIPT, &prefix, &[kind]);
    let pcap = std::env::temp_dir().join(format!("{prefix}-{kind}.pcap"));
    assert!(
        lab.run(&["capture", kind, pcap.to_str().expect("a UTF-8 temp path")]),
        "{SCRIPT} capture {prefix} {kind} failed"
    );
    drop(lab);
    assert_tunnel_results(kind, &analyze(std::slice::from_ref(&pcap), &lab_profile()));
    std::fs::remove_file(&pcap).ok();
}

#[test]
fn vxlan_on_port_4789_is_reported_as_the_pods_traffic() {
    tunnel_lab(
        "vxlan_on_port_4789_is_reported_as_the_pods_traffic",
        "vxlan",
        "tvx",
    );
}

#[test]
fn vxlan_on_the_kernels_port_8472_is_reported_as_the_pods_traffic() {
    tunnel_lab(
        "vxlan_on_the_kernels_port_8472_is_reported_as_the_pods_traffic",
        "vxlan8472",
        "tvl",
    );
}

#[test]
#[ignore = "needs the kernel's geneve driver, which this machine class's kernel lacks (it has vxlan): run with --ignored on one that has it"]
fn geneve_is_reported_as_the_pods_traffic() {
    tunnel_lab("geneve_is_reported_as_the_pods_traffic", "geneve", "tge");
}

#[test]
#[ignore = "needs the kernel's ipip driver, which this machine class's kernel lacks (it has vxlan): run with --ignored on one that has it"]
fn ipip_is_reported_as_the_pods_traffic() {
    tunnel_lab("ipip_is_reported_as_the_pods_traffic", "ipip", "tip");
}

#[test]
#[ignore = "needs the kernel's ip_gre driver, which this machine class's kernel lacks (it has vxlan): run with --ignored on one that has it"]
fn gre_with_a_key_is_reported_as_the_pods_traffic() {
    tunnel_lab(
        "gre_with_a_key_is_reported_as_the_pods_traffic",
        "gre",
        "tgr",
    );
}

#[test]
#[ignore = "needs the kernel's 8021q driver, which this machine class's kernel lacks (it has vxlan): run with --ignored on one that has it"]
fn a_vlan_tagged_uplink_is_reported_as_the_pods_traffic() {
    tunnel_lab(
        "a_vlan_tagged_uplink_is_reported_as_the_pods_traffic",
        "vlan",
        "tvn",
    );
}
