//! Which interfaces a capture request means, and the checks made before anything opens.

use pcap::Capture;

use super::{CaptureError, Target};
use crate::inventory::{PodRef, PodSource};
use crate::netlink;

/// The interfaces to capture, looked up in the node's namespace (the calling thread's): a pod's
/// node-side interfaces, optionally only `interface` of them, or the node's `interface` alone.
/// Pods come from `pods` (the Kubernetes API, an inventory file, or named network namespaces);
/// a pod's interfaces are found by how the node routes its addresses, and come with the pod's Ethernet address,
/// which tells directions apart.
pub fn targets(
    pod: Option<&str>,
    interface: Option<&str>,
    node: &str,
    pods: &PodSource,
) -> Result<Vec<Target>, String> {
    let links = netlink::links().map_err(|e| format!("listing interfaces: {e}"))?;
    let Some(pod) = pod else {
        let i = interface.ok_or("say what to capture: a pod or an interface")?;
        if !links.iter().any(|l| l.name == i) {
            return Err(format!("no interface {i} on node {node}"));
        }
        return Ok(vec![Target {
            label: format!("{i}@{node}"),
            ifname: i.to_string(),
            pod_side: false,
            peer_mac: None,
        }]);
    };
    let (namespace, name) = pod
        .split_once('/')
        .ok_or_else(|| format!("pod {pod:?}: expected NAMESPACE/NAME"))?;
    let mut inventory = pods
        .inventory()
        .map_err(|e| outflow_core::error_chain(&e))?;
    inventory.refresh(&links);
    let mut ifaces = inventory
        .interfaces_of(&PodRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
        .map_err(|e| format!("{e} (node {node})"))?;
    if let Some(i) = interface {
        ifaces.retain(|n| n.node_side == i);
        if ifaces.is_empty() {
            return Err(format!("pod {pod} has no interface {i} on node {node}"));
        }
    }
    Ok(ifaces
        .into_iter()
        .map(|i| Target {
            label: format!("{pod}@{node}"),
            ifname: i.node_side,
            pod_side: true,
            peer_mac: i.pod_mac,
        })
        .collect())
}

/// The section header's comment: where the capture ran and what it kept.
pub fn describe(cluster: Option<&str>, node: &str, pod: Option<&str>, filter: &str) -> String {
    let mut parts = Vec::new();
    if let Some(c) = cluster {
        parts.push(format!("cluster {c}"));
    }
    parts.push(format!("node {node}"));
    parts.push(pod.map_or_else(|| "interface".to_string(), |p| format!("pod {p}")));
    parts.push(format!("filter {filter:?}"));
    parts.join("; ")
}

/// Compiles the filter the way the capture will, so a bad one fails before anything starts.
pub fn check_filter(filter: &str) -> Result<(), CaptureError> {
    let dead = Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| CaptureError::Filter {
        filter: filter.to_string(),
        message: e.to_string(),
    })?;
    dead.compile(filter, true)
        .map(|_| ())
        .map_err(|e| CaptureError::Filter {
            filter: filter.to_string(),
            message: e.to_string(),
        })
}
