//! Overlay tunnels, live: two node namespaces joined by a real kernel tunnel (tests/lab/tunnels.sh),
//! a pod on each, nginx and dnsmasq in pod B, blackholed, refused and answered connections and
//! DNS lookups from pod A, captured by tcpdump on node A's underlay. outflow must report the
//! pods' connections and lookups inside the tunnel exactly, with the nodes as the tunnel, and no
//! outer flow. Needs root and the kernel's tunnel driver; in CI both must be there.

use std::path::PathBuf;
use std::process::Command;

use outflow_core::Profile;
use outflow_tests::{analyze, conn, count, dns, privileged, required, root, Lab};

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
    check_report(kind, &pcap);
    std::fs::remove_file(&pcap).ok();
}

fn check_report(kind: &str, pcap: &PathBuf) {
    let profile = Profile::from_yaml(
        "podCIDRs: [10.244.0.0/16]\nnodeCIDRs: [10.224.0.0/16]\n",
        "tunnels-profile",
    )
    .expect("a valid profile");
    let r = analyze(std::slice::from_ref(pcap), &profile);
    let tunnelled = kind != "vlan";

    // Every IP packet on the underlay is one of the pods' (IPv6 is off), so all are tunnelled,
    // and no outer flow between the nodes is left in the report.
    assert!(r.capture.ip_packets >= 20, "{kind}: {:?}", r.capture);
    if tunnelled {
        assert_eq!(
            r.capture.tunnelled, r.capture.ip_packets,
            "{kind}: {:?}",
            r.capture
        );
    } else {
        assert_eq!(r.capture.tunnelled, 0, "{kind}: {:?}", r.capture);
    }
    assert_eq!(r.capture.tunnel_truncated, 0);
    for c in &r.connections {
        assert_eq!(c.src.to_string(), "10.244.1.10", "{kind}: {c:#?}");
    }

    let blackholed = conn(&r, "10.244.2.99", 80, "tcp");
    assert_eq!(
        count(&blackholed.outcomes, "unanswered"),
        1,
        "{kind}: {blackholed:#?}"
    );
    assert!(
        blackholed.syn_retransmissions >= 1,
        "{kind}: {blackholed:#?}"
    );
    assert_eq!(blackholed.packets_in, 0);

    let refused = conn(&r, "10.244.2.20", 81, "tcp");
    assert_eq!(refused.outcomes.len(), 1, "{kind}: {refused:#?}");
    assert_eq!(count(&refused.outcomes, "refused"), 1);

    let web = conn(&r, "10.244.2.20", 80, "tcp");
    assert_eq!(web.outcomes.len(), 1, "{kind}: {web:#?}");
    assert_eq!(count(&web.outcomes, "established"), 1);
    assert_eq!(count(&web.http_statuses, "200"), 1);
    assert_eq!(web.category.as_str(), "internal");
    // The DNS answer's name, then curl's Host header.
    assert_eq!(web.names, ["web.lab.test", "10.244.2.20"]);

    let ok = dns(&r, "10.244.1.10", "web.lab.test", "A");
    assert_eq!(count(&ok.outcomes, "ok"), 1, "{kind}: {ok:#?}");
    assert_eq!(
        ok.answers,
        ["10.244.2.20".parse::<std::net::IpAddr>().unwrap()]
    );
    let nx = dns(&r, "10.244.1.10", "nx.lab.test", "A");
    assert_eq!(count(&nx.outcomes, "nxdomain"), 1, "{kind}: {nx:#?}");

    for c in [blackholed, refused, web, conn(&r, "10.244.2.20", 53, "udp")] {
        let Some(t) = &c.tunnel else {
            assert!(!tunnelled, "{kind}: no tunnel on {c:#?}");
            continue;
        };
        assert!(tunnelled, "{kind}: a VLAN is not a tunnel: {c:#?}");
        let want_kind = kind.trim_end_matches("8472");
        let want_id = (kind != "ipip").then_some(42);
        assert_eq!(
            (
                t.kind.as_str(),
                t.outer_src.to_string().as_str(),
                t.outer_dst.to_string().as_str(),
                t.id,
                t.depth
            ),
            (want_kind, "10.224.0.4", "10.224.0.5", want_id, 1),
            "{kind}: {c:#?}"
        );
    }
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
fn geneve_is_reported_as_the_pods_traffic() {
    tunnel_lab("geneve_is_reported_as_the_pods_traffic", "geneve", "tge");
}

#[test]
fn ipip_is_reported_as_the_pods_traffic() {
    tunnel_lab("ipip_is_reported_as_the_pods_traffic", "ipip", "tip");
}

#[test]
fn gre_with_a_key_is_reported_as_the_pods_traffic() {
    tunnel_lab(
        "gre_with_a_key_is_reported_as_the_pods_traffic",
        "gre",
        "tgr",
    );
}

#[test]
fn a_vlan_tagged_uplink_is_reported_as_the_pods_traffic() {
    tunnel_lab(
        "a_vlan_tagged_uplink_is_reported_as_the_pods_traffic",
        "vlan",
        "tvn",
    );
}
