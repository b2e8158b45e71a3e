//! The eBPF datapath against the real kernel: load, attach to a veth in a namespace of the
//! test's own, see packets, detach and leave nothing behind. Root only.

use std::process::Command;

use outflow_agent::datapath::ebpf::EbpfDatapath;
use outflow_agent::datapath::{Datapath, TcMode};
use outflow_agent::{netlink, netns};

use outflow_tests::{privileged, required};

/// TCX is on kernels from 6.6: where it is missing, CI must say so rather than pass unchecked.
fn tcx(test: &str) -> bool {
    required(
        test,
        "a kernel with TCX (6.6 or later)",
        TcMode::for_this_kernel() == TcMode::Tcx,
    )
}

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .expect("sh")
        .success();
    assert!(ok, "{cmd}");
}

struct Ns(&'static str);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

fn tc_filters(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "tc", "filter", "show", "dev", dev, "ingress",
        ])
        .output()
        .expect("tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qdiscs(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "tc", "qdisc", "show", "dev", dev])
        .output()
        .expect("tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node namespace with veth `vethp` whose peer `eth0` is in a pod namespace at 10.99.0.2,
/// the node side at 10.99.0.1.
fn lab(node: &'static str, pod: &'static str) -> (Ns, Ns) {
    let guards = (Ns(node), Ns(pod));
    sh(&format!(
        "ip netns del {node} 2>/dev/null; ip netns del {pod} 2>/dev/null; \
         ip netns add {node} && ip netns add {pod} && \
         ip -n {node} link add vethp type veth peer name eth0 netns {pod} && \
         ip -n {node} addr add 10.99.0.1/24 dev vethp && ip -n {node} link set vethp up && \
         ip -n {pod} addr add 10.99.0.2/24 dev eth0 && ip -n {pod} link set eth0 up && \
         ip -n {pod} link set lo up"
    ));
    (guards.0, guards.1)
}

/// A refused TCP connection from the pod to `port`: SYN out, RST back.
fn refused_to(pod: &str, port: u16) {
    let _ = Command::new("ip")
        .args(["netns", "exec", pod, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/10.99.0.1/{port} || true"))
        .output();
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// A refused TCP connection from the pod: SYN out, RST back.
fn refused_connection(pod: &str) {
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            pod,
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.99.0.1/9 || true",
        ])
        .output();
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// The programs loaded and attached to `vethp`, from inside the node namespace.
fn loaded_on_vethp(mode: TcMode) -> std::io::Result<EbpfDatapath> {
    let mut dp = EbpfDatapath::load(4096, 1 << 16, mode).map_err(std::io::Error::other)?;
    let link = netlink::links()?
        .into_iter()
        .find(|l| l.name == "vethp")
        .expect("vethp exists");
    dp.attach(&link.name, link.index)
        .map_err(std::io::Error::other)?;
    Ok(dp)
}

fn attach_count_detach(mode: TcMode, node: &'static str, pod: &'static str) {
    let _g = lab(node, pod);
    let (events, traffic, filters_during) = netns::run_in(node, move || {
        let mut dp = loaded_on_vethp(mode)?;
        let filters = tc_filters(node, "vethp");
        refused_connection(pod);
        let mut events = 0;
        dp.read_events(|_| events += 1);
        let traffic = dp.read_traffic(0, |_| events += 1);
        dp.detach_all();
        Ok((events, traffic, filters))
    })
    .expect("datapath runs in the node namespace");
    assert!(
        events >= 2,
        "the SYN and the RST reach user space, got {events}"
    );
    assert!(
        traffic
            .iter()
            .any(|t| t.dport == 9 && t.proto == 6 && t.packets >= 1),
        "the flow map counted the pod's SYN: {traffic:?}"
    );
    if mode == TcMode::Netlink {
        assert!(
            filters_during.contains("outflow_ingress"),
            "{filters_during}"
        );
        assert!(
            !tc_filters(node, "vethp").contains("outflow"),
            "filters removed"
        );
        assert!(
            !qdiscs(node, "vethp").contains("clsact"),
            "the qdisc it added is removed"
        );
    }
}

#[test]
fn tcx_attach_sees_a_refused_connection_and_detaches() {
    let test = "tcx_attach_sees_a_refused_connection_and_detaches";
    if !privileged(test) || !tcx(test) {
        return;
    }
    attach_count_detach(TcMode::Tcx, "oftdn1", "oftdp1");
}

#[test]
fn netlink_attach_sees_a_refused_connection_and_leaves_no_filter_or_qdisc() {
    if !privileged("netlink_attach_sees_a_refused_connection_and_leaves_no_filter_or_qdisc") {
        return;
    }
    attach_count_detach(TcMode::Netlink, "oftdn2", "oftdp2");
}

#[test]
fn another_tools_programs_and_filters_keep_working_and_the_qdisc_we_did_not_add_stays() {
    let test = "another_tools_programs_and_filters_keep_working_and_the_qdisc_we_did_not_add_stays";
    if !privileged(test) || !tcx(test) {
        return;
    }
    let (node, pod) = ("oftdn3", "oftdp3");
    let _g = lab(node, pod);
    // Another tool's classifier on the same clsact qdisc, added before us.
    sh(&format!(
        "ip netns exec {node} tc qdisc add dev vethp clsact && \
         ip netns exec {node} tc filter add dev vethp ingress pref 1 u32 match u32 0 0"
    ));
    let (theirs_before, ours, theirs_after) = netns::run_in(node, move || {
        let link = netlink::links()?
            .into_iter()
            .find(|l| l.name == "vethp")
            .expect("vethp");
        // Another tool's BPF program (TCX), attached first and still there after we leave.
        let mut other =
            EbpfDatapath::load(4096, 1 << 16, TcMode::Tcx).map_err(std::io::Error::other)?;
        other
            .attach(&link.name, link.index)
            .map_err(std::io::Error::other)?;
        let mut dp =
            EbpfDatapath::load(4096, 1 << 16, TcMode::Netlink).map_err(std::io::Error::other)?;
        dp.attach(&link.name, link.index)
            .map_err(std::io::Error::other)?;
        refused_connection(pod);
        let (mut theirs_before, mut ours) = (0, 0);
        other.read_events(|_| theirs_before += 1);
        dp.read_events(|_| ours += 1);
        dp.detach_all();
        refused_connection(pod);
        let mut theirs_after = 0;
        other.read_events(|_| theirs_after += 1);
        Ok((theirs_before, ours, theirs_after))
    })
    .expect("runs");
    assert!(
        theirs_before >= 2 && ours >= 2,
        "both see the SYN and RST: {theirs_before} {ours}"
    );
    assert!(
        theirs_after >= 2,
        "the other program works after we detach: {theirs_after}"
    );
    let filters = tc_filters(node, "vethp");
    assert!(
        filters.contains("u32"),
        "the other tool's filter stays: {filters}"
    );
    assert!(!filters.contains("outflow"), "ours is gone: {filters}");
    assert!(
        qdiscs(node, "vethp").contains("clsact"),
        "the qdisc we did not add stays"
    );
}

#[test]
fn the_node_knows_which_namespace_its_veth_leads_to() {
    if !privileged("the_node_knows_which_namespace_its_veth_leads_to") {
        return;
    }
    let (node, pod) = ("oftdn4", "oftdp4");
    let _g = lab(node, pod);
    let (link_nsid, asked) = netns::run_in(node, move || {
        let link = netlink::links()?
            .into_iter()
            .find(|l| l.name == "vethp")
            .expect("vethp");
        let f = std::fs::File::open(netns::path_of(pod))?;
        let asked = netlink::nsid_of(std::os::fd::AsFd::as_fd(&f))?;
        Ok((link.peer_netnsid, asked))
    })
    .expect("runs");
    assert!(link_nsid.is_some());
    assert_eq!(link_nsid, asked);
}

/// The kernel keeps no time per flow: a flow whose counters stopped moving between the agent's
/// scans is removed once idle long enough, and one that moved stays.
#[test]
fn flows_that_stopped_leave_the_map_and_moving_ones_stay() {
    if !privileged("flows_that_stopped_leave_the_map_and_moving_ones_stay") {
        return;
    }
    let (node, pod) = ("ofidle-node", "ofidle-pod");
    let _g = lab(node, pod);
    let keys = netns::run_in(node, move || {
        let mut dp = loaded_on_vethp(TcMode::for_this_kernel())?;
        refused_to(pod, 9);
        let first = dp.read_traffic(0, |_| {});
        let between = outflow_agent::clock::monotonic_ns();
        refused_to(pod, 10);
        // Idle since `between`: the port 9 flow's counters have not moved since the first scan.
        let second = dp.read_traffic(between, |_| {});
        let keys = dp.flow_keys();
        dp.detach_all();
        Ok((first, second, keys))
    })
    .expect("datapath runs in the node namespace");
    let (first, second, keys) = keys;
    let port = |p: u16| p.to_be();
    let has = |keys: &[outflow_ebpf::abi::FlowKey], p: u16| {
        keys.iter()
            .any(|k| k.dport == port(p) || k.sport == port(p))
    };
    assert!(first.iter().any(|t| t.dport == 9), "{first:?}");
    assert!(second.iter().any(|t| t.dport == 10), "{second:?}");
    assert!(!has(&keys, 9), "the stopped flow left the map: {keys:?}");
    assert!(has(&keys, 10), "the flow that moved stayed: {keys:?}");
}

/// Sends `n` UDP datagrams from the pod to `port` of 10.99.0.3 on one socket, from CPU 0. The
/// address has a static neighbour entry and no host: the datagrams cross the veth, and nothing
/// answers (an ICMP error would fail the next send on the socket).
fn datagrams(pod: &str, port: u16, n: u32) {
    let ok = Command::new("ip")
        .args(["netns", "exec", pod, "taskset", "-c", "0", "bash", "-c"])
        .arg(format!(
            "set -e; ip neigh replace 10.99.0.3 lladdr 02:00:00:00:00:03 dev eth0; \
             exec 3>/dev/udp/10.99.0.3/{port}; for i in $(seq {n}); do echo x >&3; done"
        ))
        .status()
        .expect("bash")
        .success();
    assert!(ok, "the pod sends datagrams");
    // The node's side takes them in its receive softirq, which a busy machine defers to
    // ksoftirqd: give it time before reading.
    std::thread::sleep(std::time::Duration::from_millis(500));
}

/// A CPU keeps the counts of its last flow until it sees another; the agent adds them to the
/// map's. Every datagram counts once: while its flow sits in the CPU's entry, and after another
/// flow has moved it into the map.
#[test]
fn each_packet_counts_once_whether_in_a_cpus_entry_or_in_the_map() {
    if !privileged("each_packet_counts_once_whether_in_a_cpus_entry_or_in_the_map") {
        return;
    }
    let (node, pod) = ("ofcnt-node", "ofcnt-pod");
    let _g = lab(node, pod);
    let scans = netns::run_in(node, move || {
        let mut dp = loaded_on_vethp(TcMode::for_this_kernel())?;
        // All in CPU 0's entry, then moved to the map by the next flow on that CPU.
        datagrams(pod, 9999, 1000);
        let first = dp.read_traffic(0, |_| {});
        datagrams(pod, 9998, 1);
        let second = dp.read_traffic(0, |_| {});
        let third = dp.read_traffic(0, |_| {});
        dp.detach_all();
        Ok((first, second, third))
    })
    .expect("datapath runs in the node namespace");
    let udp_to = |scan: &[outflow_core::engine::Traffic], port: u16| -> u64 {
        scan.iter()
            .filter(|t| t.proto == 17 && t.dport == port)
            .map(|t| t.packets)
            .sum()
    };
    let (first, second, third) = scans;
    assert_eq!(udp_to(&first, 9999), 1000, "{first:?}");
    assert_eq!(udp_to(&second, 9999), 0, "counted once: {second:?}");
    assert_eq!(udp_to(&second, 9998), 1, "{second:?}");
    assert_eq!(udp_to(&third, 9998), 0, "{third:?}");
}
