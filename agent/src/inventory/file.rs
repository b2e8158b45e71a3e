//! Pods from an inventory file.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::{by_pod, interfaces_by_route, Inventory, PodInterface, PodRef, RoutedInterfaces};
use crate::netlink::Link;

/// Pods from a file: `pods: [{namespace, name, ips: [...]}]` (YAML or JSON).
#[derive(Debug, Default)]
pub struct FileInventory {
    pods: HashMap<IpAddr, PodRef>,
    routed: RoutedInterfaces,
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
        Ok(FileInventory {
            pods,
            routed: RoutedInterfaces::default(),
        })
    }
}

impl Inventory for FileInventory {
    fn refresh(&mut self, node_links: &[Link]) {
        // The file never changes: only the node's links and what its neighbours learnt do.
        self.routed.refresh(&self.pods, 0, node_links);
    }

    fn pod_of(&self, ip: IpAddr) -> Option<&PodRef> {
        self.pods.get(&ip)
    }

    fn pod_on_interface(&self, ifindex: u32) -> Option<&PodRef> {
        self.routed.pod_on(ifindex)
    }

    fn pods(&self) -> Vec<(PodRef, Vec<IpAddr>)> {
        by_pod(&self.pods).into_iter().collect()
    }

    /// Found the way the node reaches the pod's addresses: the route's interface, and behind a
    /// bridge the port the pod's Ethernet address was learnt on.
    fn interfaces_of(&self, pod: &PodRef) -> Result<Vec<PodInterface>, String> {
        interfaces_by_route(pod, &self.pods, "is not in the inventory file")
    }
}
