//! Pods from named network namespaces whose veth leads to the node (standalone use).

use std::collections::HashMap;
use std::net::IpAddr;

use super::{by_pod, Inventory, PodInterface, PodRef};
use crate::netlink::{self, Link};
use crate::netns;

/// Pods from named network namespaces whose veth peer is on this node.
#[derive(Debug, Default)]
pub struct NetnsInventory {
    /// The namespace playing the node, which is not a pod.
    node_netns: Option<String>,
    pods: HashMap<IpAddr, PodRef>,
    /// Veths per pod.
    interfaces: HashMap<PodRef, Vec<PodInterface>>,
    /// The pod behind each node-side veth, by index.
    by_index: HashMap<u32, PodRef>,
}

impl NetnsInventory {
    /// An inventory that ignores `node_netns` (itself).
    pub fn new(node_netns: Option<String>) -> Self {
        NetnsInventory {
            node_netns,
            pods: HashMap::new(),
            interfaces: HashMap::new(),
            by_index: HashMap::new(),
        }
    }
}

impl Inventory for NetnsInventory {
    fn refresh(&mut self, node_links: &[Link]) {
        let mut pods = HashMap::new();
        let mut interfaces: HashMap<PodRef, Vec<PodInterface>> = HashMap::new();
        let mut by_index = HashMap::new();
        for name in netns::names() {
            if Some(&name) == self.node_netns.as_ref() {
                continue;
            }
            // Which of the node's veths lead into this namespace: indexes alone are only unique
            // within a namespace, and identical namespaces built alike share them.
            let nsid = std::fs::File::open(netns::path_of(&name))
                .and_then(|f| netlink::nsid_of(std::os::fd::AsFd::as_fd(&f)));
            let Ok(Some(nsid)) = nsid else {
                continue; // no veth between this namespace and the node
            };
            // A namespace can vanish between listing and entering: it is simply not a pod now.
            let Ok((links, addrs)) =
                netns::run_in(&name, || Ok((netlink::links()?, netlink::addresses()?)))
            else {
                continue;
            };
            // A veth pair names each other's index: both must match, since indexes are only
            // unique within a namespace.
            let pairs: Vec<(u32, u32, PodInterface)> = links
                .iter()
                .filter(|l| l.peer_index != 0)
                .filter_map(|l| {
                    node_links
                        .iter()
                        .find(|n| {
                            n.peer_netnsid == Some(nsid)
                                && n.index == l.peer_index
                                && n.peer_index == l.index
                        })
                        .map(|n| {
                            let iface = PodInterface {
                                node_side: n.name.clone(),
                                pod_mac: l.mac,
                            };
                            (l.index, n.index, iface)
                        })
                })
                .collect();
            let pod = PodRef {
                namespace: "default".to_string(),
                name: name.clone(),
            };
            for (index, ip) in addrs {
                if pairs.iter().any(|(i, _, _)| *i == index) {
                    pods.insert(ip, pod.clone());
                }
            }
            for (_, node_index, _) in &pairs {
                by_index.insert(*node_index, pod.clone());
            }
            if !pairs.is_empty() {
                interfaces.insert(pod, pairs.into_iter().map(|(_, _, i)| i).collect());
            }
        }
        self.pods = pods;
        self.interfaces = interfaces;
        self.by_index = by_index;
    }

    fn pod_on_interface(&self, ifindex: u32) -> Option<&PodRef> {
        self.by_index.get(&ifindex)
    }

    fn interfaces_of(&self, pod: &PodRef) -> Result<Vec<PodInterface>, String> {
        match self.interfaces.get(pod) {
            Some(i) if !i.is_empty() => Ok(i.clone()),
            _ => Err(format!(
                "pod {}/{} has no interface on this node (pods are named network namespaces \
                 whose veth leads to the node; `ip netns list` shows them)",
                pod.namespace, pod.name
            )),
        }
    }

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.pods.get(&ip)
    }

    fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)> {
        // A pod with a veth but no address yet is still a pod on this node.
        let mut all = by_pod(&self.pods);
        for pod in self.interfaces.keys() {
            all.entry(pod.clone()).or_default();
        }
        all.into_iter().collect()
    }
}
