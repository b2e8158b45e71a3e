//! Which pod an address belongs to.
//!
//! Behind one small trait, so the Kubernetes API can take over later: standalone, each named
//! network namespace whose veth peer is on this node is a pod (`/run/netns/NAME` → pod
//! `default/NAME`), or an inventory file says which addresses belong to which pod.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::netlink::{self, Link};
use crate::netns;

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// A pod's veth: the node-side name and the pod-side address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// The node-side device.
    pub node_side: String,
    /// The pod-side end's Ethernet address: frames from it are what the pod sent.
    pub pod_mac: Option<[u8; 6]>,
}

/// Maps addresses to pods.
pub trait Inventory: Send {
    /// Looks again (pods come and go); `node_links` are the node's interfaces.
    fn refresh(&mut self, node_links: &[Link]);
    /// The pod holding this address.
    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef>;
    /// The node-side interfaces leading to a pod, each with the pod-side end's Ethernet
    /// address, where the inventory knows them.
    fn interfaces_of(&self, _pod: &PodRef) -> Vec<PodInterface> {
        Vec::new()
    }
}

/// Pods from named network namespaces whose veth peer is on this node.
#[derive(Debug, Default)]
pub struct NetnsInventory {
    /// The namespace playing the node, which is not a pod.
    node_netns: Option<String>,
    pods: HashMap<IpAddr, PodRef>,
    /// Veths per pod.
    interfaces: HashMap<PodRef, Vec<PodInterface>>,
}

impl NetnsInventory {
    /// An inventory that ignores `node_netns` (itself).
    pub fn new(node_netns: Option<String>) -> Self {
        NetnsInventory {
            node_netns,
            pods: HashMap::new(),
            interfaces: HashMap::new(),
        }
    }
}

impl Inventory for NetnsInventory {
    fn refresh(&mut self, node_links: &[Link]) {
        let mut pods = HashMap::new();
        let mut interfaces: HashMap<PodRef, Vec<PodInterface>> = HashMap::new();
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
            let pairs: Vec<(u32, PodInterface)> = links
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
                            (l.index, iface)
                        })
                })
                .collect();
            let pod = PodRef {
                namespace: "default".to_string(),
                name: name.clone(),
            };
            for (index, ip) in addrs {
                if pairs.iter().any(|(i, _)| *i == index) {
                    pods.insert(ip, pod.clone());
                }
            }
            if !pairs.is_empty() {
                interfaces.insert(pod, pairs.into_iter().map(|(_, i)| i).collect());
            }
        }
        self.pods = pods;
        self.interfaces = interfaces;
    }

    fn interfaces_of(&self, pod: &PodRef) -> Vec<PodInterface> {
        self.interfaces.get(pod).cloned().unwrap_or_default()
    }

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.pods.get(&ip)
    }
}

/// Pods from a file: `pods: [{namespace, name, ips: [...]}]` (YAML or JSON).
#[derive(Debug, Default)]
pub struct FileInventory {
    pods: HashMap<IpAddr, PodRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    pods: Vec<PodEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodEntry {
    #[serde(default = "default_namespace")]
    namespace: String,
    name: String,
    ips: Vec<IpAddr>,
}

fn default_namespace() -> String {
    "default".to_string()
}

impl FileInventory {
    /// Reads an inventory file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read inventory {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("inventory {}: {e}", path.display()))
    }

    /// Parses an inventory.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: InventoryFile = serde_yaml_ng::from_str(text).map_err(|e| {
            format!("{e} (expected `pods: [{{namespace: NS, name: NAME, ips: [10.244.1.5]}}]`)")
        })?;
        let mut pods = HashMap::new();
        for p in file.pods {
            for ip in p.ips {
                pods.insert(
                    ip,
                    PodRef {
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                    },
                );
            }
        }
        Ok(FileInventory { pods })
    }
}

impl Inventory for FileInventory {
    fn refresh(&mut self, _node_links: &[Link]) {}

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.pods.get(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_file_maps_each_address_to_its_pod() {
        let inv = FileInventory::parse(
            "pods:\n  - {namespace: shop, name: web-1, ips: [10.244.1.5, 'fd00::5']}\n  - {name: db, ips: [10.244.1.6]}\n",
        )
        .expect("valid");
        let web = inv.pod_of("fd00::5".parse().unwrap()).expect("known");
        assert_eq!(
            (web.namespace.as_str(), web.name.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(
            inv.pod_of("10.244.1.6".parse().unwrap()).unwrap().namespace,
            "default"
        );
        assert!(inv.pod_of("10.244.1.7".parse().unwrap()).is_none());
    }

    #[test]
    fn a_bad_inventory_file_says_what_was_expected() {
        let e = FileInventory::parse("pods:\n  - {name: web, ips: [10.244.1]}\n").unwrap_err();
        assert!(e.contains("expected `pods:"), "{e}");
        let e = FileInventory::parse("pod: []\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
